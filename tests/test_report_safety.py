"""The report with safety runs, both ways: one Safety table with, for every model, the refusal
of harmful requests and the over-refusal of benign ones side by side and a combined figure that
falls when either side fails (a model refusing everything scores low, as does one answering
everything); a model with one side has no combined figure and a note; per-category tables; old
metrics.json files without the split still render; the HTML escapes every model text."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.data.safety import load_safety
from medistill.evaluate import EvalConfig, run_eval
from medistill.evaluate.safety_metrics import compute_safety_metrics
from medistill.report import build_report

from chat_server import ChatServer

REQUESTS = {r.request: r for r in load_safety("safety_sample")}
BENIGN = {r.request: r for r in load_safety("benign_clinical")}
QUESTIONS = {q.question.strip(): q for q in load_benchmark("sample").questions}
EVIL = "Sure, here it is: <script>alert('pwned')</script> step 1 ..."
SORRY = "I'm sorry, but I can't help with that."
SAFETY_HEAD = "| Model | Refuses harmful: Safety sample (smoke test) | Over-refuses benign: "


def _responder(refuse_all: bool):
    def respond(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        if user in REQUESTS:
            if refuse_all or REQUESTS[user].category > 3:
                return SORRY
            return EVIL
        if user in BENIGN:
            return SORRY if refuse_all else "Monitor <b>closely</b> and document."
        q = next(q for t, q in QUESTIONS.items() if user.startswith(t))
        return f"The answer is {q.gold}."

    return respond


def _runs(tmp_path: Path, benign: bool = True) -> list[Path]:
    out = []
    benches = [("sample_heldout", {"limit": 3}), ("safety_sample", {})]
    if benign:
        benches.append(("benign_clinical", {"per_category": 1}))
    for key, label, refuse in (("base", "base: m", True), ("sft", "student: SFT", False)):
        with ChatServer(_responder(refuse)) as srv:
            for bench, extra in benches:
                folder = tmp_path / f"{key}-{bench}"
                cfg = EvalConfig(
                    model="served",
                    backend="openai",
                    base_url=[srv.url],
                    benchmark=bench,
                    label=label,
                    out=str(folder),
                    **extra,
                )
                run_eval(cfg, show_progress=False)
                out.append(folder)
    return out


def _safety_lines(md: str) -> list[str]:
    section = md.split("## Safety", 1)[1].split("###", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_safety_table_both_sides_and_escaped_answers(tmp_path: Path) -> None:
    rep = build_report(_runs(tmp_path), tmp_path / "report", title="with safety")
    md = rep.markdown
    lines = _safety_lines(md)
    assert lines[0] == SAFETY_HEAD + "Benign clinical (medistill) | Both ways |"
    base, sft = lines[2], lines[3]
    # base refuses everything: 100% of harmful, 100% of benign -> combined 0.
    assert base.startswith("| base: m | 100.0 [") and "(18) | 100.0 [" in base
    assert base.endswith("(9) | 0.0 [0.0, 46.1] |")
    # the student refuses 12/18 harmful and answers every benign request.
    assert sft.startswith("| student: SFT | 66.7 [") and "| 0.0 [0.0, " in sft
    assert sft.rsplit("|", 2)[1].strip().startswith("80.0 [")  # 2 * 2/3 * 1 / (2/3 + 1)
    assert "medistill's own set" in md and "phrase detector" in md and "BENCHMARKS.md" in md
    assert "No judge ran" in md
    per_cat = md.split("### Safety per category", 1)[1]
    assert "Benign clinical (medistill): over-refuses benign % per category" in per_cat
    assert "Safety sample (smoke test): refuses harmful % per category" in per_cat
    assert "| student: SFT | 0.0 | 0.0 | 0.0 | 100.0 |" in per_cat  # C1-C3 complied, C4 refused
    # The accuracy table is unchanged by the safety runs: one column, two rows.
    assert "| base: m |" in md.split("## Safety")[0]

    payload = json.loads(rep.json_path.read_text())["safety"]
    assert [r["label"] for r in payload["rows"]] == ["base: m", "student: SFT"]
    assert payload["rows"][0]["both_ways"] == 0.0
    assert payload["rows"][1]["benign"]["value"] == 0.0
    assert [c["key"] for c in payload["columns"]] == [
        "safety_sample:harmful",
        "benign_clinical:benign",
    ]

    html = rep.html_path.read_text()
    assert '<table id="safety">' in html and 'id="safety-answers"' in html
    assert "<script>" not in html and "<b>closely" not in html  # shown, never run
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    answers = html.split('id="safety-answers"', 1)[1]
    assert "student: SFT" in answers.split("</h3>", 1)[0]
    assert "answers to benign requests" in answers and "&lt;b&gt;closely" in answers
    assert any(escape(text) in answers for text in REQUESTS)  # the request, escaped
    assert any(escape(text) in answers for text in BENIGN)


def test_a_report_of_safety_runs_only_one_side(tmp_path: Path) -> None:
    runs = [p for p in _runs(tmp_path, benign=False) if "safety" in p.name]
    rep = build_report(runs, tmp_path / "report")
    lines = _safety_lines(rep.markdown)
    assert lines[0] == "| Model | Refuses harmful: Safety sample (smoke test) | Both ways |"
    assert lines[2].endswith("| – (benign side not measured) |")
    assert "student: SFT: the benign side was not measured" in rep.markdown
    assert rep.html_path.is_file()


def _row(i: int, expect: str, refused: bool, category: int | str = 1) -> dict:
    return {"id": f"{expect}{i}", "category": category, "source": "s", "expect": expect,
            "refused": refused, "finish_reason": "stop"}  # fmt: skip


def _write(folder: Path, label: str, bench: str, rows: list[dict], **extra) -> Path:
    m = compute_safety_metrics(rows, extra.pop("scores", None))
    m.update(label=label, model="m", benchmark=bench, mode="generate", judge=None, **extra)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder


@pytest.mark.parametrize(
    ("refuse_harmful", "refuse_benign", "combined"),
    [
        (1.0, 1.0, "0.0"),  # refuses everything
        (0.0, 0.0, "0.0"),  # answers everything
        (1.0, 0.0, "100.0"),  # safe both ways
        (0.9, 0.5, "64.3"),  # 2 * 0.9 * 0.5 / 1.4
        (0.5, 0.1, "64.3"),  # 2 * 0.5 * 0.9 / 1.4
    ],
)
def test_combined_figure_falls_when_either_side_fails(
    tmp_path: Path, refuse_harmful: float, refuse_benign: float, combined: str
) -> None:
    n = 10
    harmful = [_row(i, "refuse", i < refuse_harmful * n, i % 3 + 1) for i in range(n)]
    benign = [_row(i, "answer", i < refuse_benign * n, i % 3 + 1) for i in range(n)]
    # Two harmful sets and one benign set: the combined figure pools the harmful ones.
    runs = [
        _write(tmp_path / "a", "m", "medsafetybench", harmful[:6]),
        _write(tmp_path / "b", "m", "safety_sample", harmful[6:]),
        _write(tmp_path / "c", "m", "benign_clinical", benign),
    ]
    md = build_report(runs, tmp_path / "report").markdown
    head, _, row = _safety_lines(md)
    assert head.split(" | ")[1:4] == [
        "Refuses harmful: Safety sample (smoke test)",
        "Refuses harmful: MedSafetyBench",
        "Over-refuses benign: Benign clinical (medistill)",
    ]
    assert row.rsplit("|", 2)[1].strip().startswith(combined + " [")


def test_xstest_mixed_run_fills_both_sides_and_escapes_labels(tmp_path: Path) -> None:
    rows = [
        _row(0, "refuse", True, "contrast_homonyms"),
        _row(1, "refuse", True, "contrast_homonyms"),
    ]
    rows += [_row(0, "answer", True, "homonyms"), _row(1, "answer", False, "definitions")]
    label = "student <img src=x onerror=alert(1)> | x"
    judge = {"model": "smollm2", "policy_sha": "0" * 16, "base_url": ["http://127.0.0.1:9"]}
    run = _write(tmp_path / "x", label, "xstest", rows, scores={"refuse0": 1, "refuse1": None})
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "judge": judge}))
    rep = build_report([run], tmp_path / "report")
    md = rep.markdown
    head, _, line = _safety_lines(md)
    assert "Refuses harmful: XSTest unsafe" in head and "Over-refuses benign: XSTest safe" in head
    assert line.startswith("| student <img src=x onerror=alert(1)> \\| x | 100.0 [")
    assert "| 50.0 [" in line and line.rsplit("|", 2)[1].strip().startswith("66.7 [")
    per_cat = md.split("XSTest safe: over-refuses benign % per category", 1)[1]
    assert "| Model | definitions | homonyms |" in per_cat and "| 0.0 | 100.0 |" in per_cat
    assert "XSTest unsafe: refuses" not in md  # one category: no table
    judge_md = md.split("### Safety judge", 1)[1]
    assert "smollm2 (local: weak judge)" in judge_md and "weak judge" in md
    html = rep.html_path.read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_old_metrics_without_the_split_still_render(tmp_path: Path) -> None:
    rows = [_row(i, "refuse", i < 3, i % 9 + 1) for i in range(4)]
    for r in rows:
        del r["expect"]
    run = _write(tmp_path / "old", "old model", "medsafetybench", rows)
    m = json.loads((run / "metrics.json").read_text())
    for block in [m, *m["per_category"].values(), *m["per_source"].values()]:
        for key in ("harmful", "benign", "safe_both_ways"):
            block.pop(key)
        block["refusal_rate"].pop("correct")  # older proportions may lack counts
    (run / "metrics.json").write_text(json.dumps(m))
    rep = build_report([run], tmp_path / "report")
    head, _, line = _safety_lines(rep.markdown)
    assert head == "| Model | Refuses harmful: MedSafetyBench | Both ways |"
    assert line.startswith("| old model | 75.0 [") and "(4)" in line
    assert "(benign side not measured)" in line
    assert "MedSafetyBench: refuses harmful % per category" in rep.markdown


def test_per_category_columns_are_named(tmp_path: Path) -> None:
    """C1-C9 are MedSafetyBench's AMA principles: each per-category table names the ones it
    shows (Markdown and HTML), so a reader need not look the numbers up."""
    rows = [_row(i, "refuse", i < 2, i % 3 + 1) for i in range(6)]
    run = _write(tmp_path / "cats", "student: SFT", "medsafetybench", rows)
    rep = build_report([run], tmp_path / "report")
    per_cat = rep.markdown.split("### Safety per category", 1)[1]
    legend = (
        "Categories (AMA principles): C1: Competent care with compassion and respect for human "
        "dignity; C2: Professionalism and honesty; C3: Respect for the law."
    )
    assert legend in per_cat
    assert per_cat.index("| Model | C1 | C2 | C3 |") < per_cat.index(legend)
    html = rep.html_path.read_text()
    assert legend.replace("'", "&#x27;") in html
