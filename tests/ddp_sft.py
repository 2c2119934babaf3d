"""Run a few SFT steps under ``accelerate launch``; each rank writes a hash of its weights.

    accelerate launch --num_processes 2 --cpu tests/ddp_sft.py MODEL DATASET OUT

Used by tests/test_train_distributed.py: after training, data-parallel ranks must hold
identical weights, and the main process alone writes the standalone model.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from medistill.train.config import SFTRecipe
from medistill.train.output import finish
from medistill.train.sft import build_sft_trainer


def main() -> None:
    """Train, hash this rank's parameters, then finish the run as ``medistill sft`` does."""
    model, dataset, out = sys.argv[1:4]
    cfg = SFTRecipe(
        model=model,
        dataset=dataset,
        output_dir=out,
        max_steps=3,
        per_device_train_batch_size=2,
        max_length=1024,
        learning_rate=1e-2,
        report_to="none",
        save_steps=1000,
        seed=0,
    )
    started = time.perf_counter()
    trainer, ctx = build_sft_trainer(cfg)
    trainer.train()
    acc = trainer.accelerator
    digest = hashlib.sha256()
    for name, p in sorted(trainer.model.named_parameters()):
        digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
    Path(out, f"rank{acc.process_index}.sha256").write_text(
        f"{digest.hexdigest()} {acc.num_processes} {acc.distributed_type}\n"
    )
    finish(
        trainer,
        Path(out),
        cfg,
        stage="sft",
        base_model=ctx["model_path"],
        data=ctx["data"],
        curve_keys=("loss",),
        started=started,
    )


if __name__ == "__main__":
    main()
