"""Tests for medistill.report: results table, warnings, chart and error handling."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from medistill.errors import DataError, MedistillError
from medistill.report import Report, benchmark_order, build_report, load_runs

TEACHER = "Qwen2.5-72B-Instruct"
# What each kind of warning tells the reader to look at (spelled out: a changed hint must
# change these tests).
BELOW_CHANCE = (
    "compare its wrong rows' response with their extracted letter in predictions.jsonl: below "
    "chance usually means letters misread, not a weak model"
)
NO_ANSWER = (
    "read its no-answer rows in predictions.jsonl (an answer the extractor cannot read counts "
    "as wrong; `medistill rescore` rereads a run)"
)
TRUNCATED = "raise max_new_tokens (eval --max-new-tokens) or read the cut-off rows"
BASE = "SmolLM2-135M-Instruct"
DISTILLED = "SmolLM2-135M-medistill"
LOGLIK = "Meditron-7B"


def metrics(
    label: str,
    benchmark: str,
    *,
    n: int = 50,
    strict: tuple[float, float, float] = (0.16, 0.083, 0.285),
    lenient: tuple[float, float, float] = (0.22, 0.127, 0.355),
    no_answer: tuple[float, float] = (0.54, 0.10),
    truncation: float | None = 0.04,
    tokens: float | None = 105.2,
    latency: float | None = 1.31,
    mode: str = "generate",
    chance: float | None = 0.25,
) -> dict[str, Any]:
    """A realistic schema-1 metrics.json payload (defaults: the weak base student on MedQA)."""

    def acc(triple: tuple[float, float, float]) -> dict[str, Any]:
        value, low, high = triple
        return {"value": value, "ci_low": low, "ci_high": high, "correct": round(value * n), "n": n}

    return {
        "schema_version": 1,
        "label": label,
        "model": f"/models/{label}",
        "benchmark": benchmark,
        "mode": mode,
        "n": n,
        "accuracy": {"strict": acc(strict), "lenient": acc(lenient)},
        "no_answer_rate": {"strict": no_answer[0], "lenient": no_answer[1]},
        "truncation_rate": truncation,
        "output_tokens": None
        if tokens is None
        else {"mean": tokens, "median": tokens, "total": tokens * n},
        "latency_s": None if latency is None else {"mean": latency, "median": latency},
        "throughput": None
        if latency is None
        else {"answers_per_s": 1 / latency, "output_tokens_per_s": (tokens or 0) / latency},
        "by_subject": {},
        "rules": {"answer_is": 20, "boxed": 3},
        "chance": chance,
    }


def write_run(root: Path, name: str, payload: dict[str, Any] | str) -> Path:
    """Write ``payload`` as ``root/name/metrics.json`` and return the run folder."""
    folder = root / name
    folder.mkdir(parents=True)
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)
    (folder / "metrics.json").write_text(text, encoding="utf-8")
    return folder


def suite() -> list[tuple[str, dict[str, Any]]]:
    """Teacher, base student, distilled student and a loglik baseline on MedQA/MedMCQA."""
    return [
        (
            "teacher-medqa",
            metrics(
                TEACHER,
                "medqa",
                strict=(0.76, 0.626, 0.857),
                lenient=(0.78, 0.647, 0.872),
                no_answer=(0.04, 0.02),
                truncation=0.0,
                tokens=210.4,
                latency=3.2,
            ),
        ),
        (
            "teacher-medmcqa",
            metrics(
                TEACHER,
                "medmcqa",
                n=100,
                strict=(0.68, 0.584, 0.763),
                lenient=(0.70, 0.604, 0.781),
                no_answer=(0.03, 0.01),
                truncation=0.0,
                tokens=180.0,
                latency=2.9,
            ),
        ),
        # Weak base student: MedQA is the default payload (strict no-answer 54%).
        ("base-medqa", metrics(BASE, "medqa")),
        # Base student on MedMCQA is below chance: CI upper bound 15% < 25%.
        (
            "base-medmcqa",
            metrics(
                BASE,
                "medmcqa",
                n=100,
                strict=(0.06, 0.028, 0.125),
                lenient=(0.08, 0.041, 0.150),
                no_answer=(0.12, 0.05),
                truncation=0.02,
                tokens=95.0,
                latency=1.0,
            ),
        ),
        # Distilled student: MedQA only, and its cost fields were not recorded.
        (
            "distilled-medqa",
            metrics(
                DISTILLED,
                "medqa",
                strict=(0.34, 0.224, 0.478),
                lenient=(0.36, 0.241, 0.497),
                no_answer=(0.06, 0.02),
                truncation=None,
                tokens=None,
                latency=None,
            ),
        ),
        (
            "loglik-medqa",
            metrics(
                LOGLIK,
                "medqa",
                mode="loglik",
                strict=(0.42, 0.294, 0.557),
                lenient=(0.42, 0.294, 0.557),
                no_answer=(0.0, 0.0),
                truncation=0.0,
                tokens=None,
                latency=None,
            ),
        ),
        (
            "loglik-medmcqa",
            metrics(
                LOGLIK,
                "medmcqa",
                n=100,
                mode="loglik",
                strict=(0.38, 0.291, 0.478),
                lenient=(0.38, 0.291, 0.478),
                no_answer=(0.0, 0.0),
                truncation=0.0,
                tokens=None,
                latency=None,
            ),
        ),
    ]


@pytest.fixture
def run_dirs(tmp_path: Path) -> list[Path]:
    return [write_run(tmp_path / "runs", name, payload) for name, payload in suite()]


def parse_table(markdown: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The first Markdown table as (header, {model label: {column: cell}})."""
    lines = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:  # the first table ends at its first non-table line
            break
    split = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    assert set(lines[1]) <= set("|:-"), "second table line must be the alignment row"
    return header, {row[0]: dict(zip(header, row, strict=True)) for row in body}


