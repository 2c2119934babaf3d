"""Safe both ways? Base, plain SFT and safety-mixed SFT students on harmful and benign requests.

The demo's SFT student (``recipes/demo.yaml``: SmolLM2-135M-Instruct, LoRA r=16, 4 epochs, seed
0) trained twice on the same curated traces of one trace store: once plain (no safety mix),
once with curation's safety mix: refusals of harmful requests (``--mix``: the embedded
``safety_train_sample`` or MedSafetyBench train, at ``--share`` = safety rows / (traces +
safety rows)) and benign contrast demonstrations (the teacher's helpful answers to
``benign_clinical``'s train requests, stored by ``medistill generate --contrast
benign_clinical``, at ``--contrast-share`` = contrast rows / all rows). Those two students and
the base model are then measured with the project's own commands on the same requests:

* MedSafetyBench test, 30 requests per category over both sources (270): refusal rate of
  harmful requests (higher is safer);
* XSTest, all 450 prompts: over-refusal of its 250 safe prompts and refusal of its 200 unsafe
  contrast prompts, reported apart;
* ``benign_clinical`` test, all 99 requests: over-refusal of sensitive but legitimate clinical
  requests (lower is better);
* the first 100 MedQA test questions: accuracy and no-answer rate (what the mix costs).

Open requests are answered with at most 48 new tokens (``--safety-max-new-tokens``): the
refusal detector (``medistill.answers.refusal``; no judge) reads the first two sentences, at
most 400 characters. Every figure has its 95% Wilson interval; "safe both ways" is the
harmonic mean of the refusal rate of harmful requests and the answer rate of benign ones
(``medistill.evaluate.safety_metrics.safe_both_ways``), for MedSafetyBench + benign_clinical
and for XSTest's two halves.

Every step is a ``medistill`` command, printed before it runs, whose output folder is kept: a
rerun resumes the evaluations, and a student whose dataset is unchanged is not trained again
(a changed dataset retrains it and re-evaluates it from scratch). ``results.json`` in the work
folder holds the table. If the store holds no contrast answers, ``medistill generate --config
RECIPE --out STORE --contrast benign_clinical`` adds them first (the store's MCQ traces are
found and not asked again when the recipe's generate settings are those the store was made
with). Needs ``$MEDISTILL_DATA_DIR`` (or ``--data``) with ``medqa/``, ``xstest/`` and, for
MedSafetyBench, ``medsafetybench/``.

Usage::

    python benchmarks/safety_mix.py --store runs/demo/generate/traces.db \\
        [--recipe recipes/demo.yaml] [--work /tmp/safety_mix_exp] \\
        [--mix safety_train_sample|medsafetybench] [--share 0.25] [--contrast-share 0.2] \\
        [--arms base,sft,mixed] [--benchmarks medsafetybench,xstest,benign_clinical,medqa] \\
        [--reuse-sft runs/demo/sft]

A quick end-to-end check on a tiny slice (minutes on a CPU)::

    python benchmarks/safety_mix.py --store runs/demo/generate/traces.db --work /tmp/sm_tiny \\
        --per-category 1 --xstest-per-category 1 --benign-per-category 1 --medqa 3 \\
        --sft-args="--max-steps 2"

``--reuse-sft`` takes the demo run's own SFT student as the plain arm, but only if it was
trained on the plain dataset's very rows (the demo now curates with the mix: its
``runs/demo/sft`` is a mixed student; the script checks the rows and refuses otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from medistill.evaluate.metrics import proportion
from medistill.evaluate.safety_metrics import safe_both_ways
from medistill.store import TraceStore

MEDISTILL = [sys.executable, "-m", "medistill.cli"]
ARMS = ("base", "sft", "mixed")
BENCHMARKS = ("medsafetybench", "xstest", "benign_clinical", "medqa")
MIXES = ("safety_train_sample", "medsafetybench")
CONTRAST = "benign_clinical"


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run one medistill command (printed first); its wall time in seconds."""
    print("$ medistill " + " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return round(time.perf_counter() - start, 1)


def rows(dataset: Path) -> list[dict]:
    lines = (dataset / "messages" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True, help="the demo's trace store")
    ap.add_argument("--recipe", default="recipes/demo.yaml", help="generate:, curate:, sft:")
    ap.add_argument("--work", default="/tmp/safety_mix_exp", help="work folder")
    ap.add_argument("--data", default=os.environ.get("MEDISTILL_DATA_DIR", "../shared/data"))
    ap.add_argument("--mix", choices=MIXES, default="safety_train_sample", help="refusals from")
    ap.add_argument("--share", type=float, default=0.25, help="safety_mix_share")
    ap.add_argument(
        "--contrast-share", type=float, default=0.2, help="safety_mix_contrast_share (0: none)"
    )
    ap.add_argument("--arms", default=",".join(ARMS), help=f"of {', '.join(ARMS)}")
    ap.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help="evaluate on these (comma-separated; none: only read); the others' figures are "
        "read from their folders where a previous run left them",
    )
    ap.add_argument("--eval-benchmarks", default="sample_heldout", help="as the demo curates")
    ap.add_argument("--per-category", type=int, default=30, help="MedSafetyBench test slice")
    ap.add_argument("--xstest-per-category", type=int, default=None, help="none: all 450")
    ap.add_argument("--benign-per-category", type=int, default=None, help="none: all 99")
    ap.add_argument("--medqa", type=int, default=100, help="MedQA test questions")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="MedQA: as the demo's eval")
    ap.add_argument(
        "--safety-max-new-tokens",
        type=int,
        default=48,
        help="open requests: the detector reads the first two sentences (<= 400 characters)",
    )
    ap.add_argument("--batch-size", type=int, default=16, help="eval batch size")
    ap.add_argument("--sft-args", default="", help="extra `medistill sft` options, quoted")
    ap.add_argument(
        "--reuse-sft",
        default=None,
        help="an SFT student trained on the plain dataset's rows with the recipe's sft: "
        "settings, used as the plain arm instead of training it again",
    )
    args = ap.parse_args()
    args.arms = [a for a in args.arms.split(",") if a]
    args.benchmarks = [b for b in args.benchmarks.split(",") if b not in ("", "none")]
    for given, valid, what in ((args.arms, ARMS, "arm"), (args.benchmarks, BENCHMARKS, "bench")):
        bad = [x for x in given if x not in valid]
        if bad:
            ap.error(f"unknown {what} {bad}; choose from {', '.join(valid)}")
    return args


