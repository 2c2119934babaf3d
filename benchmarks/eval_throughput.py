"""Eval throughput: batched generation vs batch size 1 on the same questions, same run.

    python benchmarks/eval_throughput.py --n 32 --batch-sizes 8,16,32 --max-new-tokens 128

Prints a Markdown table for BENCHMARKS.md: answers/s and output tokens/s per setting, and
the batched/baseline ratio. Greedy decoding, so the two settings should mostly agree on the
answers; the agreement is printed too (padding can change float rounding).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time

from medistill.answers import extract_answer
from medistill.backends import SamplingParams
from medistill.backends.hf import TransformersBackend
from medistill.data import load_benchmark
from medistill.prompts import get_template

from shared_data import medqa_or_sample


def _questions(n: int):
    where, benchmark, path = medqa_or_sample()
    return where, load_benchmark(benchmark, path, limit=n).questions


def _run(backend: TransformersBackend, msgs, bs: int, params: SamplingParams):
    backend.batch_size = bs
    t0 = time.perf_counter()
    gens = []
    for i in range(0, len(msgs), bs):
        gens.extend(backend.generate(msgs[i : i + bs], params))
    return time.perf_counter() - t0, gens


def main() -> None:
    """Measure and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-sizes", default="8,16,32", help="comma-separated, vs batch 1")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    source, qs = _questions(args.n)
    tpl = get_template("cot")
    msgs = [tpl.messages(q) for q in qs]
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    backend = TransformersBackend(args.model, batch_size=sizes[0])
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    backend.generate(msgs[:2], SamplingParams(max_new_tokens=4))  # warm-up
    results = {}
    for bs in [1, *sizes]:
        wall, gens = _run(backend, msgs, bs, params)
        toks = sum(g.output_tokens or 0 for g in gens)
        letters = [extract_answer(g.text, q.options).letter for g, q in zip(gens, qs, strict=True)]
        results[bs] = (wall, toks, letters)
    base_wall, _, base_letters = results[1]
    print(
        f"model={args.model} questions={len(qs)} ({source}) max_new_tokens="
        f"{args.max_new_tokens} greedy, {os.cpu_count()} CPU threads, {platform.machine()}"
    )
    print("| setting | wall s | answers/s | output tokens/s | ratio vs batch 1 | same answers |")
    print("|---|--:|--:|--:|--:|--:|")
    for bs, (w, t, letters) in sorted(results.items()):
        same = sum(a == b for a, b in zip(base_letters, letters, strict=True)) / len(qs)
        print(
            f"| batch size {bs} | {w:.1f} | {len(qs) / w:.3f} | {t / w:.1f} | "
            f"{base_wall / w:.2f}x | {same:.0%} |"
        )


if __name__ == "__main__":
    main()
