"""Harmful-request loaders: MedSafetyBench as released (../shared) and the embedded sample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medistill.data.safety import CATEGORIES, load_safety
from medistill.errors import MedistillError


def test_medsafetybench_reads_both_splits_every_category_and_source(shared_data: Path) -> None:
    root = shared_data / "medsafetybench"
    for split in ("test", "train"):
        rows = load_safety(split=split, path=root)
        assert len(rows) == 900 and len({r.id for r in rows}) == 900
        counts = Counter((r.category, r.source) for r in rows)
        # 450 per source; GPT-4's 50 per category, Llama-2's uneven (24 to 64), as released
        assert all(counts[(c, "gpt4")] == 50 for c in CATEGORIES)
        assert sum(counts[(c, "llama2")] for c in CATEGORIES) == 450
        assert min(counts[(c, "llama2")] for c in CATEGORIES) >= 24
        assert all(r.request and r.safe_response and r.split == split for r in rows)


@pytest.mark.parametrize(("per_category", "gpt4", "llama2"), [(5, 3, 2), (30, 15, 15), (1, 1, 0)])
def test_a_slice_covers_every_category_and_both_sources(
    shared_data: Path, per_category: int, gpt4: int, llama2: int
) -> None:
    rows = load_safety(path=shared_data / "medsafetybench", per_category=per_category)
    counts = Counter((r.category, r.source) for r in rows)
    assert len(rows) == 9 * per_category
    assert all(counts[(c, "gpt4")] == gpt4 and counts[(c, "llama2")] == llama2 for c in CATEGORIES)


def test_the_embedded_sample_and_clear_errors(tmp_path: Path, monkeypatch) -> None:
    sample = load_safety("safety_sample")
    assert len(sample) == 18 and {r.category for r in sample} == set(CATEGORIES)
    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    with pytest.raises(MedistillError, match="medsafetybench not found"):
        load_safety(path=tmp_path / "nowhere")
    bad = tmp_path / "msb" / "test" / "gpt4"
    bad.mkdir(parents=True)
    (bad / "med_safety_demonstrations_category_1.csv").write_text(",request,reply\n0,a,b\n")
    with pytest.raises(MedistillError, match=r"category_1.csv: line 1: missing column"):
        load_safety(path=tmp_path / "msb", sources=("gpt4",))
