"""Where the benchmark scripts find the real data: ``../shared/data`` beside the repository, or
``$MEDISTILL_SHARED_DATA``; and the questions the speed benchmarks run on."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

SHARED = Path(
    os.environ.get("MEDISTILL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
MEDQA_TEST = SHARED / "medqa" / "US_4options_test.jsonl"


def medqa_or_sample() -> tuple[str, str, str | None]:
    """``(description, benchmark, path)``: the MedQA test file when the shared data has it,
    otherwise the embedded sample (a smoke test, said so in the printed table)."""
    if MEDQA_TEST.exists():
        return "MedQA test", "medqa", str(MEDQA_TEST)
    return "embedded sample", "sample", None


def run_medistill(args: list[str]) -> None:
    """Run one ``medistill`` command of this venv, printed first so a table can be reproduced."""
    print("$ medistill " + shlex.join(args), flush=True)
    subprocess.run([str(Path(sys.executable).with_name("medistill")), *args], check=True)


def medqa_eval(
    model: str,
    out: Path,
    *,
    n: int,
    max_new_tokens: int,
    label: str,
    flags: list[str] | None = None,
) -> None:
    """``medistill eval`` of ``model`` on the first ``n`` MedQA test questions, greedy unless
    ``flags`` say otherwise, batch 20: the one evaluation every benchmark table here uses."""
    run_medistill(
        ["eval", "--model", model, "--benchmark", "medqa", "--path", str(MEDQA_TEST),
         "--limit", str(n), "--max-new-tokens", str(max_new_tokens), "--batch-size", "20",
         "--out", str(out), "--label", label, *(flags or [])]
    )  # fmt: skip
