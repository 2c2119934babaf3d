"""Letter log-likelihood: questions/s now vs the implementation before the lm-eval preset.

    python benchmarks/loglik_throughput.py --n 200 --baseline-rev 08c84af

The baseline is the code of ``--baseline-rev`` itself (checked out in a temporary git
worktree and imported from there): one sequence per (question, letter), BOS first, full
logits. Today: ``score_choices`` with the ``medistill`` preset (the same prompt, so the same
numbers) and the ``lm-eval`` preset, one forward pass per question reading the last
position only. Each setting runs in its own process on the same first ``--n`` MedQA test
questions (SmolLM2, float32, CPU); model loading is not timed. Printed: a Markdown table for
BENCHMARKS.md and the largest difference between the baseline's and today's values for the
same prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _questions(n: int):
    from medistill.data import load_benchmark

    from shared_data import MEDQA_TEST

    return load_benchmark("medqa", MEDQA_TEST, limit=n).questions


def _worker(kind: str, model: str, n: int, batch_size: int) -> None:
    """Time one setting in this process and print ``{"seconds", "scores"}`` as JSON."""
    from medistill.backends.hf import TransformersBackend
    from medistill.prompts import get_template

    questions = _questions(n)
    backend = TransformersBackend(model, batch_size=batch_size)
    if kind == "baseline":
        tpl = get_template("cot")
        contexts = [tpl.loglik_context(q) for q in questions]
        letters = [q.letters for q in questions]
        backend.letter_logprobs(contexts[:2], letters[:2])  # warm-up
        t0 = time.perf_counter()
        scores = []
        for i in range(0, n, batch_size):  # the eval loop's chunks of that version
            scores += backend.letter_logprobs(
                contexts[i : i + batch_size], letters[i : i + batch_size]
            )
        seconds = time.perf_counter() - t0
    else:
        from medistill.prompts import loglik_requests

        requests = loglik_requests(questions, kind, benchmark="medqa")
        backend.score_choices(requests[:2])  # warm-up
        t0 = time.perf_counter()
        scores = []
        for i in range(0, n, 4 * batch_size):  # today's eval loop chunks
            scores += backend.score_choices(requests[i : i + 4 * batch_size])
        seconds = time.perf_counter() - t0
    import medistill

    print(json.dumps({"seconds": seconds, "scores": scores, "module": medistill.__file__}))


def _run(kind: str, args, src: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", kind, "--model", args.model, "--n", str(args.n)]
    cmd += ["--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if not Path(res["module"]).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"{kind}: imported {res['module']}, not the code under {src}")
    return res


def main() -> None:
    """Run every setting and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--baseline-rev", default="08c84af")
    ap.add_argument("--worker", choices=["baseline", "medistill", "lm-eval"])
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.model, args.n, args.batch_size)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline_rev],
            check=True,
            capture_output=True,
        )
        try:
            results = {"baseline": _run("baseline", args, tree / "src")}
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True
            )
    for kind in ("medistill", "lm-eval"):
        results[kind] = _run(kind, args, ROOT / "src")
    base = results["baseline"]["seconds"]
    print(
        f"\n{args.n} MedQA test questions, {args.model}, float32, "
        f"{platform.processor() or platform.machine()} x{os.cpu_count()}\n"
    )
    print("| implementation | seconds | questions/s | vs baseline |")
    print("|:--|--:|--:|--:|")
    names = {
        "baseline": f"{args.baseline_rev}: one sequence per letter, BOS first",
        "medistill": "today, `medistill` preset (same prompt): one pass per question",
        "lm-eval": "today, `lm-eval` preset: one pass per question",
    }
    for kind, res in results.items():
        secs = res["seconds"]
        print(f"| {names[kind]} | {secs:.1f} | {args.n / secs:.2f} | {base / secs:.2f}x |")
    diff = max(
        abs(a[k] - b[k])
        for a, b in zip(results["baseline"]["scores"], results["medistill"]["scores"], strict=True)
        for k in a
    )
    print(f"\nLargest |baseline - today| on the same prompt: {diff:.2e} nats.")


if __name__ == "__main__":
    main()
