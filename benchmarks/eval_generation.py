"""`medistill eval` (transformers, CPU) vs plain batched `model.generate`, same questions.

    python benchmarks/eval_generation.py --n 32 --max-new-tokens 1024 --batch-size 8

Both sides run greedy on the same MedQA test questions (the first ``--n``; the embedded
sample without ../shared), with the same chat prompt, batch size, budget and length-sorted
order. The baseline is what a script would do: ``model.generate`` per batch of
``--batch-size``, so a batch runs until its longest member stops. medistill is the whole
``run_eval`` call (model load, extraction and durable writes included), with continuous
batching and the repetition-loop stop. Printed: a Markdown table for BENCHMARKS.md with
answers/s, the ratio, and the agreement of extracted answers on the questions that ended on
their own in both runs (finish reason ``stop``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

from medistill.answers import extract_answer
from medistill.backends import SamplingParams
from medistill.backends.hf import TransformersBackend
from medistill.data import load_benchmark
from medistill.evaluate import EvalConfig, run_eval
from medistill.prompts import get_template

from shared_data import medqa_or_sample


def _plain(model: str, questions, batch_size: int, budget: int) -> tuple[float, dict]:
    """The baseline: ``model.generate`` per batch, then the same extraction."""
    backend = TransformersBackend(model, batch_size=batch_size)
    tpl = get_template("cot")
    questions = sorted(questions, key=lambda q: len(tpl.user_message(q)))
    params = SamplingParams(max_new_tokens=budget)
    backend.generate_plain([tpl.messages(questions[0])], SamplingParams(max_new_tokens=2))
    t0 = time.perf_counter()
    out = {}
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        gens = backend.generate_plain([tpl.messages(q) for q in chunk], params)
        for q, g in zip(chunk, gens, strict=True):
            got = extract_answer(g.text, q.options, truncated=g.finish_reason != "stop")
            out[q.id] = {"finish": g.finish_reason, "letter": got.letter, "text": g.text}
    return time.perf_counter() - t0, out


def _medistill(model, bench, path, n, batch_size, budget, stop_loops) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvalConfig(
            model=model,
            benchmark=bench,
            path=path,
            limit=n,
            batch_size=batch_size,
            max_new_tokens=budget,
            stop_loops=stop_loops,
            out=tmp,
        )
        t0 = time.perf_counter()
        run_eval(cfg, show_progress=False)
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in Path(tmp, "predictions.jsonl").read_text().splitlines()]
    return wall, {
        r["id"]: {"finish": r["finish_reason"], "letter": r["extracted"], "text": r["response"]}
        for r in rows
    }


def main() -> None:
    """Measure both sides and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=1024)
    ap.add_argument("--no-stop-loops", action="store_true", help="medistill without loop stop")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    source, bench, path = medqa_or_sample()
    questions = load_benchmark(bench, path, limit=args.n).questions
    mine_s, mine = _medistill(
        args.model,
        bench,
        path,
        args.n,
        args.batch_size,
        args.max_new_tokens,
        not args.no_stop_loops,
    )
    plain_s, plain = _plain(args.model, questions, args.batch_size, args.max_new_tokens)
    both_ended = [i for i in plain if plain[i]["finish"] == "stop" and mine[i]["finish"] == "stop"]
    same_letter = sum(plain[i]["letter"] == mine[i]["letter"] for i in both_ended)
    same_text = sum(plain[i]["text"] == mine[i]["text"] for i in both_ended)
    print(
        f"\n{source}, {len(questions)} questions, model {args.model}, greedy, "
        f"budget {args.max_new_tokens}, batch {args.batch_size}, "
        f"{platform.processor() or platform.machine()} x{os.cpu_count()}\n"
    )
    print("| setting | seconds | answers/s | vs plain | finish reasons |")
    print("|:--|--:|--:|--:|:--|")
    for name, secs, res in (
        ("plain batched `model.generate`", plain_s, plain),
        (
            "`medistill eval` (continuous batching"
            + (")" if args.no_stop_loops else " + loop stop)"),
            mine_s,
            mine,
        ),
    ):
        reasons = Counter(r["finish"] for r in res.values())
        print(
            f"| {name} | {secs:.1f} | {len(res) / secs:.3f} | {plain_s / secs:.2f}x | "
            + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            + " |"
        )
    print(
        f"\nEnded on their own in both runs: {len(both_ended)}; same extracted answer: "
        f"{same_letter}/{len(both_ended)}; same text: {same_text}/{len(both_ended)}."
    )
    for i in plain:
        if plain[i]["finish"] != mine[i]["finish"]:
            print(f"  {i}: plain {plain[i]['finish']} vs medistill {mine[i]['finish']}")


if __name__ == "__main__":
    main()