def ensure_contrast(args: argparse.Namespace, env: dict[str, str], seconds: dict) -> int:
    """The store's contrast answers: generated first (the command printed) when it has none."""
    with TraceStore(args.store) as store:
        n = store.count(contrast=True)
    if n == 0:
        seconds["generate contrast"] = run(
            [*MEDISTILL, "generate", "--config", args.recipe, "--out", args.store,
             "--contrast", CONTRAST],
            env,
        )  # fmt: skip
        with TraceStore(args.store) as store:
            n = store.count(contrast=True)
    return n


def curate(args: argparse.Namespace, env: dict[str, str], seconds: dict) -> dict[str, Path]:
    """The plain and the mixed dataset, from the same store and curation settings."""
    data = Path(args.data).resolve()
    mix = ["--safety-mix", args.mix, "--safety-mix-share", str(args.share),
           "--safety-mix-contrast-share", str(args.contrast_share)]  # fmt: skip
    if args.mix == "medsafetybench":
        mix += ["--safety-mix-path", str(data / "medsafetybench")]
    extras = {"sft": ["--safety-mix", "none", "--safety-mix-contrast-share", "0"], "mixed": mix}
    out = {}
    for arm, extra in extras.items():
        out[arm] = dataset = Path(args.work) / f"dataset-{arm}"
        seconds[f"curate {arm}"] = run(
            [*MEDISTILL, "curate", "--config", args.recipe, args.store, "--out", str(dataset),
             "--eval-benchmarks", args.eval_benchmarks, *extra],
            env,
        )  # fmt: skip
    plain, mixed = rows(out["sft"]), rows(out["mixed"])
    if [r for r in mixed if r["kind"] == "trace"] != plain:
        raise SystemExit("the two datasets' traces differ: not the same traces")
    return out


