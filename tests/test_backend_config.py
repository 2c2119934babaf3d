"""One backend config class (teacher, model under test, judge): the vLLM engine keys travel
from a recipe to ``vllm.LLM``, bad values are refused by key, and ``close()`` frees the engine.

Without a GPU a fake ``vllm`` module records what the engine is given; the ``gpu`` test builds a
real engine where CUDA and vLLM exist.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from medistill.backends.config import (
    ENGINE_KEYS,
    BackendConfig,
    TeacherConfig,
    VLLMEngineConfig,
    close_backend,
)
from medistill.config import build
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval
from medistill.evaluate.config import BACKEND_KEYS

ENGINE = {
    "tensor_parallel_size": 4,
    "max_model_len": 8192,
    "gpu_memory_utilization": 0.75,
    "dtype": "bfloat16",
    "enable_prefix_caching": True,
    "engine_args": {"enforce_eager": True, "kv_cache_dtype": "fp8"},
}


class FakeVLLM:
    """What the fake ``vllm`` module saw: engine kwargs, chat calls, shutdowns, teardown."""

    def __init__(self) -> None:
        self.engines: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.chats: list[dict[str, Any]] = []  # prompts and sampling params of each chat()
        self.fail_chat = False
        self.reply: tuple[str, str, list[int]] = ("The answer is (A).", "stop", [1, 2, 3])


#: The fake below is written from vLLM 0.31.0's source (the version pinned in pyproject's
#: ``gpu`` extra; 0.33.0 reads the same here) and has ONLY names that version has:
#: ``vllm/entrypoints/llm.py``: ``LLM(**kwargs)`` keeps ``self.llm_engine``; ``LLM.chat(messages,
#: sampling_params, use_tqdm, ..., add_generation_prompt, continue_final_message, ...)``; no
#: ``LLM.shutdown``. ``vllm/v1/engine/llm_engine.py``: ``LLMEngine`` keeps ``self.engine_core``
#: (an ``EngineCoreClient``) and has NO ``shutdown``. ``vllm/v1/engine/core_client.py``:
#: ``EngineCoreClient.shutdown(self, timeout=None)`` (InprocClient, SyncMPClient).
#: ``vllm/sampling_params.py``: ``SamplingParams`` fields (n, temperature, top_p, top_k, seed,
#: max_tokens, repetition_detection, ...) and ``RepetitionDetectionParams(max_pattern_size,
#: min_pattern_size, min_count)``. ``vllm/outputs.py``: ``RequestOutput.prompt_token_ids`` and
#: ``.outputs`` of ``CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs,
#: finish_reason, stop_reason)``. ``vllm/distributed/parallel_state.py``:
#: ``destroy_model_parallel()``, ``destroy_distributed_environment()``.
_SAMPLING_FIELDS = frozenset(
    {"n", "temperature", "top_p", "top_k", "seed", "max_tokens", "repetition_detection"}
)


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> FakeVLLM:
    seen = FakeVLLM()
    import huggingface_hub.constants

    from medistill.evaluate.sampling import generation_config

    # "org/student" is a Hub id: its generation_config.json is looked up offline (not found)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    generation_config.cache_clear()

    class SyncMPClient:  # vllm.v1.engine.core_client
        def shutdown(self, timeout: float | None = None) -> None:
            seen.events.append("shutdown")

    class LLMEngine:  # vllm.v1.engine.llm_engine: no shutdown()
        def __init__(self) -> None:
            self.engine_core = SyncMPClient()

    class LLM:  # vllm.entrypoints.llm
        def __init__(self, **kwargs: Any) -> None:
            seen.engines.append(kwargs)
            self.llm_engine = LLMEngine()

        def chat(
            self,
            messages,
            sampling_params=None,
            use_tqdm=True,
            lora_request=None,
            chat_template=None,
            chat_template_content_format="auto",
            add_generation_prompt=True,
            continue_final_message=False,
            tools=None,
            chat_template_kwargs=None,
            tokenization_kwargs=None,
            mm_processor_kwargs=None,
        ):
            if seen.fail_chat:
                raise RuntimeError("CUDA error: an illegal memory access")
            seen.chats.append({"n": len(messages), "params": sampling_params.kwargs})
            text, reason, ids = seen.reply
            done = types.SimpleNamespace(
                index=0,
                text=text,
                token_ids=ids,
                cumulative_logprob=None,
                logprobs=None,
                finish_reason=reason,
                stop_reason=None,
            )
            return [
                types.SimpleNamespace(outputs=[done], prompt_token_ids=[7] * 5) for _ in messages
            ]

    class SamplingParams:  # vllm.sampling_params (a msgspec Struct: unknown fields refused)
        def __init__(self, **kwargs: Any) -> None:
            unknown = set(kwargs) - _SAMPLING_FIELDS
            if unknown:
                raise TypeError(f"Unexpected keyword argument {sorted(unknown)}")
            self.kwargs = kwargs

    @dataclasses.dataclass
    class RepetitionDetectionParams:  # vllm.sampling_params
        max_pattern_size: int = 0
        min_pattern_size: int = 0
        min_count: int = 0

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    sp = types.ModuleType("vllm.sampling_params")
    sp.SamplingParams, sp.RepetitionDetectionParams = SamplingParams, RepetitionDetectionParams
    vllm.sampling_params = sp
    dist = types.ModuleType("vllm.distributed")
    dist.destroy_model_parallel = lambda: seen.events.append("destroy_model_parallel")
    dist.destroy_distributed_environment = lambda: seen.events.append(
        "destroy_distributed_environment"
    )
    vllm.distributed = dist
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    monkeypatch.setitem(sys.modules, "vllm.distributed", dist)
    return seen


# ----------------------------------------------------------------------------- plumbing


def test_recipe_eval_engine_keys_reach_vllm(fake_vllm: FakeVLLM) -> None:
    """A recipe's ``eval:`` engine keys arrive at ``vllm.LLM`` (main: ``tensor_parallel_size``
    was not an eval key, and the backend got ``trust_remote_code`` only)."""
    import medistill.evaluate.run_folder as ev

    section = {"model": "org/student", "backend": "vllm", "trust_remote_code": "yes", **ENGINE}
    section["max_model_len"] = "8192"  # YAML strings are coerced like every other key
    cfg = build(EvalConfig, section, where="recipe.yaml: eval")
    backend = ev.make_backend(cfg)
    assert fake_vllm.engines == [
        {
            "model": "org/student",
            "tensor_parallel_size": 4,
            "gpu_memory_utilization": 0.75,
            "dtype": "bfloat16",
            "trust_remote_code": True,
            "max_model_len": 8192,
            "enable_prefix_caching": True,
            "enforce_eager": True,
            "kv_cache_dtype": "fp8",
        }
    ]
    assert backend.preferred_batch_size() == 256  # batch_size unset: 256 prompts per chat()


def test_recipe_teacher_engine_keys_reach_vllm(fake_vllm: FakeVLLM) -> None:
    """``generate.teacher`` is a :class:`BackendConfig`: its engine keys reach the engine too."""
    from medistill.generate import GenerateConfig

    gen = build(
        GenerateConfig,
        {"teacher": {"model": "org/teacher", "backend": "vllm", **ENGINE}},
        where="recipe.yaml: generate",
    )
    assert isinstance(gen.teacher, TeacherConfig) and isinstance(gen.teacher, BackendConfig)
    with gen.teacher.open():
        pass
    (kwargs,) = fake_vllm.engines
    assert {k: kwargs[k] for k in ENGINE if k != "engine_args"} == {
        k: v for k, v in ENGINE.items() if k != "engine_args"
    }
    assert kwargs["enforce_eager"] is True and kwargs["kv_cache_dtype"] == "fp8"
    assert "shutdown" in fake_vllm.events  # open() closed it on the way out


def test_unset_engine_keys_are_left_to_vllm(fake_vllm: FakeVLLM) -> None:
    """``max_model_len`` and ``enable_prefix_caching`` unset: vLLM's own defaults, not ours."""
    BackendConfig(model="m", backend="vllm").build()
    (kwargs,) = fake_vllm.engines
    assert "max_model_len" not in kwargs and "enable_prefix_caching" not in kwargs
    assert kwargs["tensor_parallel_size"] == 1 and kwargs["gpu_memory_utilization"] == 0.9
    assert kwargs["dtype"] == "auto"


