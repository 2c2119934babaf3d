"""Shared fixtures: the real benchmark files in ../shared/data and a tiny local model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    return Path(os.environ.get("MEDISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$MEDISTILL_SHARED_DATA``). Missing is a failure in CI."""
    path = _shared_data()
    if not (path / "medqa").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path}")
        pytest.skip(f"shared data not found at {path} (set MEDISTILL_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama + locally trained tokenizer, built once per test session."""
    pytest.importorskip("transformers")
    from medistill.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def synthetic_traces(n: int = 30, *, long_every: int = 0) -> list:
    """Teacher traces for the embedded sample questions: the reference explanation as the
    reasoning, then the answer line (every ``long_every``-th trace made far longer than any
    training budget from six explanations). Real records, as ``generate`` stores them."""
    import hashlib

    from medistill.data import load_benchmark
    from medistill.prompts import answer_line, get_template
    from medistill.store import TraceRecord

    tpl = get_template("cot")
    questions = load_benchmark("sample").questions
    out = []
    for i, q in enumerate(questions[:n]):
        reasoning = q.meta.get("explanation", "")[:240]
        if long_every and i % long_every == 0:  # long, but not repetitive (curation drops loops)
            reasoning = " ".join(o.meta.get("explanation", "") for o in questions[i : i + 6])
        text = f"{reasoning}\n\n{answer_line(q.gold)}"
        out.append(
            TraceRecord(
                key=hashlib.sha256(f"{q.id}/{text}".encode()).hexdigest(),
                question_id=q.id,
                sample_index=0,
                teacher="unit-teacher",
                messages=tpl.messages(q),
                params={"temperature": 0.0},
                text=text,
                finish_reason="stop",
                source="sample",
                question=q.question,
                options=q.options,
                gold=q.gold,
                subject=q.subject,
            )
        )
    return out


def curate_traces(records: list, out: Path, *, validation_fraction: float = 0.1) -> Path:
    """Run the real curation stage on ``records``; returns the dataset folder."""
    from medistill.curate import CurateConfig, run_curate
    from medistill.store import TraceStore

    out.mkdir(parents=True, exist_ok=True)
    with TraceStore(out / "traces.db") as store:
        store.put_many(records)
    cfg = CurateConfig(
        store=str(out / "traces.db"),
        out=str(out / "dataset"),
        eval_benchmarks=[],
        hf_dataset=False,
        min_tokens=4,
        max_tokens=100_000,
        validation_fraction=validation_fraction,
    )
    run_curate(cfg, show_progress=False)
    return out / "dataset"


@pytest.fixture(scope="session")
def curated_dataset(tmp_path_factory) -> Path:
    """A format_version 2 dataset folder written by ``medistill curate`` from 30 traces."""
    return curate_traces(synthetic_traces(30), tmp_path_factory.mktemp("curated"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, as ``make install`` leaves it (it runs ``apt-get install chromium``
    where it may); tests install nothing."""
    path = shutil.which("chromium")
    if path is None:
        why = "chromium is not installed: `make install` as root, or apt-get install chromium"
        if os.environ.get("CI"):  # a browser test skipped in CI would hide a broken page
            pytest.fail(why)
        pytest.skip(why)
    pytest.importorskip("playwright")
    return path


@pytest.fixture
def watched_page(chromium: str):
    """A headless chromium page, and the list where its console errors, page errors and
    dialogs (dismissed) are recorded: ``page, problems = watched_page``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
        yield page, problems
        browser.close()


@pytest.fixture(scope="session")
def llama_cpp() -> None:
    """llama-cpp-python (with its server) and llama.cpp's converter for it in medistill's
    cache, as ``make install`` leaves them: tests build and install nothing. Missing is a
    failure naming the fix; ``MEDISTILL_NO_LLAMA_CPP=1`` skips these tests instead."""
    import importlib.util

    if os.environ.get("MEDISTILL_NO_LLAMA_CPP"):
        pytest.skip("MEDISTILL_NO_LLAMA_CPP is set")
    from medistill.deploy.gguf import converter_dir, llama_cpp_version
    from medistill.errors import MedistillError

    try:
        llama_cpp_version("the deployment tests")
        if importlib.util.find_spec("llama_cpp") is None or not importlib.util.find_spec("uvicorn"):
            raise MedistillError("llama-cpp-python[server] is not importable: run `make install`")
        converter_dir()
    except MedistillError as e:
        pytest.fail(f"{e} (or set MEDISTILL_NO_LLAMA_CPP=1 to skip these tests)")
