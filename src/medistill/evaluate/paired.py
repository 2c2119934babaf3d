"""Two eval runs of the same questions, compared answer by answer: what quantisation (or any
other change to a model) did to its answers.

:func:`compare_runs` pairs the prediction rows of two run folders by question id and counts
the answers that changed and, of the discordant pairs, which way: ``b`` (the baseline right,
the run wrong) and ``c`` (the run right, the baseline wrong). McNemar's exact test
(:func:`mcnemar_exact`) asks whether ``b`` and ``c`` differ by more than chance: two accuracies
a point apart over the same 500 questions may be the same model (a few answers flipped both
ways) or a worse one (every flip one way), and only the pairs tell which.

An MCQ run is scored on ``correct`` (the lenient extracted letter against the gold one); a
safety run on ``refused``, where the right answer is a refusal of a harmful request and an
answer to a benign one. Error rows (the server refused the question) are left out of the
pairs, as they are left out of every rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medistill.answers.refusal import refusal_family
from medistill.errors import MedistillError
from medistill.evaluate.run_folder import CONFIG, METRICS, PREDICTIONS, read_predictions
from medistill.evaluate.safety_metrics import expects_refusal


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value for ``b`` and ``c`` discordant pairs: twice the
    binomial(b + c, 1/2) tail of the smaller count, capped at 1 (1.0 when there is no
    discordant pair: nothing changed, nothing to test)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # exact integer sum, then one division: no underflow for large n
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def _benchmark(folder: Path) -> str | None:
    """The benchmark a run folder answered (``metrics.json``, else ``config.json``)."""
    for name, key in ((METRICS, ("benchmark",)), (CONFIG, ("config", "benchmark"))):
        try:
            obj: Any = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for k in key:
            obj = obj.get(k) if isinstance(obj, dict) else None
        if obj:
            return str(obj)
    return None


def _rows(folder: Path) -> dict[str, dict[str, Any]]:
    """The finished, non-error rows of a run folder by id (a clear error when it has none)."""
    if not (folder / PREDICTIONS).exists():
        raise MedistillError(
            f"{folder}: no {PREDICTIONS}; compare two eval run folders (medistill eval --out)"
        )
    rows = read_predictions(folder / PREDICTIONS)
    return {str(r["id"]): r for r in rows if r.get("finish_reason") != "error" and "id" in r}


def _is_safety(rows: dict[str, dict[str, Any]]) -> bool:
    return any("refused" in r or "expect" in r for r in rows.values())


def _refused(row: dict[str, Any]) -> bool:
    """Refused, by the detector as it is now (as the run's metrics read it)."""
    return refusal_family(row.get("response") or "") is not None


def compare_runs(run_dir: str | Path, baseline_dir: str | Path) -> dict[str, Any]:
    """Pair the answers of ``run_dir`` with ``baseline_dir``'s (same benchmark) by question id.

    Returns ``{"n_paired", "changed", "b", "c", "mcnemar_p", "metric", "benchmark",
    "n_run", "n_baseline"}``: ``changed`` counts the paired questions whose extracted letter
    differs (MCQ) or that one refused and the other answered (safety); ``b`` those the
    baseline got right and the run wrong, ``c`` the reverse; ``mcnemar_p`` is
    :func:`mcnemar_exact` of ``b`` and ``c``; ``metric`` is ``"correct"`` or ``"refused"``.
    Runs of different benchmarks, of different kinds, with no question in common, or whose
    common questions have different gold answers are refused with a one-line error.
    """
    run, base = Path(run_dir), Path(baseline_dir)
    bench_run, bench_base = _benchmark(run), _benchmark(base)
    if bench_run and bench_base and bench_run != bench_base:
        raise MedistillError(
            f"cannot pair {run} ({bench_run}) with {base} ({bench_base}): different "
            "benchmarks; compare two runs of the same benchmark"
        )
    rows_run, rows_base = _rows(run), _rows(base)
    if rows_run and rows_base and _is_safety(rows_run) != _is_safety(rows_base):
        raise MedistillError(
            f"cannot pair {run} with {base}: one is a safety run, the other an MCQ run"
        )
    common = sorted(set(rows_run) & set(rows_base))
    if not common:
        raise MedistillError(
            f"cannot pair {run} ({len(rows_run)} answers) with {base} ({len(rows_base)}): no "
            "question id in common; compare two runs of the same benchmark"
        )
    safety = _is_safety(rows_run)
    changed = b = c = 0
    for qid in common:
        r, s = rows_run[qid], rows_base[qid]
        if safety:
            if expects_refusal(r) != expects_refusal(s):
                raise MedistillError(
                    f"cannot pair {run} with {base}: request {qid!r} is harmful in one and "
                    "benign in the other (different data under the same ids)"
                )
            ref_r, ref_s = _refused(r), _refused(s)
            ok_r = ref_r == expects_refusal(r)
            ok_s = ref_s == expects_refusal(s)
            changed += ref_r != ref_s
        else:
            if r.get("gold") != s.get("gold"):
                raise MedistillError(
                    f"cannot pair {run} with {base}: question {qid!r} has gold "
                    f"{r.get('gold')!r} in one and {s.get('gold')!r} in the other (different "
                    "data under the same ids)"
                )
            gold = r.get("gold")
            ok_r = gold is not None and r.get("extracted") == gold
            ok_s = gold is not None and s.get("extracted") == gold
            changed += r.get("extracted") != s.get("extracted")
        b += ok_s and not ok_r
        c += ok_r and not ok_s
    return {
        "benchmark": bench_run or bench_base,
        "metric": "refused" if safety else "correct",
        "n_run": len(rows_run),
        "n_baseline": len(rows_base),
        "n_paired": len(common),
        "changed": changed,
        "b": b,
        "c": c,
        "mcnemar_p": mcnemar_exact(b, c),
    }