@pytest.fixture
def lenient_report(run_dirs: list[Path], tmp_path: Path) -> Report:
    return build_report(run_dirs, tmp_path / "out")


# --------------------------------------------------------------------------- table


def test_header_and_row_order(lenient_report: Report) -> None:
    header, rows = parse_table(lenient_report.markdown)
    assert header == [
        "Model",
        "MedQA",
        "MedMCQA",
        "Avg",
        "No answer %",
        "Trunc. %",
        "Tokens/answer",
        "s/answer",
        "Latency s",
    ]
    assert list(rows) == [TEACHER, BASE, DISTILLED, LOGLIK]


@pytest.mark.parametrize(
    ("label", "column", "expected"),
    [
        (TEACHER, "MedQA", "78.0 (64.7–87.2)"),
        (TEACHER, "MedMCQA", "70.0 (60.4–78.1)"),
        (BASE, "MedQA", "22.0 (12.7–35.5)"),
        (BASE, "MedMCQA", "8.0 (4.1–15.0)"),
        (DISTILLED, "MedQA", "36.0 (24.1–49.7)"),
        (DISTILLED, "MedMCQA", "–"),
        (LOGLIK, "MedQA", "42.0 (29.4–55.7)"),
        # Avg: unweighted mean over benchmarks, only for complete rows.
        (TEACHER, "Avg", "74.0"),
        (BASE, "Avg", "15.0"),
        (DISTILLED, "Avg", "–"),
        (LOGLIK, "Avg", "40.0"),
        # Cost columns: weighted by n (MedQA n=50, MedMCQA n=100).
        (TEACHER, "No answer %", "1.3"),  # (0.02*50 + 0.01*100) / 150
        (TEACHER, "Trunc. %", "0.0"),
        (TEACHER, "Tokens/answer", "190"),  # (210.4*50 + 180*100) / 150 = 190.1
        (TEACHER, "s/answer", "3.00"),  # (3.2*50 + 2.9*100) / 150
        (BASE, "No answer %", "6.7"),  # (0.10*50 + 0.05*100) / 150
        (BASE, "Trunc. %", "2.7"),  # (0.04*50 + 0.02*100) / 150
        (BASE, "Tokens/answer", "98"),  # (105.2*50 + 95*100) / 150 = 98.4
        (BASE, "s/answer", "1.10"),  # (1.31*50 + 1.0*100) / 150
        # Null cost fields render as a dash, not as 0 or "None".
        (DISTILLED, "No answer %", "2.0"),
        (DISTILLED, "Trunc. %", "–"),
        (DISTILLED, "Tokens/answer", "–"),
        (DISTILLED, "s/answer", "–"),
        # A log-likelihood run generates nothing: zero no-answer, no token/latency cost.
        (LOGLIK, "No answer %", "0.0"),
        (LOGLIK, "Tokens/answer", "–"),
        (LOGLIK, "s/answer", "–"),
    ],
)
def test_lenient_cells(lenient_report: Report, label: str, column: str, expected: str) -> None:
    _, rows = parse_table(lenient_report.markdown)
    assert rows[label][column] == expected


