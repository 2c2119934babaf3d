"""Answers per second of the GGUF student (q8_0, q4_k_m) on a CPU through llama.cpp, one
stream and several sequences at once, against the HF fp32 model through ``medistill eval``,
same questions, same run; whether the answers are the same; and the file sizes.

    python benchmarks/gguf_throughput.py --n 16 --max-new-tokens 256 --parallel 4,8,16

SmolLM2-135M-Instruct (packaged) is exported with ``medistill export-model`` (llama.cpp's
converter and quantiser) and evaluated in-process with ``medistill eval --backend llamacpp``,
once per ``--n-parallel`` (1: one stream; N: N conversations decoded together on one context,
continuous batching), and, unless ``--no-server``, served with ``medistill serve``'s engine
(llama-cpp-python's OpenAI-compatible server, every core) and evaluated with ``--backend
openai --concurrency 1``. The baseline is the same model folder through ``medistill eval``
with transformers in fp32, once with one stream (``--batch-size 1``) and once batched
(``--batch-size 8``, eval's default). Greedy, the first ``--n`` MedQA test questions (the
embedded sample without ../shared). Answers/s = questions over the generation wall time
(model load excluded; prompt processing included); tokens/s = generated tokens over the same
time. "Same answer" compares the extracted letters question by question. Needs
llama-cpp-python and llama.cpp's converter: ``make install`` (or ``pip install
'medistill[serve]'`` then ``python -m medistill.deploy.gguf fetch``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
from pathlib import Path

from medistill.deploy.export import ExportModelConfig, export_model
from medistill.deploy.serve import ServeConfig, start_engine
from medistill.evaluate import EvalConfig, run_eval
from medistill.models import resolve_model

from shared_data import medqa_or_sample


def _row(label: str, metrics: dict, size: int) -> dict:
    return {
        "label": label,
        "answers_per_s": metrics["throughput"]["answers_per_s"],
        "tokens_per_s": metrics["throughput"]["output_tokens_per_s"],
        "size_mb": size / 1e6,
        "accuracy": metrics["accuracy"]["lenient"]["value"],
        "no_answer": metrics["no_answer_rate"]["lenient"],
        "cut_off": metrics["truncation_rate"],
        "tokens": metrics["output_tokens"]["mean"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument(
        "--parallel", default="4,8,16", help="llama.cpp n_parallel values after 1 (comma list)"
    )
    ap.add_argument("--quants", default="q8_0,q4_k_m", help="GGUF quantisations (comma list)")
    ap.add_argument("--no-server", action="store_true", help="skip the llama.cpp server rows")
    args = ap.parse_args()
    parallel = [int(x) for x in args.parallel.split(",") if x.strip()]
    logging.basicConfig(level=logging.WARNING)
    where, benchmark, path = medqa_or_sample()
    model = resolve_model("smollm2")
    hf_size = sum(f.stat().st_size for f in Path(model).glob("*.safetensors"))
    common = {
        "model": model,
        "benchmark": benchmark,
        "path": path,
        "limit": args.n,
        "max_new_tokens": args.max_new_tokens,
        "audit": False,  # the explanation audit runs after the answers: not timed, not needed
    }
    rows, answers, decode, same_as = [], {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [("HF fp32, transformers, 1 stream", 1), ("HF fp32, transformers, batch 8", 8)]
        for label, batch in runs:
            out = tmp / f"hf-{batch}"
            m = run_eval(
                EvalConfig(**common, batch_size=batch, out=str(out), label=label),
                show_progress=False,
            )
            rows.append(_row(label, m, hf_size))
            answers[label] = _letters(out)
        for quant in args.quants.split(","):
            exported = export_model(
                ExportModelConfig(model=model, quant=quant, out=str(tmp / quant), name="smollm2")
            )
            gguf = tmp / quant / f"smollm2-{quant}.gguf"
            size = exported["files"][gguf.name]
            if not args.no_server:
                engine = start_engine(
                    ServeConfig(model=str(gguf), port=_free_port(), n_threads=args.threads)
                )
                try:
                    label = f"GGUF {quant}, llama.cpp server, 1 stream"
                    out = tmp / quant / "eval"
                    cfg = EvalConfig(
                        **{**common, "model": engine.name},
                        backend="openai",
                        base_url=[engine.base_url],
                        concurrency=1,
                        out=str(out),
                        label=label,
                    )
                    m = run_eval(cfg, show_progress=False)
                finally:
                    engine.stop()
                rows.append(_row(label, m, size))
                answers[label] = _letters(out)
            one = None
            for n_par in [1, *parallel]:
                label = f"GGUF {quant}, llama.cpp in-process, n_parallel {n_par}"
                out = tmp / quant / f"eval-inprocess-{n_par}"
                cfg = EvalConfig(
                    **{**common, "model": str(gguf)},
                    backend="llamacpp",
                    n_parallel=n_par,
                    out=str(out),
                    label=label,
                )
                m = run_eval(cfg, show_progress=False)
                rows.append(_row(label, m, size))
                answers[label] = _letters(out)
                one = one or label
                same_as[label] = one
            decode[quant] = _decode_llama_cpp(gguf, args.threads, args.decode_tokens)
        decode["HF fp32"] = _decode_hf(model, args.decode_tokens)
    hf1, hf8 = rows[0], rows[1]
    ref = answers[hf1["label"]]
    print(f"\n{where}, first {args.n} questions, greedy, budget {args.max_new_tokens} tokens, ")
    print(f"{args.threads} threads, {platform.processor() or platform.machine()}\n")
    print(
        "| model | answers/s | vs HF 1 stream | vs HF batch 8 | tokens/s | file MB | accuracy "
        "| no answer | cut off | tokens/answer | same answer as HF 1 stream "
        "| same answer as llama.cpp 1 stream |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        got = answers[r["label"]]
        same = sum(got.get(k) == v for k, v in ref.items())
        base = same_as.get(r["label"])
        alike = "-"
        if base is not None:
            alike = f"{sum(got.get(k) == v for k, v in answers[base].items())}/{len(ref)}"
        print(
            f"| {r['label']} | {r['answers_per_s']:.3f} "
            f"| {r['answers_per_s'] / hf1['answers_per_s']:.2f}x "
            f"| {r['answers_per_s'] / hf8['answers_per_s']:.2f}x "
            f"| {r['tokens_per_s']:.1f} | {r['size_mb']:.0f} "
            f"| {100 * r['accuracy']:.1f}% | {100 * r['no_answer']:.1f}% "
            f"| {100 * r['cut_off']:.1f}% | {r['tokens']:.0f} | {same}/{len(ref)} "
            f"| {alike} |"
        )
    print(f"\nDecode only, one stream, {args.decode_tokens} tokens after a short prompt:\n")
    print("| model | decode tokens/s | vs HF fp32 |\n|---|--:|--:|")
    for name in ("HF fp32", *args.quants.split(",")):
        print(f"| {name} | {decode[name]:.1f} | {decode[name] / decode['HF fp32']:.2f}x |")


def _decode_prompt() -> list[dict[str, str]]:
    return [{"role": "user", "content": "Explain how the kidney regulates blood pressure."}]


def _decode_llama_cpp(gguf: Path, threads: int, n: int) -> float:
    """Decode-only tokens/s of one stream: ``n`` tokens (llama.cpp's ``generate`` does not
    stop at the end of turn), timed from the first one."""
    import time

    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, verbose=False)
    prompt = llm.tokenizer_.tokenize(b"Explain how the kidney regulates blood pressure.")
    made, started = 0, 0.0
    for _ in llm.generate(prompt, temp=0.0, repeat_penalty=1.0):  # never stops on its own
        if made == 0:
            started = time.perf_counter()  # the prompt is processed by the first token
        made += 1
        if made == n:
            break
    made -= 1
    return made / (time.perf_counter() - started)


def _decode_hf(model: str, n: int) -> float:
    """The same for transformers fp32: ``generate`` with exactly ``n`` new tokens, minus the
    prefill (timed separately with one new token)."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ids = tok.apply_chat_template(_decode_prompt(), add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    kw = {"do_sample": False, "pad_token_id": tok.eos_token_id}
    with torch.inference_mode():
        lm.generate(ids, max_new_tokens=2, **kw)
        t0 = time.perf_counter()
        lm.generate(ids, max_new_tokens=1, **kw)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        lm.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
        total = time.perf_counter() - t0
    return (n - 1) / (total - prefill)


def _letters(run: Path) -> dict[str, str | None]:
    with open(run / "predictions.jsonl", encoding="utf-8") as fh:
        return {r["id"]: r["extracted"] for r in map(json.loads, fh)}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