def test_engine_args_are_applied_last(fake_vllm: FakeVLLM) -> None:
    """The backend itself merges ``engine_args`` over the named arguments (the config refuses
    such a repeat, see below; a direct caller may still mean it)."""
    from medistill.backends.vllm_backend import VLLMBackend

    VLLMBackend("m", dtype="float16", engine_args={"dtype": "float32", "seed": 3})
    assert fake_vllm.engines[0]["dtype"] == "float32" and fake_vllm.engines[0]["seed"] == 3


def test_transformers_backend_gets_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    import medistill.backends.config as bc

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(bc, "make_backend", lambda name, model, **kw: calls.append((name, kw)))
    BackendConfig(model="m", backend="transformers", dtype="float16").build(stop_loops=False)
    assert calls == [
        ("transformers", {"batch_size": 8, "dtype": "float16", "trust_remote_code": False,
                          "stop_loops": False})
    ]  # fmt: skip


# ----------------------------------------------------------------------------- close


def test_close_shuts_the_engine_down_and_frees_memory(fake_vllm: FakeVLLM) -> None:
    from medistill.backends.base import SamplingParams

    backend = BackendConfig(model="m", backend="vllm").build()
    assert len(backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams())) == 1
    backend.close()
    assert fake_vllm.events == [
        "shutdown",
        "destroy_model_parallel",
        "destroy_distributed_environment",
    ]
    backend.close()  # idempotent
    assert len(fake_vllm.events) == 3
    with pytest.raises(MedistillError, match="closed"):
        backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams())