@pytest.mark.parametrize(
    ("label", "column", "expected"),
    [
        (TEACHER, "MedQA", "76.0 (62.6–85.7)"),
        (BASE, "MedQA", "16.0 (8.3–28.5)"),
        (BASE, "Avg", "11.0"),
        (BASE, "No answer %", "26.0"),  # (0.54*50 + 0.12*100) / 150
    ],
)
def test_strict_cells(
    run_dirs: list[Path], tmp_path: Path, label: str, column: str, expected: str
) -> None:
    report = build_report(run_dirs, tmp_path / "out", metric="strict")
    _, rows = parse_table(report.markdown)
    assert rows[label][column] == expected


def test_notes_under_table(lenient_report: Report) -> None:
    md = lenient_report.markdown
    table_end = md.index("| " + LOGLIK)
    notes = md[table_end:]
    assert "**Metric:** lenient accuracy (explicit answer statement, with fallback" in notes
    assert "**n per benchmark:** MedQA 50, MedMCQA 100." in notes
    assert "**Chance:** 25.0% on every benchmark." in notes
    assert md.startswith("# Results (lenient accuracy)\n")


def test_strict_metric_line(run_dirs: list[Path], tmp_path: Path) -> None:
    md = build_report(run_dirs, tmp_path / "out", metric="strict", title="Table 2").markdown
    assert md.startswith("# Table 2\n")
    assert "**Metric:** strict accuracy (explicit answer statement only)" in md


def test_per_benchmark_chance_and_varying_n(tmp_path: Path) -> None:
    dirs = [
        write_run(tmp_path, "a", metrics("A", "medqa", n=50)),
        write_run(tmp_path, "b", metrics("B", "medqa", n=40)),
        write_run(
            tmp_path, "c", metrics("A", "pubmedqa", n=60, chance=1 / 3, lenient=(0.6, 0.47, 0.71))
        ),
    ]
    md = build_report(dirs, tmp_path / "out").markdown
    assert "**n per benchmark:** MedQA 40–50 (varies by model), PubMedQA 60." in md
    assert "**Chance:** MedQA 25.0%, PubMedQA 33.3%." in md


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["medmcqa", "medqa"], ["medqa", "medmcqa"]),
        (
            ["zoology", "mmlu_medical", "anatomy", "pubmedqa", "medqa5", "medmcqa", "medqa"],
            ["medqa", "medqa5", "medmcqa", "pubmedqa", "mmlu_medical", "anatomy", "zoology"],
        ),
        (["custom_b", "custom_a"], ["custom_a", "custom_b"]),
    ],
)
def test_benchmark_order(given: list[str], expected: list[str]) -> None:
    assert benchmark_order(given) == expected


def test_column_order_and_headers_in_table(tmp_path: Path) -> None:
    benches = ["anatomy", "mmlu_medical", "pubmedqa", "medqa5", "medmcqa", "medqa"]
    dirs = [write_run(tmp_path, b, metrics("M", b)) for b in benches]
    header, rows = parse_table(build_report(dirs, tmp_path / "out").markdown)
    assert header[:8] == [
        "Model",
        "MedQA",
        "MedQA-5",
        "MedMCQA",
        "PubMedQA",
        "MMLU-Med",
        "anatomy",
        "Avg",
    ]
    assert rows["M"]["Avg"] == "22.0"


