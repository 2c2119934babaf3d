"""The HTML report's sample explanations, paired per benchmark: for each benchmark of a run, a
student's answers beside the teacher's answers to the SAME questions, with a caption that is
true in every case (the teacher missing on a benchmark, or not having answered a question).

The run folders are written by the real ``medistill eval`` against a local chat server, on two
benchmarks whose questions do not overlap (``sample_train`` and ``sample_heldout``), the way
every GPU recipe evaluates MedQA and MedMCQA.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import ChatServer

BENCHES = ("sample_train", "sample_heldout")
QUESTIONS = {
    q.question.strip(): (bench, q) for bench in BENCHES for q in load_benchmark(bench).questions
}


def _answerer(who: str, right_every: int):
    """Answers naming who answered which question of which benchmark; right on every
    ``right_every``-th question (1: always)."""
    count = [0]

    def respond(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        bench, q = next(v for text, v in QUESTIONS.items() if user.startswith(text))
        count[0] += 1
        right = count[0] % right_every == 0
        letter = q.gold if right else ("A" if q.gold != "A" else "B")
        return f"{who} reasons about {bench}/{q.id}.\nThe answer is {letter}."

    return respond


def _eval(root: Path, label: str, bench: str, responder, limit: int = 6) -> Path:
    out = root / f"{label.split(':')[0]}-{bench}"
    with ChatServer(responder) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            benchmark=bench,
            limit=limit,
            out=str(out),
            label=label,
        )
        run_eval(cfg, show_progress=False)
    return out


@pytest.fixture(scope="module")
def two_benchmark_runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Teacher, base and student on two benchmarks, teacher first as ``medistill run`` lists
    them: the old report took the last student run (second benchmark) and the first teacher
    run (first benchmark), so no question matched."""
    tmp = tmp_path_factory.mktemp("pairs")
    runs = []
    for label, who, every in (
        ("teacher: served", "TEACHER", 1),
        ("base: model", "BASE", 3),
        ("student: SFT", "STUDENT", 2),
    ):
        for bench in BENCHES:
            runs.append(_eval(tmp, label, bench, _answerer(who, every)))
    return tmp, runs


def _blocks(html: str) -> dict[str, str]:
    """The sample-explanations section's block per benchmark."""
    section = html.split('<div id="explanations">', 1)[1]
    parts = re.split(r'<div class="bench" data-benchmark="([^"]+)">', section)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def _cases(block: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="case" data-id="([^"]+)">(.*?)</div></div>', block, re.S)


def test_each_benchmark_pairs_student_and_teacher_on_the_same_question(
    two_benchmark_runs: tuple[Path, list[Path]],
) -> None:
    tmp, runs = two_benchmark_runs
    rep = build_report(runs, tmp / "report", explanations=4)
    blocks = _blocks(rep.html_path.read_text())
    assert list(blocks) == list(BENCHES)  # one block per benchmark, in table order
    # the real eval's audit reaches the Explanations table: every run measured for consistency
    audit = rep.markdown.split("## Explanations", 1)[1]
    for label in ("teacher: served", "base: model", "student: SFT"):
        for bench in ("Sample, first half", "Sample, held-out half"):
            row = next(x for x in audit.splitlines() if x.startswith(f"| {label} | {bench} |"))
            assert re.search(r" \| 6 \| \d+\.\d \[\d+\.\d, \d+\.\d\] \(", row), row
    for bench, block in blocks.items():
        caption = re.search(r"<p class='note caption'>(.*?)</p>", block).group(1)
        assert caption.startswith("student: SFT on ")
        assert (
            "each beside teacher: served&#x27;s answer to the same question: 2 the student got "
            "right, then 2 it got wrong." in caption
        )
        cases = _cases(block)
        assert len(cases) == 4
        assert any("right</span>" in body for _, body in cases)
        assert any("wrong</span>" in body for _, body in cases)
        for qid, body in cases:
            # the student's and the teacher's answers to this question of this benchmark
            assert f"STUDENT reasons about {bench}/{qid}." in body
            assert f"TEACHER reasons about {bench}/{qid}." in body
            assert 'data-label="student: SFT"' in body and 'data-label="teacher: served"' in body
            assert "BASE" not in body


def test_a_benchmark_without_a_teacher_run_says_so(
    two_benchmark_runs: tuple[Path, list[Path]],
) -> None:
    tmp, runs = two_benchmark_runs
    no_teacher_2 = [r for r in runs if r.name != "teacher-sample_heldout"]
    html = build_report(no_teacher_2, tmp / "r2", explanations=2).html_path.read_text()
    blocks = _blocks(html)
    assert "each beside teacher: served" in blocks["sample_train"]
    held = blocks["sample_heldout"]
    assert "no teacher run on Sample, held-out half, so the student&#x27;s answers are shown" in (
        held
    )
    assert "TEACHER" not in held and "beside" not in held


def test_a_teacher_run_on_other_questions_is_not_claimed(tmp_path: Path) -> None:
    """The teacher ran the benchmark but on other questions (a smaller limit): the caption says
    where the teacher's answer is missing instead of claiming it is beside the student's."""
    student = _eval(tmp_path, "student: SFT", "sample_train", _answerer("STUDENT", 2), limit=6)
    teacher = _eval(tmp_path, "teacher: served", "sample_train", _answerer("TEACHER", 1), limit=2)
    html = build_report([teacher, student], tmp_path / "r", explanations=4).html_path.read_text()
    block = _blocks(html)["sample_train"]
    answered = {json.loads(x)["id"] for x in (teacher / "predictions.jsonl").open()}
    cases = _cases(block)
    assert len(cases) == 4
    # questions the teacher answered come first; the others are shown alone, and said to be
    assert [qid in answered for qid, _ in cases].count(True) == 2
    for qid, body in cases:
        assert ("TEACHER reasons" in body) == (qid in answered)
    assert "(2 of 4 shown without one: not in the teacher&#x27;s run)" in block


def test_an_inconsistent_answer_is_marked(tmp_path: Path) -> None:
    """A prediction row the audit read as arguing for another option says so beside it."""
    run = _eval(tmp_path, "student: SFT", "sample_train", _answerer("STUDENT", 2), limit=2)
    path = run / "predictions.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0].update(reasoning_verdict="argues_other", concluded="C")
    rows[1].update(reasoning_verdict="argues_none", concluded=None)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    html = build_report([run], tmp_path / "r", explanations=2).html_path.read_text()
    said = rows[0]["extracted_strict"]
    assert f"the reasoning argues for C, the answer line says {said}" in html
    assert "the reasoning argues for no option" in html