def test_close_leaves_a_process_group_it_did_not_start(
    fake_vllm: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training run's ``torch.distributed`` group that existed before the engine stays."""
    import medistill.backends.vllm_backend as vb

    monkeypatch.setattr(vb, "_distributed_initialized", lambda: True)
    BackendConfig(model="m", backend="vllm").build().close()
    assert fake_vllm.events == ["shutdown"]


def test_close_without_vllm_distributed(fake_vllm: FakeVLLM, monkeypatch) -> None:
    """An older/newer vLLM without ``vllm.distributed``'s teardown: close still works."""
    monkeypatch.delitem(sys.modules, "vllm.distributed")
    del sys.modules["vllm"].distributed
    BackendConfig(model="m", backend="vllm").build().close()
    assert fake_vllm.events == ["shutdown"]


def test_every_backend_has_close() -> None:
    from medistill.backends.base import Backend
    from medistill.backends.hf import TransformersBackend
    from medistill.backends.llamacpp import LlamaCppBackend
    from medistill.backends.openai_http import OpenAIBackend
    from medistill.backends.vllm_backend import VLLMBackend

    assert "close" in dir(Backend)
    for cls in (TransformersBackend, OpenAIBackend, VLLMBackend, LlamaCppBackend):
        assert callable(getattr(cls, "close", None)), cls
    OpenAIBackend("m").close()  # nothing to free
    close_backend(object())  # a backend from elsewhere, without close(): nothing happens


def test_eval_closes_the_engine(fake_vllm: FakeVLLM, tmp_path: Path) -> None:
    section = {"model": "org/student", "backend": "vllm", "limit": 3, "out": str(tmp_path / "r")}
    cfg = build(EvalConfig, {**section, "tensor_parallel_size": 2}, where="recipe.yaml: eval")
    metrics = run_eval(cfg, show_progress=False)
    assert metrics["n"] == 3
    assert fake_vllm.engines[0]["tensor_parallel_size"] == 2
    assert fake_vllm.events[0] == "shutdown"
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["config"]["tensor_parallel_size"] == 2  # the run folder records the engine


def test_eval_closes_the_engine_when_generation_fails(fake_vllm: FakeVLLM, tmp_path: Path) -> None:
    fake_vllm.fail_chat = True
    cfg = EvalConfig(model="m", backend="vllm", limit=2, out=str(tmp_path / "r"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_eval(cfg, show_progress=False)
    assert fake_vllm.events[0] == "shutdown"


def test_eval_batch_size_reaches_vllm(fake_vllm: FakeVLLM, tmp_path: Path) -> None:
    """``eval.batch_size`` is the number of prompts per ``LLM.chat`` (main: always 256, so
    5 questions went in one call whatever the recipe said)."""
    out = str(tmp_path / "r")
    cfg = EvalConfig(model="m", backend="vllm", limit=5, batch_size=2, out=out, temperature=0.0)
    run_eval(cfg, show_progress=False)
    assert [c["n"] for c in fake_vllm.chats] == [2, 2, 1]


def test_vllm_stops_and_flags_loops_like_every_backend(fake_vllm: FakeVLLM, tmp_path: Path) -> None:
    """vLLM is asked to stop a loop (its ``repetition_detection``, set so that it stops only
    what the shared rule calls a loop); its ``repetition`` finish and a loop that ran to the
    budget are both ``repetition`` rows, cut off (main: no loop stop, and vLLM's
    ``repetition`` finish was read as ``stop``)."""
    from medistill.backends.loops import TOKEN_RULE

    cfg = EvalConfig(model="m", backend="vllm", limit=2, out=str(tmp_path / "a"), temperature=0)
    fake_vllm.reply = ("so so so", "repetition", [5, 6, 7, 8, 9, 10, 11, 12] * 12)
    m = run_eval(cfg, show_progress=False)
    rule = fake_vllm.chats[0]["params"]["repetition_detection"]
    assert rule.max_pattern_size == TOKEN_RULE.max_period and rule.min_count >= 4
    assert rule.min_pattern_size * rule.min_count >= TOKEN_RULE.min_span  # no shorter stops
    assert m["finish_reasons"] == {"repetition": 2} and m["truncation_rate"] == 1.0
    fake_vllm.reply = ("loop " * 200, "length", [5, 6, 7] * 100)  # ran to the budget
    cfg.out = str(tmp_path / "b")
    assert run_eval(cfg, show_progress=False)["repetition_rate"] == 1.0
    fake_vllm.reply = ("a long varied answer", "length", list(range(300)))
    cfg.out = str(tmp_path / "c")
    assert run_eval(cfg, show_progress=False)["finish_reasons"] == {"length": 2}


def test_vllm_gets_top_k_only_when_set(fake_vllm: FakeVLLM) -> None:
    from medistill.backends.base import SamplingParams

    backend = BackendConfig(model="m", backend="vllm").build()
    msgs = [[{"role": "user", "content": "hi"}]]
    backend.generate(msgs, SamplingParams(temperature=0.6, top_p=0.95, top_k=20))
    backend.generate(msgs, SamplingParams())
    first, second = (c["params"] for c in fake_vllm.chats)
    assert (first["temperature"], first["top_p"], first["top_k"]) == (0.6, 0.95, 20)
    assert "top_k" not in second and second["temperature"] == 0.0


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tensor_parallel_size", 0, "tensor_parallel_size must be an integer >= 1"),
        ("tensor_parallel_size", "two", "tensor_parallel_size: expected an integer"),
        ("max_model_len", 0, "max_model_len must be an integer >= 1"),
        ("gpu_memory_utilization", 0, r"gpu_memory_utilization must be a number in \(0, 1\]"),
        ("gpu_memory_utilization", 1.5, r"gpu_memory_utilization must be a number in \(0, 1\]"),
        ("dtype", "fp8", "dtype must be one of auto, bfloat16, float16, float32"),
        ("enable_prefix_caching", "maybe", "enable_prefix_caching: expected true or false"),
        ("engine_args", "enforce_eager", "engine_args: expected a mapping"),
        ("engine_args", {"dtype": "half"}, "engine_args: key 'dtype' is a named setting"),
        ("engine_args", {"model": "x"}, "engine_args: key 'model' is a named setting"),
        (
            "engine_args",
            {"tensor_parallel_size": 2},
            "engine_args: key 'tensor_parallel_size' is a named setting",
        ),
    ],
)
@pytest.mark.parametrize("cls", [EvalConfig, BackendConfig, TeacherConfig])
def test_bad_engine_values_name_the_key(cls: type, key: str, value: Any, message: str) -> None:
    with pytest.raises(MedistillError, match=rf"^recipe\.yaml: sec.*{message}"):
        build(cls, {"model": "m", "backend": "vllm", key: value}, where="recipe.yaml: sec")


def test_bad_engine_values_refused_without_a_recipe_too() -> None:
    with pytest.raises(MedistillError, match="tensor_parallel_size"):
        BackendConfig(model="m", tensor_parallel_size=0)
    with pytest.raises(MedistillError, match="gpu_memory_utilization"):
        EvalConfig(model="m", gpu_memory_utilization=2.0)
    with pytest.raises(MedistillError, match="unknown backend 'vlm'"):
        BackendConfig(model="m", backend="vlm")


def test_unknown_backend_from_a_recipe_names_the_section() -> None:
    with pytest.raises(MedistillError, match=r"^r\.yaml: generate\.teacher: unknown backend"):
        build(TeacherConfig, {"model": "m", "backend": "vlm"}, where="r.yaml: generate.teacher")


# ----------------------------------------------------------------------------- one class


def test_engine_keys_are_one_definition() -> None:
    """Eval's engine keys are BackendConfig's (same fields: names, types, defaults, help)."""

    def spec(cls: type) -> dict[str, Any]:
        return {
            f.name: (f.type, f.default, f.default_factory, dict(f.metadata))
            for f in dataclasses.fields(cls)
            if f.name in ENGINE_KEYS
        }

    assert spec(EvalConfig) == spec(BackendConfig) == spec(VLLMEngineConfig)
    assert set(ENGINE_KEYS) <= set(BACKEND_KEYS)
    assert dataclasses.fields(EvalConfig)[0].name == "model"  # --help still starts there
    assert dataclasses.fields(BackendConfig)[0].name == "model"


def test_teacher_config_is_the_backend_config() -> None:
    assert issubclass(TeacherConfig, BackendConfig)
    assert {f.name for f in dataclasses.fields(TeacherConfig)} == set(BackendConfig.field_names())
    t = TeacherConfig.from_spec("vllm:Qwen/Qwen3-8B", tensor_parallel_size=2)
    assert type(t) is TeacherConfig and t.backend == "vllm" and t.tensor_parallel_size == 2
    assert build(TeacherConfig, t.recipe_values(), where="w") == t


def test_a_teacher_evaluated_with_its_own_engine_settings() -> None:
    """The pipeline's way to evaluate a teacher: its backend keys as ``eval:`` values."""
    teacher = TeacherConfig(
        model="org/teacher",
        backend="vllm",
        price_input_per_mtok=1.0,  # not an eval key: left out
        **ENGINE,
    )
    values = EvalConfig.values_from_backend(teacher)
    assert set(values) == set(BACKEND_KEYS) and "price_input_per_mtok" not in values
    cfg = build(EvalConfig, {**values, "benchmark": "sample"}, where="pipeline: eval")
    assert cfg.backend_config().vllm_kwargs() == teacher.vllm_kwargs()
    assert cfg.backend_config().model == "org/teacher"
    values["engine_args"]["enforce_eager"] = False  # a copy: the teacher is not changed
    assert teacher.engine_args["enforce_eager"] is True


def test_engine_settings_that_change_answers_are_part_of_the_run_identity() -> None:
    base = EvalConfig(model="m", backend="vllm")
    assert base.identity()["engine"] == {}  # a run stored before these keys still matches
    assert EvalConfig(model="m", backend="vllm", tensor_parallel_size=2).identity()["engine"] == {}
    half = EvalConfig(
        model="m", backend="vllm", dtype="float16", engine_args={"quantization": "fp8"}
    )
    assert half.identity()["engine"] == {"dtype": "float16", "engine_args": {"quantization": "fp8"}}
    assert EvalConfig(model="m", dtype="float16").identity()["engine"] == {"dtype": "float16"}


def test_engine_keys_on_the_command_line() -> None:
    from medistill.flags import parse_stage_args

    args = parse_stage_args(
        EvalConfig,
        [
            "--model", "m", "--backend", "vllm", "--tensor-parallel-size", "2",
            "--gpu-memory-utilization", "0.5", "--dtype", "float16", "--no-enable-prefix-caching",
            "--max-model-len", "4096", "--engine-args", '{"enforce_eager": true}',
        ],
        section="eval",
        prog="medistill eval",
    )  # fmt: skip
    cfg = build(EvalConfig, args.values, where=args.where)
    assert cfg.backend_config().vllm_kwargs() == {
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.5,
        "dtype": "float16",
        "enable_prefix_caching": False,
        "engine_args": {"enforce_eager": True},
    }
    with pytest.raises(MedistillError, match="invalid choice: 'fp8'"):
        parse_stage_args(EvalConfig, ["--model", "m", "--dtype", "fp8"], section="eval", prog="e")


# ----------------------------------------------------------------------------- a real engine


def _vllm_test_model() -> str:
    if os.environ.get("MEDISTILL_VLLM_TEST_MODEL"):
        return os.environ["MEDISTILL_VLLM_TEST_MODEL"]
    from medistill.models import smollm2_path

    try:
        return str(smollm2_path())
    except (MedistillError, ImportError) as e:
        pytest.skip(f"no small model for vLLM ({e}); set MEDISTILL_VLLM_TEST_MODEL")


@pytest.mark.gpu
def test_real_vllm_engine_takes_the_settings_and_gives_memory_back() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("vllm")
    from medistill.backends.base import SamplingParams

    model = _vllm_test_model()
    free_before, _ = torch.cuda.mem_get_info()
    cfg = BackendConfig(
        model=model,
        backend="vllm",
        max_model_len=1024,
        gpu_memory_utilization=0.3,
        dtype="bfloat16",
        enable_prefix_caching=True,
        engine_args={"enforce_eager": True},
    )
    backend = cfg.build()
    try:
        mc = backend.llm.llm_engine.model_config
        assert mc.max_model_len == 1024 and str(mc.dtype) == "torch.bfloat16"
        del mc  # no reference of the test's may keep the engine alive past close()
        (g,) = backend.generate(
            [[{"role": "user", "content": "Say hi."}]], SamplingParams(max_new_tokens=8)
        )
        assert g.output_tokens and g.finish_reason in ("stop", "length")
        free_loaded, _ = torch.cuda.mem_get_info()
    finally:
        backend.close()
    free_after, _ = torch.cuda.mem_get_info()
    taken = free_before - free_loaded
    assert taken > 0 and free_after - free_loaded > 0.8 * taken
    with cfg.open() as again:  # a second engine fits: the first one's memory is back
        assert again.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(8))