def test_two_runs_with_one_label_are_two_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = write_run(tmp_path, "old", metrics("M", "medqa", lenient=(0.30, 0.19, 0.44)))
    second = write_run(tmp_path, "new", metrics("M", "medqa", lenient=(0.40, 0.28, 0.54)))
    with caplog.at_level(logging.WARNING, logger="medistill.report"):
        report = build_report([first, second], tmp_path / "out")
    _, rows = parse_table(report.markdown)
    assert rows[f"M [{first}]"]["MedQA"] == "30.0 (19.0–44.0)"
    assert rows[f"M [{second}]"]["MedQA"] == "40.0 (28.0–54.0)"
    assert len(rows) == 2
    # Said in the report itself, not only on stderr.
    note = next(w for w in report.warnings if "labelled 'M'" in w)
    assert str(first) in note and str(second) in note and note in report.markdown


def test_s_per_answer_is_wall_clock_and_latency_is_its_own_column(tmp_path: Path) -> None:
    """A concurrent HTTP run: 27 s per request (queueing) but 1.15 s of wall clock each."""
    payload = metrics("served", "medqa", latency=27.0)
    payload["seconds_per_answer"] = 1.15
    report = build_report([write_run(tmp_path, "r", payload)], tmp_path / "o")
    _, rows = parse_table(report.markdown)
    assert rows["served"]["s/answer"] == "1.15"
    assert rows["served"]["Latency s"] == "27.00"


def test_pipe_in_label_is_escaped(tmp_path: Path) -> None:
    report = build_report([write_run(tmp_path, "r", metrics("a|b", "medqa"))], tmp_path / "o")
    assert "| a\\|b | 22.0 (12.7–35.5) |" in report.markdown


# --------------------------------------------------------------------------- warnings


def warning_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if "⚠" in line]


def test_below_chance_warning(lenient_report: Report) -> None:
    lines = warning_lines(lenient_report.markdown)
    assert lines == [
        f"- ⚠ {BASE} on MedMCQA: accuracy 8% (95% CI up to 15%) is below chance 25% "
        f"— {BELOW_CHANCE}"
    ]
    assert lenient_report.warnings == [lines[0][2:]]


def test_no_answer_warning_with_strict_metric(run_dirs: list[Path], tmp_path: Path) -> None:
    lines = warning_lines(build_report(run_dirs, tmp_path / "out", metric="strict").markdown)
    assert f"- ⚠ {BASE} on MedQA: no-answer 54% — {NO_ANSWER}" in lines
    assert any(line.startswith(f"- ⚠ {BASE} on MedMCQA: accuracy 6%") for line in lines)
    assert len(lines) == 2


@pytest.mark.parametrize("metric", ["strict", "lenient"])
def test_no_warning_for_healthy_runs(run_dirs: list[Path], tmp_path: Path, metric: str) -> None:
    md = build_report(run_dirs, tmp_path / "out", metric=metric).markdown
    for healthy in (TEACHER, DISTILLED, LOGLIK):
        assert not [line for line in warning_lines(md) if f"⚠ {healthy} " in line]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"truncation": 0.12}, f"truncated 12% — {TRUNCATED}"),
        ({"no_answer": (0.5, 0.204)}, f"no-answer 20.4% — {NO_ANSWER}"),
        (
            {"lenient": (0.05, 0.01, 0.2)},
            f"accuracy 5% (95% CI up to 20%) is below chance 25% — {BELOW_CHANCE}",
        ),
        (
            {"truncation": 0.12, "no_answer": (0.5, 0.3)},
            f"no-answer 30%, truncated 12% — {NO_ANSWER}; {TRUNCATED}",
        ),
    ],
)
def test_each_warning_trigger(tmp_path: Path, overrides: dict[str, Any], expected: str) -> None:
    """Each warning says what was measured, then what to look at for that kind (said once)."""
    base = {"no_answer": (0.5, 0.1), "truncation": 0.0}
    run = write_run(tmp_path, "r", metrics("M", "medqa", **{**base, **overrides}))
    report = build_report([run], tmp_path / "out")
    assert report.warnings == [f"⚠ M on MedQA: {expected}"]


