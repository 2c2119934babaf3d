"""The "as deployed" figures: two runs paired answer by answer (McNemar), ``measured.json``
beside an export, and the rows the report, model card and explain page carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from medistill.errors import MedistillError
from medistill.evaluate.paired import compare_runs, mcnemar_exact


def _run(folder: Path, benchmark: str, rows: list[dict], metrics: dict | None = None) -> Path:
    """A run folder as run_eval leaves it: predictions.jsonl and metrics.json."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    (folder / "metrics.json").write_text(
        json.dumps({"benchmark": benchmark, **(metrics or {})}), encoding="utf-8"
    )
    return folder


def _mcq(answers: list[str | None], gold: str = "A") -> list[dict]:
    return [
        {"id": f"q{i}", "gold": gold, "extracted": a, "finish_reason": "stop"}
        for i, a in enumerate(answers)
    ]


# ------------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("b", "c", "want"),
    [
        (0, 0, 1.0),
        (1, 0, 1.0),
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
        (8, 2, 0.109375),
        (5, 5, 1.0),
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, want: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(3, 17), (40, 61), (0, 30), (250, 310), (1, 1)])
def test_mcnemar_exact_matches_scipy_binomial(b: int, c: int) -> None:
    want = binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 2)


# ------------------------------------------------------------------------ pairing (MCQ)


def test_compare_runs_mcq_counts_each_way(tmp_path: Path) -> None:
    # gold A everywhere; q0 both right; q1 base right run wrong (b); q2,q3 run right base
    # wrong (c); q4 both wrong but different letters (changed, not discordant); q5 both None
    base = _run(tmp_path / "base", "sample", _mcq(["A", "A", "B", "C", "B", None]))
    run = _run(tmp_path / "run", "sample", _mcq(["A", "C", "A", "A", "D", None]))
    got = compare_runs(run, base)
    assert got["metric"] == "correct"
    assert got["n_paired"] == 6
    assert (got["b"], got["c"]) == (1, 2)
    assert got["changed"] == 4  # q1, q2, q3, q4
    assert got["mcnemar_p"] == pytest.approx(1.0)
    assert got["benchmark"] == "sample"


def test_compare_runs_pairs_by_id_not_by_order(tmp_path: Path) -> None:
    base_rows = _mcq(["A", "B", "A"])
    run_rows = list(reversed(_mcq(["A", "B", "A"])))  # same answers, written in another order
    base = _run(tmp_path / "base", "sample", base_rows)
    run = _run(tmp_path / "run", "sample", run_rows)
    got = compare_runs(run, base)
    assert (got["changed"], got["b"], got["c"]) == (0, 0, 0)


def test_compare_runs_subset_and_error_rows(tmp_path: Path) -> None:
    # the deployed run asked a limit of the questions; an error row is left out of the pairs
    base = _run(tmp_path / "base", "sample", _mcq(["A"] * 10))
    rows = _mcq(["B", "A", "A", "A"])
    rows[1]["finish_reason"] = "error"
    rows[1]["extracted"] = None
    run = _run(tmp_path / "run", "sample", rows)
    got = compare_runs(run, base)
    assert got["n_paired"] == 3 and got["n_run"] == 3 and got["n_baseline"] == 10
    assert (got["b"], got["c"], got["changed"]) == (1, 0, 1)


def test_compare_runs_significant_shift(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"] * 12))
    run = _run(tmp_path / "run", "sample", _mcq(["B"] * 10 + ["A"] * 2))
    got = compare_runs(run, base)
    assert (got["b"], got["c"]) == (10, 0)
    assert got["mcnemar_p"] == pytest.approx(2 / 1024)


def test_compare_runs_refuses_other_benchmark(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "medqa", _mcq(["A"]))
    run = _run(tmp_path / "run", "sample", _mcq(["A"]))
    with pytest.raises(MedistillError, match="different benchmarks"):
        compare_runs(run, base)


def test_compare_runs_refuses_no_common_ids(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"]))
    rows = _mcq(["A"])
    rows[0]["id"] = "other"
    run = _run(tmp_path / "run", "sample", rows)
    with pytest.raises(MedistillError, match="no question id in common"):
        compare_runs(run, base)


def test_compare_runs_refuses_different_gold(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "mcq", _mcq(["A"], gold="A"))
    run = _run(tmp_path / "run", "mcq", _mcq(["A"], gold="B"))
    with pytest.raises(MedistillError, match="different data under the same ids"):
        compare_runs(run, base)


def test_compare_runs_refuses_missing_predictions(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedistillError, match=r"no predictions\.jsonl"):
        compare_runs(tmp_path / "empty", base)


# --------------------------------------------------------------------- pairing (safety)

REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Take the usual dose with food and see your doctor if it persists."


def _safety(responses: list[tuple[str, str]]) -> list[dict]:
    return [
        {
            "id": f"s{i}",
            "expect": expect,
            "response": text,
            "refused": None,  # stale: compare_runs reads the detector as it is now
            "finish_reason": "stop",
        }
        for i, (expect, text) in enumerate(responses)
    ]


def test_compare_runs_safety_both_sides(tmp_path: Path) -> None:
    base = _run(
        tmp_path / "base",
        "safety_sample",
        _safety(
            [
                ("refuse", REFUSAL),  # right -> run complies: b
                ("refuse", ANSWER),  # wrong -> run refuses: c
                ("answer", ANSWER),  # right -> run over-refuses: b
                ("answer", ANSWER),  # right, unchanged
            ]
        ),
    )
    run = _run(
        tmp_path / "run",
        "safety_sample",
        _safety([("refuse", ANSWER), ("refuse", REFUSAL), ("answer", REFUSAL), ("answer", ANSWER)]),
    )
    got = compare_runs(run, base)
    assert got["metric"] == "refused"
    assert (got["n_paired"], got["changed"], got["b"], got["c"]) == (4, 3, 2, 1)
    assert got["mcnemar_p"] == pytest.approx(1.0)


def test_compare_runs_refuses_safety_against_mcq(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "x", _mcq(["A"]))
    rows = _safety([("refuse", REFUSAL)])
    rows[0]["id"] = "q0"
    run = _run(tmp_path / "run", "x", rows)
    with pytest.raises(MedistillError, match="safety run"):
        compare_runs(run, base)
