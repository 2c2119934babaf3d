"""Where the benchmark scripts find the real data: ``../shared/data`` beside the repository, or
``$MEDISTILL_SHARED_DATA``; and the questions the speed benchmarks run on."""

from __future__ import annotations

import os
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
