"""Benign contrast demonstrations, end to end: ``generate --contrast`` against a real local
OpenAI-compatible server into a real SQLite store (resumable), then ``curate`` with
``safety_mix_contrast_share``: refusals, cut-off answers, duplicates and copies of evaluation
requests removed and counted, rows written as ``kind: contrast`` without a system prompt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import synthetic_traces
from medistill.backends import SamplingParams
from medistill.backends.config import TeacherConfig
from medistill.backends.local_server import Completion
from medistill.cli import app
from medistill.config import build
from medistill.curate import CurateConfig, run_curate
from medistill.data.safety import load_safety
from medistill.errors import MedistillError
from medistill.generate import GenerateConfig, run_generate
from medistill.store import TraceRecord, TraceStore, trace_key

from chat_server import ChatServer

TRAIN = load_safety("benign_clinical", split="train")
#: Requests the teacher always refuses, and those it refuses only in its first sample.
ALWAYS_REFUSED = {r.request for r in TRAIN[::9]}  # 6 requests
FIRST_REFUSED = {r.request for r in TRAIN[4::9]}  # 6 more
REFUSAL = "I'm sorry, but I can't help with that request."


class Teacher(ChatServer):
    """An MCQ answer for exam prompts; for an open request a helpful answer naming its sample
    (the seed), or a refusal for the requests above."""

    def __init__(self, **options: Any) -> None:
        super().__init__(lambda m: "", **options)

    def answer(self, body: dict[str, Any]) -> Completion:
        messages = body["messages"]
        if len(messages) != 1:  # the exam template: system + user
            return Completion("Step 1: weigh the findings.\nThe answer is B.", prompt_tokens=50)
        request, k = messages[0]["content"], body["seed"] - 7
        if request in ALWAYS_REFUSED or (request in FIRST_REFUSED and k == 0):
            return Completion(REFUSAL, prompt_tokens=20)
        text = (
            f"Sample {k}. Here is how clinicians handle this safely: assess the patient, check "
            "the relevant guideline, document the decision and involve the wider team."
        )
        return Completion(text, prompt_tokens=20)


def teacher(url: str) -> TeacherConfig:
    return TeacherConfig(model="teacher-x", base_url=[url], concurrency=8, timeout_s=5)


def generate(db: Path, url: str, **kw: Any) -> dict:
    cfg = GenerateConfig(
        teacher=teacher(url), benchmark="sample", limit=2, max_tokens=64, seed=7, out=str(db),
        **kw,
    )  # fmt: skip
    return run_generate(cfg, show_progress=False)


def test_generate_stores_contrast_calls_and_resumes_them(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    with Teacher() as srv:
        first = generate(db, srv.url)  # no contrast yet
        assert first["contrast"] is None and srv.stats["ok"] == 2
        summary = generate(db, srv.url, contrast="benign_clinical", contrast_samples=2)
        assert srv.stats["ok"] == 2 + 108  # only the new calls: 54 requests x 2 samples
        c = summary["contrast"]
        assert c == {
            "set": "benign_clinical", "source": "contrast:benign_clinical", "split": "train",
            "requests": 54, "samples": 2, "wanted": 108, "already_stored": 0,
            "new_calls": 108, "in_store": 108,
        }  # fmt: skip
        assert summary["wanted"] == 110 and summary["already_stored"] == 2
        again = generate(db, srv.url, contrast="benign_clinical", contrast_samples=2)
        assert srv.stats["ok"] == 110  # a rerun makes no call
        assert again["new_calls"] == 0 and again["contrast"]["already_stored"] == 108
    with TraceStore(db) as store:
        rows = list(store.iter_rows(contrast=True))
        assert store.count(contrast=False) == 2 and store.count(contrast=True) == 108
        assert len(list(store.iter_rows(contrast=False))) == 2
        assert {q["source"] for q in store.questions()} == {"sample"}  # not questions
    by_id = {r.id: r for r in TRAIN}
    for row in rows:
        req = by_id[row["question_id"]]
        assert row["source"] == "contrast:benign_clinical" and row["split"] == "train"
        assert row["options"] == {} and row["gold"] is None and row["permutation"] is None
        assert row["subject"] == str(req.category) and row["question"] == req.request
        assert row["messages"] == [{"role": "user", "content": req.request}]  # no system
        k = row["sample_index"]
        assert row["params"]["seed"] == 7 + k and row["params"]["max_new_tokens"] == 64
        assert row["key"] == trace_key("teacher-x", row["messages"], row["params"], k)


def test_generate_contrast_keys_are_checked() -> None:
    where = "recipe.yaml: generate"
    t = {"model": "m", "base_url": ["http://127.0.0.1:9"]}
    for values, message in (
        ({"contrast": "xstest"}, "unknown open-request set; choose benign_clinical"),
        ({"contrast": "benign_clinical", "contrast_samples": 0}, "at least 1"),
    ):
        with pytest.raises(MedistillError, match=message) as e:
            build(GenerateConfig, {"teacher": t, **values}, where=where)
        assert str(e.value).startswith(where)
    assert build(GenerateConfig, {"teacher": t, "contrast": "none"}, where=where).contrast is None
    cfg = build(GenerateConfig, {"teacher": t, "contrast": "benign_clinical",
                                 "contrast_samples": 3}, where=where)  # fmt: skip
    assert cfg.contrast_calls() == 54 * 3
    out = CliRunner().invoke(app, ["generate", "--help"], terminal_width=200).output
    assert "--contrast " in out and "--contrast-samples" in out


def _record(key: str, qid: str, request: str, text: str, **kw: Any) -> TraceRecord:
    return TraceRecord(
        key=key, question_id=qid, sample_index=0, teacher="teacher-x",
        messages=[{"role": "user", "content": request}], params={"seed": 7}, text=text,
        finish_reason=kw.pop("finish_reason", "stop"), source="contrast:benign_clinical",
        question=request, options={}, gold=None, subject=kw.pop("subject", "4"), split="train",
        **kw,
    )  # fmt: skip


@pytest.fixture
def contrast_store(tmp_path: Path, shared_data: Path, monkeypatch) -> Path:
    """A store with the synthetic MCQ traces, two samples of the teacher's answers to every
    benign train request (some refused), a cut-off answer, and answers to copies of a
    benign_clinical test request and an XSTest prompt; XSTest found in $MEDISTILL_DATA_DIR."""
    data = tmp_path / "data"
    shutil.copytree(shared_data / "xstest", data / "xstest", ignore=shutil.ignore_patterns("co*"))
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(data))
    db = tmp_path / "traces.db"
    with Teacher() as srv:
        generate(db, srv.url, contrast="benign_clinical", contrast_samples=2)
    benign_test = load_safety("benign_clinical", split="test")[7].request
    xstest = load_safety("xstest", label="safe")[3].request
    ok = "Here is the clinical approach: assess, treat, document and follow up with the team."
    with TraceStore(db) as store:
        store.put_many(synthetic_traces(30))
        store.put_many([
            _record("copy-benign", "planted-benign", benign_test, ok),
            _record("copy-xstest", "planted-xstest", xstest, ok),
            _record("cut", "planted-cut", "How do I taper a patient off long-term opioids?",
                    ok, finish_reason="length"),
            _record("empty", "planted-empty", "How is lithium toxicity recognised?",
                    "<think>Let me think.</think>  "),
        ])  # fmt: skip
    return db


def curate(store: Path, out: Path, **kw: Any) -> dict:
    cfg = CurateConfig(
        store=str(store), out=str(out), eval_benchmarks=["sample_heldout"], hf_dataset=True,
        min_tokens=4, max_tokens=100_000, validation_fraction=0.0, **kw,
    )  # fmt: skip
    return run_curate(cfg, show_progress=False)


def test_curate_draws_filtered_decontaminated_contrast_rows(
    contrast_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dataset"
    stats = curate(
        contrast_store, out, safety_mix="safety_train_sample", safety_mix_share=0.1,
        safety_mix_contrast_share=0.25,
    )  # fmt: skip
    # the MCQ path never saw the contrast calls: 2 generated + 30 synthetic traces verified
    assert stats["input_traces"] == 32 and stats["contrast_traces"] == 112
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").open()]
    assert not any(d["source"].startswith("contrast:") for d in dropped)
    kept, safety = stats["kept_traces"], stats["safety_mix"]["rows"]
    mix = stats["contrast_mix"]
    assert mix["read"] == 112 and mix["sources"] == ["contrast:benign_clinical"]
    assert mix["removed"] == {
        "empty": 1, "truncated": 1, "refusal": 6 * 2 + 6, "too_long": 0,
        "duplicate": 54 - 6 - 6,  # the second answer of a request answered at once
        "contaminated_safety_test": 2, "contaminated_eval": 0,
    }  # fmt: skip
    assert mix["available"] == 54 - 6 == 112 - sum(mix["removed"].values())
    assert mix["target_rows"] == round(0.25 * (kept + safety) / 0.75) == mix["rows"]
    assert mix["share"] == round(mix["rows"] / (kept + safety + mix["rows"]), 4)
    assert len(mix["by_category"]) == 9 and max(mix["by_category"].values()) <= 2
    assert any(a.startswith("xstest test (450 requests") for a in mix["decontaminated_against"])
    assert any(a.startswith("benign_clinical test (99") for a in mix["decontaminated_against"])
    assert any("medsafetybench" in n for n in mix["not_found"])  # not in $MEDISTILL_DATA_DIR
    decon = [json.loads(line) for line in (out / "contrast_decontamination.jsonl").open()]
    assert {d["id"] for d in decon} == {"planted-benign", "planted-xstest"}
    assert {d["benchmark"] for d in decon} == {"benign_clinical", "xstest"}
    # the refusal demonstrations get the same wider decontamination
    assert stats["safety_mix"]["decontaminated_against"][:4] == mix["decontaminated_against"][:4]
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["contrast_mix"]["rows"] == mix["rows"] and on_disk["contrast_traces"] == 112
    rows = [json.loads(line) for line in (out / "messages/train.jsonl").open()]
    contrast = [r for r in rows if r["kind"] == "contrast"]
    assert len(contrast) == mix["rows"] and mix["splits"] == {"train": mix["rows"], "validation": 0}
    assert len(rows) == kept + safety + mix["rows"]
    for r in contrast:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]  # no system prompt
        assert r["options"] == {} and r["gold"] is None and r["teacher"] == "teacher-x"
        assert r["source"] == "contrast:benign_clinical" and r["tokens"] > 0
        answer = r["messages"][1]["content"]
        assert answer != REFUSAL and answer.startswith("Sample")
        request = r["messages"][0]["content"]
        assert request not in ALWAYS_REFUSED
        assert answer.startswith("Sample 1" if request in FIRST_REFUSED else "Sample 0")
    card = (out / "README.md").read_text()
    assert "## Benign contrast demonstrations" in card and "| refusal | 18 |" in card
    from datasets import load_from_disk

    hf = load_from_disk(str(out / "hf/messages"))["train"]
    assert hf.filter(lambda r: r["kind"] == "contrast").num_rows == mix["rows"]
    # what training reads: SFT every row; GRPO's prompts the traces' questions only
    from medistill.train.data import prompt_rows, read_rows, resolve_dataset

    source = resolve_dataset(str(out))
    read = read_rows(source, "train")
    assert sum(r["kind"] == "contrast" for r in read) == mix["rows"]
    assert {p["kind"] for p in prompt_rows(source)} == {"trace"}
    assert source.card_summary["contrast_mix"]["rows"] == mix["rows"]
    # seeded: the same rows again
    again = curate(
        contrast_store, tmp_path / "again", safety_mix="safety_train_sample",
        safety_mix_share=0.1, safety_mix_contrast_share=0.25,
    )  # fmt: skip
    assert again["contrast_mix"]["by_category"] == mix["by_category"]


def test_contrast_share_errors(tmp_path: Path) -> None:
    where = "recipe.yaml: curate"
    for share in (1.0, -0.1, True):
        with pytest.raises(MedistillError, match=r"contrast_share must be in \[0, 1\)"):
            build(CurateConfig, {"safety_mix_contrast_share": share}, where=where)
    assert build(CurateConfig, {}, where=where).safety_mix_contrast_share == 0.0
    db = tmp_path / "traces.db"
    with TraceStore(db) as store:
        store.put_many(synthetic_traces(5))
    with pytest.raises(MedistillError, match=r"generate\.contrast: benign_clinical") as e:
        curate(db, tmp_path / "out", safety_mix_contrast_share=0.2)
    assert str(db) in str(e.value) and "holds none" in str(e.value)
    stats = curate(db, tmp_path / "out")  # share 0: no contrast, nothing asked
    assert stats["contrast_traces"] == 0 and "contrast_mix" not in stats


def test_sampling_params_of_a_contrast_call_match_the_questions() -> None:
    cfg = GenerateConfig(
        teacher=TeacherConfig(model="m", base_url=["http://127.0.0.1:9"]),
        contrast="benign_clinical", temperature=0.3, max_tokens=99, seed=5, contrast_samples=2,
    )  # fmt: skip
    from medistill.generate import contrast_requests

    reqs, info = contrast_requests(cfg)
    assert len(reqs) == 108 and info["requests"] == 54
    r = reqs[1]
    assert r.sample_index == 1 and r.params == SamplingParams(
        max_new_tokens=99, temperature=0.3, top_p=1.0, seed=6
    )