def train(
    arm: str, dataset: Path, args: argparse.Namespace, env: dict[str, str], seconds: dict
) -> tuple[str, bool]:
    """The arm's student (trained unless its dataset is unchanged); whether it is new."""
    out = Path(args.work) / f"student-{arm}"
    stamp = Path(args.work) / f"student-{arm}.dataset-sha256"
    data_hash = digest(dataset / "messages" / "train.jsonl")
    manifest = out / "medistill_train.json"
    finished = manifest.is_file() and json.loads(manifest.read_text()).get("status") == "finished"
    if finished and stamp.is_file() and stamp.read_text().strip() == data_hash:
        print(f"# {arm}: {out} was trained on this dataset; kept", flush=True)
        return str(out), False
    seconds[f"sft {arm}"] = run(
        [*MEDISTILL, "sft", "--config", args.recipe, "--dataset", str(dataset),
         "--output-dir", str(out), "--overwrite", *shlex.split(args.sft_args)],
        env,
    )  # fmt: skip
    stamp.write_text(data_hash)
    return str(out), True


def reused(student: str, plain: Path) -> str:
    """``--reuse-sft``: a finished student whose training rows are the plain dataset's."""
    manifest = Path(student) / "medistill_train.json"
    if not manifest.is_file():
        raise SystemExit(f"--reuse-sft {student}: no training run there")
    m = json.loads(manifest.read_text())
    dataset = Path((m.get("identity") or {}).get("dataset") or "")
    if m.get("status") != "finished" or not (dataset / "messages" / "train.jsonl").is_file():
        raise SystemExit(f"--reuse-sft {student}: unfinished, or its dataset {dataset} is gone")
    if rows(dataset) != rows(plain):
        raise SystemExit(
            f"--reuse-sft {student}: trained on {dataset}, whose rows are not the plain "
            "dataset's (a run that curated with a safety mix?); leave --reuse-sft out"
        )
    return student


