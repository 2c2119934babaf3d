"""Deployment without llama.cpp: the export folder and its card, the serve command's engine
choice and errors, and the explain page (a real uvicorn in front of a real HTTP server)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from medistill.deploy.explain import BadInput, Explainer, create_app, parse_options
from medistill.deploy.export import ExportModelConfig, export_model
from medistill.deploy.serve import ServeConfig, choose_engine, engine_command, serve
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval

from chat_server import AppServer, ChatServer

# --------------------------------------------------------------------------- option parsing

LETTERED_FORMS = [
    ("A. Aspirin\nB. Heparin\nC. Warfarin", ["Aspirin", "Heparin", "Warfarin"]),
    ("(A) Aspirin\n(B) Heparin", ["Aspirin", "Heparin"]),
    ("a) aspirin\nb) heparin", ["aspirin", "heparin"]),
    ("A: Aspirin 81 mg\n\n  B: Heparin drip  \n", ["Aspirin 81 mg", "Heparin drip"]),
    ("[A] x\n[B] y\n[C] z\n[D] w\n[E] v", ["x", "y", "z", "w", "v"]),
    ("A - Vitamin B12\nB - Folate", ["Vitamin B12", "Folate"]),
    # Unlettered lines are lettered in order, even when one looks like a label.
    ("Parainfluenza virus\nRSV\nE. coli", ["Parainfluenza virus", "RSV", "E. coli"]),
    ("B12 deficiency\nFolate deficiency", ["B12 deficiency", "Folate deficiency"]),
]


@pytest.mark.parametrize(("text", "expected"), LETTERED_FORMS)
def test_options_are_read_lettered_or_not(text: str, expected: list[str]) -> None:
    options = parse_options(text)
    assert list(options) == list("ABCDE"[: len(expected)])
    assert list(options.values()) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least two options"),
        ("A. only one", "at least two options"),
        ("\n".join(f"option {i}" for i in range(11)), "At most 10 options"),
        ("A. one\nC. two", "line 2 is lettered 'C'"),
        ("A. one\nB.  ", "Option B (line 2) is empty"),
        ("one\n" + "x" * 1001, "Option B is too long (1001 characters"),
    ],
)
def test_bad_options_get_a_message(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        parse_options(text)


# --------------------------------------------------------------------------- explain page

QUESTION = "A 4-year-old has a barking cough and inspiratory stridor. Most likely cause?"
OPTIONS = "A. Parainfluenza virus\nB. Haemophilus influenzae\nC. Streptococcus pneumoniae"


def _reasoner(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    assert "Parainfluenza virus" in user and "The answer is" in user  # eval's prompt
    return "Barking cough with stridor is croup.\nCroup is viral.\nThe answer is A."


def _post(url: str, data: bytes, content_type: str) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _json(url: str, body: dict) -> tuple[int, dict]:
    status, text = _post(url, json.dumps(body).encode(), "application/json")
    return status, json.loads(text)


def test_explain_api_reads_the_answer_with_the_shared_extractor() -> None:
    with ChatServer(_reasoner) as chat, AppServer(create_app(Explainer(chat.url, "served"))) as ui:
        status, out = _json(f"{ui.url}/api/explain", {"question": QUESTION, "options": OPTIONS})
        assert status == 200, out
        assert out["letter"] == "A" and out["option"] == "Parainfluenza virus"
        assert out["rule"] != "none" and out["cut_off"] is False
        assert "croup" in out["reasoning"] and out["output_tokens"] > 0
        sent = chat.bodies[-1]
        assert sent["temperature"] == 0.0 and sent["frequency_penalty"] == 0  # greedy, neutral
        # options as a list or a mapping work too
        for options in (OPTIONS.replace("A. ", "").split("\n"), {"A": "x", "B": "y"}):
            assert _json(f"{ui.url}/api/explain", {"question": QUESTION, "options": options})[0]


@pytest.mark.parametrize(
    ("response", "verdict", "concluded", "mark"),
    [
        (
            "Barking cough with stridor is croup, most often caused by parainfluenza virus, so "
            "the answer is A.\n\nFinal answer: B",
            "argues_other",
            "A",
            "The reasoning argues for <strong>A</strong>, the answer line says <strong>B</strong>",
        ),
        (
            "Croup is viral, and none of the options is correct.\nThe answer is B.",
            "argues_none",
            None,
            "The reasoning argues for none of the options, the answer line says <strong>B</strong>",
        ),
        (
            "Barking cough with stridor is croup.\nCroup is viral.\nThe answer is A.",
            None,
            None,
            None,
        ),
    ],
)
def test_explain_marks_reasoning_that_argues_for_another_answer(
    response: str, verdict: str | None, concluded: str | None, mark: str | None
) -> None:
    """The API gives the audit's verdict (reasoning_verdict) beside the answer, and the page
    marks an answer whose reasoning argues for another option, or for none."""
    with (
        ChatServer(lambda messages: response) as chat,
        AppServer(create_app(Explainer(chat.url, "served"))) as ui,
    ):
        status, out = _json(f"{ui.url}/api/explain", {"question": QUESTION, "options": OPTIONS})
        assert status == 200, out
        if verdict is None:  # consistent, or nothing to compare: no mark
            assert out["verdict"] in ("consistent", "no_conclusion")
        else:
            assert (out["verdict"], out["concluded"], out["answer_line"]) == (
                verdict,
                concluded,
                "B",
            )
        form = urllib.parse.urlencode({"question": QUESTION, "options": OPTIONS})
        status, page = _post(ui.url + "/", form.encode(), "application/x-www-form-urlencoded")
        assert status == 200
        if mark is None:
            assert 'id="inconsistent"' not in page
        else:
            assert 'id="inconsistent"' in page and mark in page


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"question": "  ", "options": OPTIONS}, 400, "Enter the question"),
        ({"question": QUESTION, "options": "A. one"}, 400, "at least two options"),
        ({"question": QUESTION * 200, "options": OPTIONS}, 400, "too long"),
        ({"question": "x" * 70_000, "options": OPTIONS}, 413, "body over"),
        (["not", "an", "object"], 400, "expected a JSON object"),
    ],
)
def test_explain_api_bad_input(body, status: int, message: str) -> None:
    with ChatServer(_reasoner) as chat, AppServer(create_app(Explainer(chat.url, "served"))) as ui:
        got_status, out = _json(f"{ui.url}/api/explain", body)
        assert got_status == status and message in out["error"]
        assert chat.stats["requests"] == 0  # refused before the model is asked


def test_explain_page_escapes_and_reports_server_failures() -> None:
    evil = "<script>alert(1)</script>"

    def echo(messages: list[dict]) -> str:
        return f"The note says {evil}.\nThe answer is B."

    with ChatServer(echo) as chat, AppServer(create_app(Explainer(chat.url, "served"))) as ui:
        form = urllib.parse.urlencode({"question": f"{QUESTION} {evil}", "options": OPTIONS})
        status, page = _post(ui.url + "/", form.encode(), "application/x-www-form-urlencoded")
        assert status == 200
        assert "<script" not in page and page.count("&lt;script&gt;") == 2  # question + answer
        assert 'id="answer"' in page and "Haemophilus influenzae" in page
        assert "Not for clinical use" in page
        with urllib.request.urlopen(ui.url + "/", timeout=10) as resp:
            assert "script-src" not in resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    # the model server is gone: a message naming it, not a stack trace
    with AppServer(create_app(Explainer(chat.url, "served"))) as ui:
        status, out = _json(f"{ui.url}/api/explain", {"question": QUESTION, "options": OPTIONS})
        assert status == 502 and chat.url in out["error"] and "Traceback" not in out["error"]


def test_explain_page_shows_the_engine_refusal() -> None:
    with (
        ChatServer(_reasoner, reject_status=400) as chat,
        AppServer(create_app(Explainer(chat.url, "served"))) as ui,
    ):
        status, out = _json(f"{ui.url}/api/explain", {"question": QUESTION, "options": OPTIONS})
        assert status == 502 and "bad request" in out["error"]


# --------------------------------------------------------------------------- serve


def test_engine_choice_and_command(tmp_path: Path) -> None:
    gguf = tmp_path / "student-q8_0.gguf"
    cfg = ServeConfig(model=str(gguf), port=8123, n_threads=2)
    assert choose_engine(cfg, gguf) == "llamacpp"
    assert choose_engine(cfg, tmp_path) in ("llamacpp", "vllm")  # vLLM only with a GPU
    cmd = engine_command(cfg, gguf, "llamacpp")
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"  # local by default
    assert cmd[cmd.index("--model_alias") + 1] == "student-q8_0"
    vllm = engine_command(ServeConfig(model=str(tmp_path), name="s"), tmp_path, "vllm")
    assert vllm[:2] == ["vllm", "serve"] and vllm[vllm.index("--served-model-name") + 1] == "s"
    with pytest.raises(MedistillError, match="vllm serves model folders"):
        choose_engine(ServeConfig(model=str(gguf), engine="vllm"), gguf)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ServeConfig(model="/nonexistent/x.gguf"), "no such file or folder"),
        (ServeConfig(), "--model is required"),
        (ServeConfig(base_url="http://127.0.0.1:1/v1"), "--base-url is for --ui"),
    ],
)
def test_serve_bad_input(cfg: ServeConfig, message: str) -> None:
    with pytest.raises(MedistillError, match=message):
        serve(cfg, announce=lambda _: None)


def test_serve_refuses_a_folder_without_safetensors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MedistillError, match=r"no \*\.safetensors"):
        serve(ServeConfig(model=str(tmp_path)), announce=lambda _: None)


# --------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def evaluated_tiny(tiny_model_dir: Path, tmp_path_factory) -> Path:
    """A real eval run of the tiny model (4 questions), for the card's table."""
    out = tmp_path_factory.mktemp("eval") / "tiny-sample"
    cfg = EvalConfig(
        model=str(tiny_model_dir), limit=4, max_new_tokens=8, out=str(out), label="tiny student"
    )
    run_eval(cfg, show_progress=False)
    return out


