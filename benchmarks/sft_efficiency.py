"""SFT memory, speed and padding: medistill's defaults against the plain trainers, same data.

    python benchmarks/sft_efficiency.py memory  [--steps 8]   # SmolLM2 + LoRA, batch 4 x 512
    python benchmarks/sft_efficiency.py padding [--steps 12]  # real variable-length traces

``memory``: every batch is 4 sequences of exactly 512 tokens of real teacher text (GPT-4's MIRAGE
chain-of-thought on MedMCQA, ../shared), SmolLM2-135M-Instruct (49k vocabulary), LoRA, fp32 on
CPU. Three set-ups, each in its own process so peak RSS is its own:

* ``transformers`` - an unoptimised script: ``transformers.Trainer`` on the same tokens, LoRA
  on q/v (PEFT's default), full logits and cross-entropy, no activation checkpointing;
* ``trl`` - TRL's ``SFTTrainer`` with its defaults (bf16 off, as a CPU needs), LoRA via PEFT's
  defaults;
* ``medistill`` - ``medistill sft``'s defaults (LoRA on all linear layers without dropout,
  completion-only loss, activation checkpointing, TRL's fused LM head in chunks of 1,024
  tokens).

``padding``: real traces of varying length, batch 4: the share of non-pad tokens per batch and
the tokens/s of TRL's ``SFTTrainer`` (random batches, padded to the longest) against ``medistill
sft`` (length-grouped batches on CPU; packing where FlashAttention runs).

Speed is non-pad tokens per second over all steps but the first (warm-up). Prints Markdown
tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    from shared_data import SHARED

    return SHARED


def _dataset(work: Path) -> Path:
    """GPT-4's MIRAGE traces curated into a medistill dataset (cached in ``work``)."""
    out = work / "dataset"
    if (out / "stats.json").exists():
        return out
    shared = _shared()
    med = str(Path(sys.executable).with_name("medistill"))
    store = work / "traces.db"
    subprocess.run(
        [
            med,
            "-q",
            "import-traces",
            str(shared / "llm_outputs" / "mirage_medmcqa_cot_gpt35_gpt4.jsonl"),
            "--store",
            str(store),
            "--origin",
            "mirage",
            "--preset",
            "mirage",
            "--questions",
            f"medmcqa={shared / 'medmcqa' / 'dev.jsonl'}",
            "--where",
            "model=OpenAI/gpt-4-32k",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            med,
            "-q",
            "curate",
            str(store),
            "--out",
            str(out),
            "--eval-benchmarks",
            "none",
            "--hf-dataset",
            "false",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def _fixed_rows(dataset: Path, tok, n: int, length: int) -> Path:
    """``n`` prompt/completion rows of exactly ``length`` tokens, cut from real traces."""
    from medistill.train.data import iter_rows

    rows = list(iter_rows(dataset / "prompt_completion" / "train.jsonl"))
    out = []
    pool = " ".join(r["completion"][0]["content"] for r in rows[:400]).split()
    start = 0
    for r in rows:
        prompt_ids = tok.apply_chat_template(
            r["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        lo, hi = 1, 1200
        while lo < hi:  # the number of words that makes prompt + completion = length tokens
            mid = (lo + hi) // 2
            text = " ".join(pool[start : start + mid])
            full = tok.apply_chat_template(
                r["prompt"] + [{"role": "assistant", "content": text}],
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            lo, hi = (mid + 1, hi) if len(full) < length else (lo, mid)
        text = " ".join(pool[start : start + lo])
        full = tok.apply_chat_template(
            r["prompt"] + [{"role": "assistant", "content": text}], tokenize=True, return_dict=True
        )["input_ids"]
        start += lo
        if len(full) == length and len(prompt_ids) < length - 64:
            out.append({**r, "completion": [{"role": "assistant", "content": text}]})
        if len(out) == n:
            break
    path = Path(tempfile.mkdtemp()) / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


class _Recorder:
    """Wraps a data collator; remembers non-pad and padded token counts of every batch."""

    def __init__(self, collate) -> None:
        self.collate, self.batches = collate, []

    def __call__(self, features):
        batch = self.collate(features)
        mask = batch.get("attention_mask")
        n = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.batches.append((n, int(batch["input_ids"].numel())))
        return batch


def _timed_train(trainer, steps: int) -> dict:
    from transformers import TrainerCallback

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

    rec = _Recorder(trainer.data_collator)
    trainer.data_collator = rec
    trainer.add_callback(Clock())
    trainer.train()
    tokens = sum(n for n, _ in rec.batches[1:steps])
    padded = sum(t for _, t in rec.batches[1:steps])
    return {
        "tokens_per_s": tokens / (marks[steps - 1] - marks[0]),
        "non_pad_share": tokens / padded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(setup: str, rows: str, model: str, steps: int, out: str) -> None:
    """One set-up in this process: train ``steps`` steps, write the figures to ``out``."""
    import torch
    from peft import LoraConfig

    torch.manual_seed(0)
    common = {
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1000,
        "seed": 0,
    }
    if setup == "medistill":
        from medistill.train.config import SFTRecipe
        from medistill.train.sft import build_sft_trainer

        cfg = SFTRecipe(
            model=model, dataset=rows, output_dir=tempfile.mkdtemp(), max_length=512, **common
        )
        trainer, _ = build_sft_trainer(cfg)
    elif setup == "trl":
        from datasets import load_dataset
        from trl import SFTConfig, SFTTrainer

        cfg = SFTConfig(output_dir=tempfile.mkdtemp(), bf16=False, max_length=512, **common)
        ds = load_dataset("json", data_files=rows, split="train").select_columns(
            ["prompt", "completion"]
        )
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=ds,
            peft_config=LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32),
        )
    else:  # an unoptimised transformers.Trainer script
        from peft import get_peft_model
        from transformers import (
            AutoModelForCausalLM,
            AutoTokenizer,
            DataCollatorForLanguageModeling,
            Trainer,
            TrainingArguments,
        )

        from medistill.train.data import iter_rows

        tok = AutoTokenizer.from_pretrained(model)
        lm = get_peft_model(
            AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
            LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32),
        )
        enc = [
            {
                "input_ids": tok.apply_chat_template(
                    r["prompt"] + r["completion"], tokenize=True, return_dict=True
                )["input_ids"][:512]
            }
            for r in iter_rows(Path(rows))
        ]
        args = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=True, **common)
        trainer = Trainer(
            model=lm,
            args=args,
            train_dataset=enc,
            data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        )
    Path(out).write_text(json.dumps(_timed_train(trainer, steps)))


def _run_child(setup: str, rows: Path, model: str, steps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(
            [sys.executable, __file__, "_child", setup, str(rows), model, str(steps), f.name],
            check=True,
        )
        return json.loads(Path(f.name).read_text())


def main() -> None:
    """Run the ``memory`` or ``padding`` comparison and print its table."""
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["memory", "padding"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-sft")
    a = p.parse_args()
    from transformers import AutoTokenizer

    from medistill.models import smollm2_path

    a.work.mkdir(parents=True, exist_ok=True)
    model = str(smollm2_path())
    dataset = _dataset(a.work)
    if a.what == "memory":
        steps = a.steps or 8
        rows = _fixed_rows(dataset, AutoTokenizer.from_pretrained(model), 4 * steps, 512)
        setups = ("transformers", "trl", "medistill")
    else:
        steps = a.steps or 12
        src = dataset / "prompt_completion" / "train.jsonl"
        rows = Path(tempfile.mkdtemp()) / "rows.jsonl"
        rows.write_text("".join(src.read_text().splitlines(keepends=True)[: 4 * steps * 4]))
        setups = ("trl", "medistill")
    results = {s: _run_child(s, rows, model, steps) for s in setups}
    base = results["trl"]["tokens_per_s"]
    print(
        f"| set-up ({a.what}, {steps} steps of batch 4) | peak RSS | non-pad tokens/s | vs TRL "
        f"| non-pad share |\n|---|---|---|---|---|"
    )
    for s, r in results.items():
        print(
            f"| {s} | {r['peak_rss_mb']:.0f} MB | {r['tokens_per_s']:.1f} | "
            f"{r['tokens_per_s'] / base:.2f}x | {100 * r['non_pad_share']:.1f}% |"
        )


if __name__ == "__main__":
    main()