def test_position_bias_warning_says_what_was_measured_and_what_to_do(tmp_path: Path) -> None:
    """A position-biased run is not an extraction or token-budget problem: its warning gives
    the letter's share against its gold share and points at --permute-options, never at
    "check answer extraction / max_new_tokens"."""
    payload = metrics("M", "medqa", no_answer=(0.5, 0.1), truncation=0.0)
    payload["letters"] = {
        "extracted": {"A": 0.62, "B": 0.2, "C": 0.1, "D": 0.08},
        "gold": {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25},
        "most_frequent": "A",
        "excess": 0.37,
        "flagged": True,
    }
    report = build_report([write_run(tmp_path, "r", payload)], tmp_path / "out")
    (line,) = report.warnings
    assert line.startswith(
        "⚠ M on MedQA: position bias: answers A on 62% of questions (gold A: 25%)"
    )
    assert "--permute-options 4" in line and "max_new_tokens" not in line
    assert "check answer extraction" not in line


@pytest.mark.parametrize(
    "overrides",
    [
        {"truncation": 0.05, "no_answer": (0.5, 0.20)},  # thresholds are "exceeds", not ">="
        {"lenient": (0.10, 0.04, 0.25)},  # CI touching chance is not below it
        {"chance": None},
    ],
)
def test_boundaries_do_not_warn(tmp_path: Path, overrides: dict[str, Any]) -> None:
    run = write_run(tmp_path, "r", metrics("M", "medqa", **{"no_answer": (0.5, 0.1), **overrides}))
    report = build_report([run], tmp_path / "out")
    assert report.warnings == []
    assert "No warnings" in report.markdown