def test_export_hf_folder_loads_the_same_model_and_has_a_card(
    tiny_model_dir: Path, evaluated_tiny: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    cfg = ExportModelConfig(
        model=str(tiny_model_dir),
        format="hf",
        out=str(tmp_path / "export"),
        eval_runs=[str(evaluated_tiny)],
        dataset=str(curated_dataset),
        name="tiny-student",
    )
    summary = export_model(cfg)
    out = Path(summary["out"])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    assert not list(out.glob("*.partial")) and not (out / "medistill_train.json").exists()
    ids = torch.tensor([[1, 5, 9, 11]])
    a = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), use_safetensors=True)
    b = AutoModelForCausalLM.from_pretrained(str(out), use_safetensors=True)
    assert torch.equal(a(ids).logits, b(ids).logits)
    card = (out / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((evaluated_tiny / "metrics.json").read_text())
    acc = metrics["accuracy"]["lenient"]
    ci = f"[{100 * acc['ci_low']:.1f}%, {100 * acc['ci_high']:.1f}%]"
    assert "**tiny student** (this model)" in card and ci in card
    assert "Not for clinical use" in card and "## Intended use and limits" in card
    assert "Curated dataset" in card and "teacher traces kept" in card
    assert summary["sha256"]["model.safetensors"] in json.dumps(
        json.loads((out / "medistill_export.json").read_text())
    )
    with pytest.raises(MedistillError, match="--overwrite"):
        export_model(cfg)


def test_export_merges_a_lora_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), use_safetensors=True)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter))
    ids = torch.tensor([[1, 5, 9, 11]])
    with torch.no_grad():
        expected = peft_model(ids).logits
    summary = export_model(
        ExportModelConfig(model=str(adapter), format="hf", out=str(tmp_path / "merged"))
    )
    merged = AutoModelForCausalLM.from_pretrained(summary["out"], use_safetensors=True)
    with torch.no_grad():
        got = merged(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    fresh = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), use_safetensors=True)
    with torch.no_grad():
        assert not torch.allclose(got, fresh(ids).logits, atol=1e-3)  # the adapter counts
    card = (Path(summary["out"]) / "README.md").read_text()
    assert "Not evaluated yet" in card


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "onnx"}, "unknown --format 'onnx'"),
        ({"quant": "q3"}, "unknown --quant 'q3'"),
        ({"model": "/nonexistent"}, "not a local folder"),
    ],
)
def test_export_bad_input(kwargs: dict, message: str, tiny_model_dir: Path, tmp_path) -> None:
    cfg = {"model": str(tiny_model_dir), "out": str(tmp_path / "x"), **kwargs}
    with pytest.raises(MedistillError, match=message):
        export_model(ExportModelConfig(**cfg))


def test_llamacpp_backend_reads_a_gguf_file(tmp_path: Path) -> None:
    from medistill.backends import make_backend

    with pytest.raises(MedistillError, match="medistill export-model --model"):
        make_backend("llamacpp", str(tmp_path))
    with pytest.raises(MedistillError, match="no such file"):
        make_backend("llamacpp", str(tmp_path / "student.gguf"))