def selections(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each benchmark's ``medistill eval`` options (slice and token budget)."""
    safety = ["--max-new-tokens", str(args.safety_max_new_tokens)]

    def per(n: int | None) -> list[str]:
        return [] if n is None else ["--per-category", str(n)]

    return {
        "medsafetybench": [*per(args.per_category), *safety],
        "xstest": [*per(args.xstest_per_category), *safety],
        "benign_clinical": [*per(args.benign_per_category), *safety],
        "medqa": ["--limit", str(args.medqa), "--max-new-tokens", str(args.max_new_tokens)],
    }


def side(metrics: dict | None, name: str, rate: str) -> dict | None:
    """``{n, value, ci_low, ci_high}`` of one side (``harmful`` / ``benign``) of a run."""
    block = (metrics or {}).get(name)
    if not block:
        return None
    p = block[rate]
    return {"n": block["n"], **{k: p[k] for k in ("value", "ci_low", "ci_high")}}


def row(r: dict[str, dict]) -> dict:
    """One model's figures, every rate with its 95% interval."""
    msb = side(r.get("medsafetybench"), "harmful", "refusal_rate")
    benign = side(r.get("benign_clinical"), "benign", "over_refusal_rate")
    xs_safe = side(r.get("xstest"), "benign", "over_refusal_rate")
    xs_unsafe = side(r.get("xstest"), "harmful", "refusal_rate")
    medqa = r.get("medqa") or {}
    acc = (medqa.get("accuracy") or {}).get("lenient")
    rate = (medqa.get("no_answer_rate") or {}).get("lenient")  # a share: its CI from n
    no_answer = None if rate is None or not acc else proportion(round(rate * acc["n"]), acc["n"])

    def figure(p: dict | None) -> dict | None:
        return None if p is None else {k: p[k] for k in ("n", "value", "ci_low", "ci_high")}

    return {
        "medsafetybench_refusal": msb,
        "benign_clinical_over_refusal": benign,
        "xstest_safe_over_refusal": xs_safe,
        "xstest_unsafe_refusal": xs_unsafe,
        "safe_both_ways_medical": safe_both_ways(msb and msb["value"], benign and benign["value"]),
        "safe_both_ways_xstest": safe_both_ways(
            xs_unsafe and xs_unsafe["value"], xs_safe and xs_safe["value"]
        ),
        "medqa_accuracy": figure(acc),
        "medqa_no_answer": figure(no_answer),
    }


def pct(p: dict | float | None) -> str:
    if p is None:
        return "-"
    if isinstance(p, dict):
        return f"{100 * p['value']:.1f} [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]"
    return f"{100 * p:.1f}"


def markdown(table: dict[str, dict]) -> str:
    cols = [
        ("MSB refusal", "medsafetybench_refusal"),
        ("benign over-refusal", "benign_clinical_over_refusal"),
        ("safe both ways (med)", "safe_both_ways_medical"),
        ("XSTest safe over-refusal", "xstest_safe_over_refusal"),
        ("XSTest unsafe refusal", "xstest_unsafe_refusal"),
        ("safe both ways (XSTest)", "safe_both_ways_xstest"),
        ("MedQA accuracy", "medqa_accuracy"),
        ("MedQA no answer", "medqa_no_answer"),
    ]
    lines = ["| model | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, r in table.items():
        lines.append(f"| {label} | " + " | ".join(pct(r[k]) for _, k in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDISTILL_DATA_DIR": str(Path(args.data).resolve())}
    seconds: dict[str, float] = {}
    trained = [a for a in args.arms if a != "base"]
    contrast = None
    if "mixed" in args.arms and args.contrast_share > 0:
        contrast = ensure_contrast(args, env, seconds)
    datasets = curate(args, env, seconds) if trained else {}
    models: dict[str, str] = {}
    fresh: dict[str, bool] = {}
    if "base" in args.arms:
        models["base"], fresh["base"] = "smollm2", False
    for arm in trained:
        if arm == "sft" and args.reuse_sft:
            models[arm], fresh[arm] = reused(args.reuse_sft, datasets["sft"]), False
            continue
        models[arm], fresh[arm] = train(arm, datasets[arm], args, env, seconds)
    sel = selections(args)
    results: dict[str, dict] = {}
    for label, model in models.items():
        results[label] = {}
        for bench in BENCHMARKS:
            out = work / f"eval-{label}-{bench}"
            if bench not in args.benchmarks:
                if (out / "metrics.json").is_file() and not fresh[label]:
                    results[label][bench] = json.loads((out / "metrics.json").read_text())
                continue
            again = ["--overwrite"] if fresh[label] else []
            seconds[f"eval {label} {bench}"] = run(
                [*MEDISTILL, "eval", "--model", model, "--benchmark", bench, *sel[bench],
                 "--batch-size", str(args.batch_size), "--out", str(out), *again],
                env,
            )  # fmt: skip
            results[label][bench] = json.loads((out / "metrics.json").read_text())
    mix_stats = contrast_stats = None
    if "mixed" in datasets:
        stats = json.loads((datasets["mixed"] / "stats.json").read_text())
        mix_stats, contrast_stats = stats.get("safety_mix"), stats.get("contrast_mix")
    table = {label: row(r) for label, r in results.items()}
    summary = {
        "traces": len(rows(datasets["sft"])) if "sft" in datasets else None,
        "mix": {"source": args.mix, "share": args.share, "contrast_share": args.contrast_share},
        "store_contrast_answers": contrast,
        "safety_mix": mix_stats,
        "contrast_mix": contrast_stats,  # the benign contrast rows: read, removed, drawn
        "settings": {
            "medsafetybench_per_category": args.per_category,
            "xstest_per_category": args.xstest_per_category,
            "benign_per_category": args.benign_per_category,
            "medqa": args.medqa,
            "safety_max_new_tokens": args.safety_max_new_tokens,
            "max_new_tokens": args.max_new_tokens,
            "sft_args": args.sft_args,
        },
        "seconds": seconds,
        "models": models,
        "table": table,
    }
    (work / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(markdown(table))


if __name__ == "__main__":
    main()
