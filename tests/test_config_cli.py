"""``eval``, ``generate`` and ``curate`` options derived from their config classes.

Most tests stop at the config the command builds (the stage function is replaced by one that
records it), so they run in milliseconds; one evaluates a tiny local model for real.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import medistill.curate
import medistill.evaluate
import medistill.generate
from medistill.cli import app
from medistill.evaluate import EvalConfig
from medistill.flags import parse_stage, stage_parser
from medistill.generate import GenerateConfig

runner = CliRunner()


class _Stop(Exception):
    """Raised by a stand-in stage function once it has recorded its config."""


@pytest.fixture
def captured(monkeypatch) -> dict[str, Any]:
    """Replace run_eval / run_generate / run_curate by recorders of their arguments."""
    got: dict[str, Any] = {}

    def recorder(name: str):
        def run(cfg, **kwargs):
            got[name] = cfg
            got[f"{name}_kwargs"] = kwargs
            raise _Stop

        return run

    monkeypatch.setattr(medistill.evaluate, "run_eval", recorder("eval"))
    monkeypatch.setattr(medistill.generate, "run_generate", recorder("generate"))
    monkeypatch.setattr(medistill.curate, "run_curate", recorder("curate"))
    return got


def _invoke(argv: list[str]):
    r = runner.invoke(app, argv)
    assert isinstance(r.exception, _Stop), r.output
    return r


def _error(argv: list[str], *, logs: bool = False) -> str:
    """Run a command that must fail as a user error: one line, exit 2, no traceback.

    With ``logs`` the run got far enough to log; the error is still its last line alone.
    """
    r = runner.invoke(app, argv)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert "Traceback" not in r.output and lines[-1].startswith("error: "), r.output
    assert logs or len(lines) == 1, r.output
    return lines[-1]


def test_eval_recipe_with_an_override_that_wins(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"eval:\n  model: {tiny_model_dir}\n  limit: 4\n  max_new_tokens: 6\n"
        f"  label: from-recipe\n  out: {run}\n"
    )
    argv = ["eval", "--config", str(recipe), "--limit", "3", "--label", "tiny"]
    r = runner.invoke(app, argv)
    assert r.exit_code == 0, r.output
    assert "tiny on sample: n=3 accuracy lenient" in r.stdout and str(run) in r.stdout
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["limit"] == 3 and stored["config"]["max_new_tokens"] == 6
    # The identity is the one the hand-written options produced for the same settings.
    same = EvalConfig(model=str(tiny_model_dir), limit=3, max_new_tokens=6, out=str(run))
    assert stored["identity"] == json.loads(json.dumps(same.identity()))
    # A rerun with the same settings is accepted (nothing left to do); another one is refused.
    r = runner.invoke(app, argv)
    assert r.exit_code == 0 and "n=3" in r.stdout, r.output
    out = _error([*argv, "--temperature", "0.5"], logs=True)
    assert "different settings (sampling)" in out


def test_eval_flags_map_onto_the_config(captured: dict, tmp_path: Path) -> None:
    _invoke(
        ["eval", "--model", "m", "--base-url", "http://a/v1", "--base-url", "http://b/v1",
         "--backend", "openai", "--cop-base", "1", "--overwrite", "--skip-invalid",
         "--top-p", "0.9", "--seed", "3", "--path", "x.jsonl", "--out", str(tmp_path)]
    )  # fmt: skip
    cfg = captured["eval"]
    assert cfg.base_url == ["http://a/v1", "http://b/v1"] and cfg.backend == "openai"
    assert cfg.loader_kwargs == {"cop_base": 1} and cfg.skip_invalid is True
    assert (cfg.top_p, cfg.seed, cfg.path, cfg.out) == (0.9, 3, "x.jsonl", str(tmp_path))
    assert captured["eval_kwargs"]["overwrite"] is True
    old = EvalConfig(
        model="m",
        base_url=["http://a/v1", "http://b/v1"],
        backend="openai",
        top_p=0.9,
        seed=3,
        path="x.jsonl",
        out=str(tmp_path),
        skip_invalid=True,
        loader_kwargs={"cop_base": 1},
    )
    assert cfg.identity() == old.identity()
    _invoke(["eval", "--model", "m"])
    assert captured["eval"] == EvalConfig(model="m")
    assert captured["eval_kwargs"]["overwrite"] is False


def test_unknown_flags_and_keys_name_the_closest(tmp_path: Path) -> None:
    out = _error(["eval", "--model", "m", "--max-new-token", "5"])
    assert "unknown option(s) --max-new-token (did you mean --max-new-tokens" in out
    out = _error(["generate", "--teacher", "openai:t", "--rmp", "5"])
    assert "--rmp (did you mean --rpm" in out
    recipe = tmp_path / "r.yaml"
    recipe.write_text("eval:\n  model: m\n  limt: 3\n")
    out = _error(["eval", "--config", str(recipe)])
    assert f"{recipe}: eval: unknown key(s) 'limt' (did you mean 'limit'?)" in out
    out = _error(["eval"])
    assert "missing required 'model'" in out and "--model" in out


def test_bad_types_are_one_line_errors(tmp_path: Path) -> None:
    out = _error(["eval", "--model", "m", "--limit", "abc"])
    assert "--limit" in out and "invalid int value: 'abc'" in out
    recipe = tmp_path / "r.yaml"
    recipe.write_text("eval:\n  model: m\n  limit: abc\n")
    out = _error(["eval", "--config", str(recipe)])
    assert f"{recipe}: eval.limit: expected an integer, got 'abc'" in out
    out = _error(["eval", "--model", "m", "--mode", "logprob"])
    assert "invalid choice: 'logprob'" in out
    out = _error(["eval", "--model", "m", "--loader-kwargs", "cop_base=1"])
    assert "loader_kwargs: expected a mapping" in out
    recipe.write_text("curate:\n  k: two\n")
    out = _error(["curate", "s.db", "--config", str(recipe)])
    assert f"{recipe}: curate.k: expected an integer, got 'two'" in out


def test_help_lists_every_field_with_its_help_and_default() -> None:
    r = runner.invoke(app, ["eval", "--help"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    for f in dataclasses.fields(EvalConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
        assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "token budget per answer (default: 2048)" in text
    assert "--overwrite" in text and "--cop-base" in text and "--config RECIPE.yaml" in text
    r = runner.invoke(app, ["generate", "--help"])
    text = " ".join(r.output.split())
    assert (
        r.exit_code == 0 and "--rpm" in text and "--price-in" in text and "--teacher SPEC" in text
    )
    assert "requests/min per endpoint (default: None)" in text
    assert "sampling temperature (default: 0.7)" in text
    r = runner.invoke(app, ["curate", "--help"])
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "[STORE]" in text and "--eval-benchmarks" in text
    assert "drop longer assistant turns (default: 8192)" in text


def test_generate_aliases_land_in_the_teacher_and_merge_with_the_recipe(
    captured: dict, tmp_path: Path
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "generate:\n"
        "  teacher: {model: t, base_url: [http://a/v1], concurrency: 4, batch_size: 3}\n"
        "  shuffle_options: true\n  samples: 2\n"
    )
    _invoke(["generate", "--config", str(recipe), "--rpm", "60", "--price-out", "2.5",
             "--timeout", "9", "--no-shuffle-options"])  # fmt: skip
    cfg = captured["generate"]
    assert cfg.teacher.requests_per_minute == 60.0 and cfg.teacher.price_output_per_mtok == 2.5
    assert cfg.teacher.timeout_s == 9.0 and cfg.teacher.base_url == ["http://a/v1"]
    assert cfg.teacher.concurrency == 4 and cfg.teacher.model == "t"
    assert cfg.shuffle_options is False and cfg.samples == 2
    # --teacher sets model and backend; the recipe's other teacher keys stay.
    _invoke(["generate", "--config", str(recipe), "--teacher", "transformers:tiny",
             "--shuffle-options", "false", "--retry-truncated"])  # fmt: skip
    cfg = captured["generate"]
    assert (cfg.teacher.model, cfg.teacher.backend, cfg.teacher.batch_size) == (
        "tiny",
        "transformers",
        3,
    )
    assert cfg.shuffle_options is False and cfg.retry_truncated is True
    _invoke(["generate", "--teacher", "openai:m", "--shuffle-options", "--samples", "2"])
    cfg = captured["generate"]
    assert cfg.shuffle_options is True and cfg.teacher.backend == "openai"
    out = _error(["generate", "--samples", "2"])
    assert "no teacher: pass --teacher or a generate.teacher section" in out


def test_existing_recipes_still_parse() -> None:
    root = Path(__file__).resolve().parents[1] / "recipes"
    for name in ("demo.yaml", "qwen3-8b-8gpu.yaml"):
        cfg = parse_stage(
            GenerateConfig,
            ["--config", str(root / name)],
            section="generate",
            prog="medistill generate",
            flatten=("teacher",),
        )
        assert cfg.teacher.model and cfg.shuffle_options is True


def test_curate_positional_store_and_benchmark_lists(captured: dict) -> None:
    _invoke(["curate", "--eval-benchmarks", "medqa,medmcqa", "--eval-benchmarks", "pubmedqa",
             "s.db", "--out", "ds"])  # fmt: skip
    cfg = captured["curate"]
    assert cfg.eval_benchmarks == ["medqa", "medmcqa", "pubmedqa"]
    assert (cfg.store, cfg.out) == ("s.db", "ds")
    for none in ("none", ""):
        _invoke(["curate", "s.db", "--eval-benchmarks", none])
        assert captured["curate"].eval_benchmarks == []
    # A bare boolean flag does not take the store as its value.
    _invoke(["curate", "--embedding-dedup", "s.db", "--no-dedup"])
    cfg = captured["curate"]
    assert (cfg.store, cfg.embedding_dedup, cfg.dedup) == ("s.db", True, False)
    _invoke(["curate", "--selection", "k", "--k", "2", "--max-per-subject", "5"])
    cfg = captured["curate"]
    assert (cfg.store, cfg.selection, cfg.k, cfg.max_per_subject) == ("runs/traces.db", "k", 2, 5)


@dataclasses.dataclass
class _Inner:
    seed: int = dataclasses.field(default=0, metadata={"help": "inner seed"})


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner, metadata={"help": "nested"})
    seed: int = dataclasses.field(default=1, metadata={"help": "outer seed"})


def test_flattening_a_nested_field_refuses_clashing_names() -> None:
    with pytest.raises(ValueError, match=r"option --seed of _Outer\.seed clashes with "):
        stage_parser(_Outer, prog="x", flatten=("inner",))
    with pytest.raises(ValueError, match="not a dataclass field"):
        stage_parser(_Outer, prog="x", flatten=("seed",))
    cfg = parse_stage(_Outer, ["--seed", "5", "--inner", '{"seed": 2}'], section="s", prog="x")
    assert cfg == _Outer(inner=_Inner(seed=2), seed=5)


def test_deploy_commands_read_recipes_and_name_bad_keys(tmp_path: Path, tiny_model_dir) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"export_model:\n  model: {tiny_model_dir}\n  format: hf\n  quantt: q8_0\n")
    out = _error(["export-model", "--config", str(recipe)])
    assert f"{recipe}: export_model: unknown key(s) 'quantt' (did you mean 'quant'?)" in out
    recipe.write_text(f"export_model:\n  model: {tiny_model_dir}\n  format: hf\n")
    r = runner.invoke(app, ["export-model", "--config", str(recipe), "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x" / "README.md").is_file() and "wrote" in r.output
    recipe.write_text("serve:\n  model: /nonexistent/student.gguf\n  port: eighty\n")
    out = _error(["serve", "--config", str(recipe)])
    assert f"{recipe}: serve.port: expected an integer, got 'eighty'" in out
    out = _error(["serve", "--config", str(recipe), "--port", "8123"])
    assert "no such file or folder" in out
