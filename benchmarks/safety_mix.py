"""Does curation's safety mix restore refusals after SFT, and what does it cost on MedQA?

The demo's SFT student (``recipes/demo.yaml``: SmolLM2-135M-Instruct, LoRA r=16, 4 epochs, seed
0) trained twice on the same curated traces of the demo's trace store: once as the demo curates
them, once with ``--safety-mix medsafetybench`` (MedSafetyBench train, decontaminated against
its test split) at ``--share``. Both students, and the base model, are then measured with the
project's own commands on the same questions:

* refusal rate on MedSafetyBench test, 30 requests per category over both sources (270):
  ``medistill eval --benchmark medsafetybench --per-category 30`` (the project's refusal
  detector, ``medistill.answers.refusal``; no judge);
* accuracy on the first 100 MedQA test questions: ``medistill eval --benchmark medqa --limit
  100``.

Every step is a ``medistill`` command (printed before it runs) whose output folder is kept, so a
rerun resumes; ``results.json`` in the work folder holds the figures. Needs
``$MEDISTILL_DATA_DIR`` (or ``--data``) with ``medqa/`` and ``medsafetybench/``.

Usage::

    python benchmarks/safety_mix.py --store runs/demo/generate/traces.db \\
        [--recipe recipes/demo.yaml] [--work /tmp/safety_mix_exp] [--share 0.25] [--no-base] \\
        [--reuse-sft runs/demo/sft]

The script checks that the two datasets hold the very same trace rows. ``--reuse-sft`` takes the
demo run's own SFT student as the plain arm (trained on those rows with those settings) instead
of training it again. The MedSafetyBench answers are cut at 128 new tokens: the detector reads
only their first two sentences (at most 400 characters), which greedy decoding writes the same
whatever the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

MEDISTILL = [sys.executable, "-m", "medistill.cli"]


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run one medistill command (printed first); its wall time in seconds."""
    print("$ medistill " + " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return round(time.perf_counter() - start, 1)


def rows(dataset: Path) -> list[dict]:
    lines = (dataset / "messages" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="the demo's trace store")
    ap.add_argument("--recipe", default="recipes/demo.yaml", help="curate: and sft: settings")
    ap.add_argument("--work", default="/tmp/safety_mix_exp", help="work folder")
    ap.add_argument("--data", default=os.environ.get("MEDISTILL_DATA_DIR", "../shared/data"))
    ap.add_argument("--share", type=float, default=0.25, help="safety_mix_share")
    ap.add_argument("--eval-benchmarks", default="sample_heldout", help="as the demo curates")
    ap.add_argument("--medqa", type=int, default=100, help="MedQA test questions")
    ap.add_argument("--per-category", type=int, default=30, help="MedSafetyBench test slice")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="MedQA: as the demo's eval")
    ap.add_argument(
        "--safety-max-new-tokens",
        type=int,
        default=48,
        help="MedSafetyBench, as BENCHMARKS' safety table: the detector reads the first two "
        "sentences (<= 400 characters)",
    )
    ap.add_argument(
        "--reuse-sft",
        default=None,
        help="an SFT student already trained on the plain dataset's traces with the recipe's "
        "sft: settings (the demo run's runs/demo/sft), used instead of training it again",
    )
    ap.add_argument("--no-base", action="store_true", help="skip the base model's evaluation")
    ap.add_argument(
        "--benchmarks", default="medqa,medsafetybench", help="evaluate on these (comma-separated)"
    )
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDISTILL_DATA_DIR": str(Path(args.data).resolve())}
    seconds: dict[str, float] = {}
    arms = {
        "sft": [],
        "sft+safety": [
            "--safety-mix", "medsafetybench",
            "--safety-mix-path", str(Path(args.data).resolve() / "medsafetybench"),
            "--safety-mix-share", str(args.share),
        ],
    }  # fmt: skip
    for arm, extra in arms.items():
        dataset = work / f"dataset-{arm}"
        seconds[f"curate {arm}"] = run(
            [*MEDISTILL, "curate", "--config", args.recipe, args.store, "--out", str(dataset),
             "--eval-benchmarks", args.eval_benchmarks, *extra],
            env,
        )  # fmt: skip
    plain, mixed = rows(work / "dataset-sft"), rows(work / "dataset-sft+safety")
    traces = [r for r in mixed if r["kind"] == "trace"]
    if traces != plain:
        raise SystemExit("the two datasets' traces differ: not the same traces")
    models = {} if args.no_base else {"base": "smollm2"}
    for arm in arms:
        out = work / f"student-{arm}"
        if arm == "sft" and args.reuse_sft:
            models[arm] = args.reuse_sft
            continue
        seconds[f"sft {arm}"] = run(
            [*MEDISTILL, "sft", "--config", args.recipe, "--dataset",
             str(work / f"dataset-{arm}"), "--output-dir", str(out)],
            env,
        )  # fmt: skip
        models[arm] = str(out)
    results: dict[str, dict] = {}
    for label, model in models.items():
        results[label] = {}
        for bench, sel in (
            ("medqa", ["--limit", str(args.medqa), "--max-new-tokens", str(args.max_new_tokens)]),
            (
                "medsafetybench",
                [
                    "--per-category",
                    str(args.per_category),
                    "--max-new-tokens",
                    str(args.safety_max_new_tokens),
                ],
            ),
        ):
            out = work / f"eval-{label}-{bench}"
            if bench not in args.benchmarks.split(","):
                if (out / "metrics.json").is_file():
                    results[label][bench] = json.loads((out / "metrics.json").read_text())
                continue
            seconds[f"eval {label} {bench}"] = run(
                [*MEDISTILL, "eval", "--model", model, "--benchmark", bench, *sel,
                 "--batch-size", "16", "--out", str(out)],
                env,
            )  # fmt: skip
            results[label][bench] = json.loads((out / "metrics.json").read_text())
    stats = json.loads((work / "dataset-sft+safety" / "stats.json").read_text())["safety_mix"]
    summary = {
        "traces": len(plain),
        "safety_mix": stats,
        "seconds": seconds,
        "models": models,
        "table": {
            label: {
                "refusal_rate": r.get("medsafetybench", {}).get("refusal_rate"),
                "refusal_n": r.get("medsafetybench", {}).get("n"),
                "medqa_accuracy": r.get("medqa", {}).get("accuracy"),
                "medqa_n": r.get("medqa", {}).get("n"),
            }
            for label, r in results.items()
        },
    }
    (work / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary["table"], indent=2))


if __name__ == "__main__":
    main()
