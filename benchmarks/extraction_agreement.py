"""The answer extractor against hand labels: the labelled set of ``tests/extraction_cases.py``.

    python benchmarks/extraction_agreement.py [--base-rev REV]

Each case is a response, its options and the letter a careful human labeller assigns (or none).
Per mode (strict, lenient): agreement (the extractor's letter equals the label, "no answer"
included), false answers (the extractor names a letter the label does not: a wrong letter, or
a letter where the label says no answer) and missed answers; overall and for each of issue 28's
four families (``FAMILIES``: a final answer then degenerate blocks, a hedge then a commitment,
"none is correct" then an answer or as the last word, answers to invented questions); then the
same on ``tests/extraction_cases_blind.py`` (``FAMILIES_BLIND``: the four families and general
cases, written by someone who had not seen the extractor's rules, measured before any rule was
changed for them). With
``--base-rev`` the same cases are also read by the extractor of that git revision (checked out
into a temporary folder), so a change is measured against its baseline in the same run.

Both sets are written for medistill (not a public benchmark): the first measures the rules
against the families they were built for; the blind set is the fairer figure. Neither is a
model population: held-out real outputs are the real test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from extraction_cases_blind import FAMILIES_BLIND  # noqa: E402

from extraction_cases import CASES, FAMILIES  # noqa: E402

MODES = ("strict", "lenient")


def _score(read: list[str | None], cases: list[tuple]) -> dict[str, float | int]:
    """Agreement, false answers and misses of ``read`` against the cases' labels."""
    n = len(cases)
    agree = sum(r == c[2] for r, c in zip(read, cases, strict=True))
    false = sum(r is not None and r != c[2] for r, c in zip(read, cases, strict=True))
    missed = sum(r is None and c[2] is not None for r, c in zip(read, cases, strict=True))
    return {"n": n, "agreement": agree / n, "false_answers": false / n, "missed": missed / n}


def _read_here(cases: list[tuple], mode: str) -> list[str | None]:
    from medistill.answers import extract_answer

    return [extract_answer(t, o, mode=mode).letter for t, o, _ in cases]


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from medistill.answers import extract_answer
cases = json.load(open(sys.argv[2]))
print(json.dumps({m: [extract_answer(t, o, mode=m).letter for t, o, _ in cases]
                  for m in ("strict", "lenient")}))
"""


def _read_at(rev: str, cases: list[tuple]) -> dict[str, list[str | None]]:
    """The letters the extractor of git revision ``rev`` reads (a child process on a
    checkout of ``src/`` at that revision)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        data = Path(tmp) / "cases.json"
        data.write_text(json.dumps([[t, o, e] for t, o, e in cases]))
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(tmp) / "src"), str(data)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-rev", help="also read the cases with this revision's extractor")
    args = ap.parse_args()
    blind = [c for cases in FAMILIES_BLIND.values() for c in cases]
    cases = [c for c in CASES if c[0]] + blind
    groups = {
        "all (tuned)": [c for c in CASES if c[0]],
        **FAMILIES,
        "all (blind)": blind,
        **{f"blind: {k}": v for k, v in FAMILIES_BLIND.items()},
    }
    runs = {"this tree": {m: _read_here(cases, m) for m in MODES}}
    if args.base_rev:
        runs[args.base_rev] = _read_at(args.base_rev, cases)
    index = {id(c): i for i, c in enumerate(cases)}
    print("| extractor | mode | set | n | agreement | false answers | missed |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, reads in runs.items():
        for mode in MODES:
            for group, members in groups.items():
                read = [reads[mode][index[id(c)]] for c in members]
                s = _score(read, members)
                print(
                    f"| {name} | {mode} | {group} | {s['n']} | {s['agreement']:.1%} | "
                    f"{s['false_answers']:.1%} | {s['missed']:.1%} |"
                )


if __name__ == "__main__":
    main()