def test_warnings_are_logged(
    run_dirs: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medistill.report"):
        build_report(run_dirs, tmp_path / "out")
    assert any("below chance" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- outputs


def test_outputs_written(lenient_report: Report, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert lenient_report.markdown_path == out / "report.md"
    assert lenient_report.png_path == out / "report.png"
    assert lenient_report.json_path == out / "report.json"
    assert lenient_report.markdown_path.read_text(encoding="utf-8") == lenient_report.markdown


def test_png_is_valid_image(lenient_report: Report) -> None:
    import matplotlib.image

    data = lenient_report.png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(lenient_report.png_path)
    height, width = image.shape[:2]
    assert height > 400 and width > 600  # dpi 150 on a >= 6x4.8 inch figure
    assert image.std() > 0.05  # not a blank canvas
    assert len({tuple(px) for px in image.reshape(-1, image.shape[2])[::37]}) > 10


def test_png_with_differing_chance(tmp_path: Path) -> None:
    dirs = [
        write_run(tmp_path, "a", metrics("A", "medqa")),
        write_run(tmp_path, "b", metrics("A", "pubmedqa", chance=1 / 3)),
    ]
    report = build_report(dirs, tmp_path / "out")
    assert report.png_path.read_bytes()[:4] == b"\x89PNG"


def test_report_json(lenient_report: Report) -> None:
    assert lenient_report.json_path is not None
    data = json.loads(lenient_report.json_path.read_text(encoding="utf-8"))
    assert data["metric"] == "lenient"
    assert [b["name"] for b in data["benchmarks"]] == ["medqa", "medmcqa"]
    assert data["benchmarks"][1]["n"] == [100]
    rows = {row["label"]: row for row in data["rows"]}
    assert rows[TEACHER]["cells"]["medqa"]["value"] == pytest.approx(0.78)
    assert rows[TEACHER]["avg"] == pytest.approx(0.74)
    assert rows[DISTILLED]["cells"]["medmcqa"] is None
    assert rows[DISTILLED]["avg"] is None
    assert rows[DISTILLED]["tokens_per_answer"] is None
    assert data["table"]["header"][0] == "Model"
    assert data["table"]["rows"][0][1] == "78.0 (64.7–87.2)"
    assert len(data["warnings"]) == 1


# --------------------------------------------------------------------------- loading


def test_load_runs_accepts_folder_and_file(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "r", metrics("M", "medqa"))
    runs = load_runs([folder, folder / "metrics.json", str(folder)])
    assert [r["label"] for r in runs] == ["M", "M", "M"]
    assert all(r["_path"] == str(folder / "metrics.json") for r in runs)


def _without(path: str) -> dict[str, Any]:
    payload = copy.deepcopy(metrics("M", "medqa"))
    *parents, last = path.split(".")
    node = payload
    for key in parents:
        node = node[key]
    del node[last]
    return payload


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (_without("accuracy"), "field 'accuracy'"),
        (_without("accuracy.lenient.ci_high"), "field 'accuracy.lenient.ci_high'"),
        (_without("label"), "field 'label'"),
        (_without("no_answer_rate"), "field 'no_answer_rate'"),
        ({**metrics("M", "medqa"), "schema_version": 2}, "unsupported schema_version 2"),
        ({**metrics("M", "medqa"), "n": 0}, "field 'n'"),
        ({**metrics("M", "medqa"), "chance": "quarter"}, "field 'chance'"),
        ({**metrics("M", "medqa"), "latency_s": {"mean": "slow"}}, "field 'latency_s.mean'"),
        ('{"schema_version": 1,\n  "label": }', ":2: invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_metrics_file(tmp_path: Path, payload: dict[str, Any] | str, fragment: str) -> None:
    folder = write_run(tmp_path, "bad", payload)
    good = write_run(tmp_path, "good", metrics("G", "medqa"))
    with pytest.raises(DataError) as info:
        build_report([good, folder], tmp_path / "out")
    assert str(folder / "metrics.json") in str(info.value)
    assert fragment in str(info.value)
    assert not (tmp_path / "out" / "report.md").exists()


def test_missing_metrics_json(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    with pytest.raises(MedistillError, match=r"no metrics\.json") as info:
        build_report([empty], tmp_path / "out")
    assert str(empty / "metrics.json") in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MedistillError, match="no such run folder") as info:
        load_runs([tmp_path / "nope"])
    assert str(tmp_path / "nope") in str(info.value)


def test_no_runs(tmp_path: Path) -> None:
    with pytest.raises(MedistillError, match="no run folders"):
        build_report([], tmp_path / "out")


@pytest.mark.parametrize("metric", ["accuracy", "STRICT", ""])
def test_bad_metric_name(run_dirs: list[Path], tmp_path: Path, metric: str) -> None:
    with pytest.raises(MedistillError) as info:
        build_report(run_dirs, tmp_path / "out", metric=metric)
    message = str(info.value)
    assert repr(metric) in message and "'strict'" in message and "'lenient'" in message


def test_coinciding_points_in_the_tokens_plot_share_one_label() -> None:
    """Two models at the same tokens per answer and accuracy get one label naming both (no
    labels printed over each other); a model elsewhere keeps its own."""
    from medistill.report.plots import point_labels, tokens_plot

    def row(label: str, tokens: float, acc: float) -> dict[str, Any]:
        cell = {"value": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05}
        return {"label": label, "cells": {"medqa": cell}, "avg": acc, "tokens_per_answer": tokens}

    data = {
        "rows": [
            row("base: m", 128.0, 0.30),
            row("student: SFT", 128.0, 0.30),
            row("student: SFT+GRPO", 128.5, 0.31),
            row("teacher: t", 60.0, 0.90),
        ]
    }
    points = [
        {"label": r["label"], "x": r["tokens_per_answer"], "y": 100 * r["avg"]}
        for r in data["rows"]
    ]
    assert point_labels(points) == [
        (128.0, 30.0, "base: m\nstudent: SFT\nstudent: SFT+GRPO"),
        (60.0, 90.0, "teacher: t"),
    ]
    assert tokens_plot(data).startswith(b"\x89PNG")
