"""Curation at scale: decontamination speed and recall (legacy and retrieval rules side by side),
planted-contamination recall / false positives, and peak memory curating a million traces.

    python benchmarks/curate_scale.py decontam --n 200000
    python benchmarks/curate_scale.py planted
    python benchmarks/curate_scale.py memory --traces 1000000

``decontam``: synthetic training questions (with planted copies of benchmark questions) against
every benchmark question in ../shared (MedQA, MedMCQA, PubMedQA, MMLU-medical), by the legacy
rule (13-gram coverage + MinHash near duplicates) and the retrieval rule (13-gram coverage +
TF-IDF candidates + answer agreement) on the same input in the same run: time, planted copies
removed, synthetic questions flagged, and the share of the hand-written calibration set
(tests/data/decontam_calibration) each rule flags.

``memory``: writes a synthetic trace store, then curates it in a child process and reports
the child's peak RSS (``ru_maxrss``), so generating the input does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic data generators live with the tests

from medistill.curate.decontam import BenchmarkIndex, load_eval_questions  # noqa: E402
from medistill.data import load_benchmark  # noqa: E402

from paraphrase import (  # noqa: E402
    paraphrase_question,
    synthetic_questions,
    verbatim_copy,
    write_synthetic_store,
)
from shared_data import SHARED  # noqa: E402

ALL = ["medqa", "medmcqa", "pubmedqa", "mmlu_medical"]


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _calibration(index: BenchmarkIndex, medqa_ids: list[str]) -> dict[str, str]:
    """Share of the hand-written calibration set flagged, by kind (tests/data)."""
    rows = [
        json.loads(line)
        for path in sorted((ROOT / "tests/data/decontam_calibration").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    found = index.check_many([(r["question"], r["options"], r["answer"]) for r in rows])
    out = {}
    for kind in ("light", "heavy", "hard_negative"):
        mine = [(r, m) for r, m in zip(rows, found, strict=True) if r["kind"] == kind]
        hit = sum(m is not None for _, m in mine)
        right = sum(m is not None and m.benchmark_id == medqa_ids[r["index"]] for r, m in mine)
        out[kind] = f"{hit}/{len(mine)} flagged, {right} to the right item"
    return out


def decontam(args: argparse.Namespace) -> None:
    """Both rules on the same input: synthetic questions plus planted copies, all benchmarks."""
    os.environ.setdefault("MEDISTILL_DATA_DIR", str(SHARED))
    bench = load_eval_questions(ALL)
    medqa_ids = [q.id for q in bench if q.source == "medqa"]
    rng = random.Random(args.seed)
    picked = rng.sample(bench, args.planted)
    planted = [verbatim_copy(q, rng, id=f"v{i}") for i, q in enumerate(picked[::2])]
    planted += [paraphrase_question(q, rng, id=f"p{i}") for i, q in enumerate(picked[1::2])]
    train = list(synthetic_questions(args.n - len(planted), seed=args.seed)) + planted
    rng.shuffle(train)
    is_planted = [bool(q.meta.get("planted_from")) for q in train]
    result: dict = {"machine": _machine(), "train_questions": len(train),
                    "planted_copies": len(planted)}  # fmt: skip
    for method in ("legacy", "retrieval"):
        t0 = time.perf_counter()
        index = BenchmarkIndex(bench, method=method)
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        matches = []
        for i in range(0, len(train), 2000):
            chunk = train[i : i + 2000]
            matches += index.check_many([(q.question, q.options, q.gold) for q in chunk])
        t_check = time.perf_counter() - t0
        result[method] = {
            "index_s": round(t_index, 2),
            "check_s": round(t_check, 1),
            "total_s": round(t_index + t_check, 1),
            "questions_per_s": round(len(train) / (t_index + t_check)),
            "planted_removed": sum(
                m is not None for m, p in zip(matches, is_planted, strict=True) if p
            ),
            "synthetic_flagged": sum(
                m is not None for m, p in zip(matches, is_planted, strict=True) if not p
            ),
            "hand_written_set": _calibration(index, medqa_ids),
        }
    print(json.dumps(result, indent=2))


def planted(args: argparse.Namespace) -> None:
    medqa = load_benchmark("medqa", SHARED / "medqa/US_4options_test.jsonl").questions
    train = load_benchmark("medmcqa", SHARED / "medmcqa/dev.jsonl").questions[:2000]
    rows = []
    for seed in range(args.seeds):
        rng = random.Random(seed)
        picked = rng.sample(medqa, 200)
        verb = [verbatim_copy(q, rng) for q in picked]
        para = [paraphrase_question(q, rng) for q in picked]
        index = BenchmarkIndex(medqa)

        def hits(qs, index=index):
            return index.check_many([(q.question, q.options, q.gold) for q in qs])

        mv, mp, mt = hits(verb), hits(para), hits(train)
        right = sum(
            m is not None and m.benchmark_id == q.meta["planted_from"]
            for q, m in zip(para, mp, strict=True)
        )
        rows.append(
            {
                "seed": seed,
                "verbatim_removed": sum(m is not None for m in mv),
                "paraphrase_removed": sum(m is not None for m in mp),
                "paraphrase_right_id": right,
                "by_ngram": sum(m is not None and m.method == "ngram" for m in mp),
                "false_positives": sum(m is not None for m in mt),
            }
        )
    print(json.dumps(rows, indent=2))


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        store = Path(tmp) / "traces.db"
        t0 = time.perf_counter()
        n = write_synthetic_store(store, args.traces, samples_per_question=4, seed=args.seed)
        t_write = time.perf_counter() - t0
        code = (
            "import json, resource, sys, time\n"
            "from medistill.curate import CurateConfig, run_curate\n"
            "t = time.perf_counter()\n"
            f"s = run_curate(CurateConfig(store={str(store)!r}, out={str(Path(tmp) / 'out')!r},"
            f" eval_benchmarks={ALL!r}, workers={args.workers}), show_progress=False)\n"
            "print(json.dumps({'s': time.perf_counter() - t, 'kept': s['kept_traces'],"
            " 'dropped': {k: v for k, v in s['dropped'].items() if v},"
            " 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
            " 'worker_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
        )
        env = {**os.environ, "MEDISTILL_DATA_DIR": str(SHARED)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    "machine": _machine(),
                    "traces": n,
                    "store_mb": round(store.stat().st_size / 2**20),
                    "write_store_s": round(t_write),
                    "curate_s": round(res["s"]),
                    "traces_per_s": round(n / res["s"]),
                    "peak_rss_mb": round(res["rss_mb"]),
                    "largest_worker_rss_mb": round(res["worker_rss_mb"]),
                    "kept": res["kept"],
                    "dropped": res["dropped"],
                    "parent_rss_mb": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    ),
                },
                indent=2,
            )
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decontam")
    d.add_argument("--n", type=int, default=200_000)
    d.add_argument("--planted", type=int, default=2000, help="benchmark copies mixed in")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=decontam)
    pl = sub.add_parser("planted")
    pl.add_argument("--seeds", type=int, default=3)
    pl.set_defaults(fn=planted)
    m = sub.add_parser("memory")
    m.add_argument("--traces", type=int, default=1_000_000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tmp", default=None, help="folder for the temporary store")
    m.add_argument("--workers", type=int, default=0, help="verification processes (0: auto)")
    m.set_defaults(fn=memory)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
