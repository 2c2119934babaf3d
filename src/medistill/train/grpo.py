"""Stage 4: GRPO from the SFT student with medical rewards (TRL ``GRPOTrainer``) -> model folder.

Prompts, options and gold letters come from the curated dataset (one prompt per question), so
the ``correctness`` reward reads each completion with the same extractor and the same options
as ``medistill eval``. Rewards are plain functions from :mod:`medistill.train.rewards`, weighted
by the recipe. Besides TRL's own metrics (each reward's mean and std, ``frac_reward_zero_std``,
``completions/clipped_ratio``, completion lengths), every step logs the extracted-letter
distribution beside the gold distribution, and a warning fires when more than
``cutoff_warning`` of the completions were cut off: a silent truncation zeroes every reward.
With vLLM installed, ``use_vllm: true`` generates with it (``vllm_mode: colocate`` or
``server``), as in TRL.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from typing import Any

from medistill.answers import extract_answer
from medistill.data.options import options_or_none
from medistill.train.config import GRPORecipe
from medistill.train.data import permuted_prompts, prompt_rows, resolve_dataset
from medistill.train.output import finish, prepare_run, start_manifest
from medistill.train.precision import keep_adapters_fp32
from medistill.train.reward_builder import build_rewards, is_async_reward
from medistill.train.safety import completion_text
from medistill.train.sft import load_tokenizer, resolve_student

log = logging.getLogger(__name__)

CURVE_KEYS = (
    "reward",
    "completions/mean_length",
    "completions/clipped_ratio",
    "frac_reward_zero_std",
)


def observe_letters(func: Any) -> Any:
    """Wrap a reward function so each call also logs the letter distributions.

    ``letters/extracted_X`` and ``letters/gold_X`` are shares of the batch's completions (strict
    extraction, as the correctness reward reads them; ``letters/extracted_none`` for no answer).
    A distribution collapsed onto one letter while the gold is spread is a failure mode of small
    students that a mean reward hides.
    """

    @functools.wraps(func)
    def wrapper(completions: list[Any], **kwargs: Any) -> list[float | None]:
        log_metric = kwargs.get("log_metric")
        gold, options = kwargs.get("gold"), kwargs.get("options")
        if log_metric is not None and gold and options:
            n = len(completions)
            got = Counter(
                extract_answer(completion_text(c), options_or_none(o) or {}, mode="strict").letter
                or "none"
                for c, o in zip(completions, options, strict=True)
            )
            for letter in sorted(set(got) | set(gold)):
                log_metric(f"letters/extracted_{letter}", got.get(letter, 0) / n)
            for letter, k in Counter(gold).items():
                log_metric(f"letters/gold_{letter}", k / n)
        return func(completions, **kwargs)

    return wrapper


def health_callback(cutoff_warning: float) -> Any:
    """A ``TrainerCallback`` that warns when too many completions are cut off or too many
    groups carry no learning signal (all rewards equal), and keeps running means of both."""
    from transformers import TrainerCallback

    class GRPOHealth(TrainerCallback):
        def __init__(self) -> None:
            self.clipped: list[float] = []
            self.zero_std: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            clipped = logs.get("completions/clipped_ratio")
            zero = logs.get("frac_reward_zero_std")
            if clipped is not None:
                self.clipped.append(float(clipped))
                if clipped > cutoff_warning:
                    log.warning(
                        "step %d: %.0f%% of completions were cut off at max_completion_length=%s "
                        "(they earn no correctness/format reward); raise max_completion_length "
                        "or reward concision",
                        state.global_step,
                        100 * clipped,
                        args.max_completion_length,
                    )
            if zero is not None:
                self.zero_std.append(float(zero))
                if zero >= 0.999 and state.global_step > 1:
                    log.warning(
                        "step %d: every group's rewards were equal: no advantage, no learning "
                        "signal (all right, all wrong, or all cut off)",
                        state.global_step,
                    )

        def summary(self) -> dict[str, float]:
            def mean(xs: list[float]) -> float | None:
                return round(sum(xs) / len(xs), 4) if xs else None

            return {
                "mean_share_cut_off": mean(self.clipped),
                "mean_share_zero_variance_groups": mean(self.zero_std),
            }

    return GRPOHealth()


def _eos_ids(model_path: str, tokenizer: Any) -> list[int]:
    from transformers import GenerationConfig

    ids: set[int] = set()
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def run_grpo(cfg: GRPORecipe) -> dict[str, Any]:
    """Train ``cfg.model`` (usually the SFT folder) with GRPO; return the run's manifest."""
    from accelerate import PartialState
    from datasets import Dataset
    from trl import GRPOTrainer, get_peft_config

    cfg.require("model", "dataset")
    started = time.perf_counter()
    state = PartialState()
    model_path = resolve_student(cfg)
    source = resolve_dataset(str(cfg.dataset))
    rows = prompt_rows(source, limit=cfg.max_prompts)
    rows, unchanged = permuted_prompts(rows, cfg.option_orders, cfg.seed)
    if unchanged:
        log.warning(
            "option_orders: %d prompt copies kept the curated order (their user turn does not "
            "hold the options as 'A. text' lines)",
            unchanged,
        )
    tokenizer = load_tokenizer(model_path, cfg)
    tokenizer.padding_side = "left"  # generation pads on the left
    funcs, weights = build_rewards(
        cfg.rewards,
        max_completion_length=cfg.max_completion_length,
        eos_token_ids=_eos_ids(model_path, tokenizer),
    )
    sync = next((i for i, f in enumerate(funcs) if not is_async_reward(f)), None)
    if sync is not None:  # an async reward (the judge) cannot be wrapped synchronously
        funcs[sync] = observe_letters(funcs[sync])
    with state.main_process_first():
        out, resume, done = prepare_run(cfg, "grpo", main=state.is_main_process)
    if done is not None:
        return done
    data = {
        **source.card_summary,
        "grpo_prompts": len(rows),
        "option_orders": cfg.option_orders,
        "rewards": {getattr(f, "__name__", str(f)): w for f, w in zip(funcs, weights, strict=True)},
    }
    if state.is_main_process:
        start_manifest(out, cfg, "grpo", base_model=str(cfg.model), data=data)
    health = health_callback(cfg.cutoff_warning)
    trainer = GRPOTrainer(
        model=model_path,
        reward_funcs=funcs,
        args=cfg.trainer_args(reward_weights=weights),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=get_peft_config(cfg),
        callbacks=[health],
    )
    keep_adapters_fp32(trainer, cfg)
    log.info(
        "GRPO %s on %d prompts, %d completions each, rewards %s",
        cfg.model,
        len(rows),
        cfg.num_generations,
        data["rewards"],
    )
    from medistill.train.cadence import CheckpointCadence

    trainer.add_callback(CheckpointCadence("grpo"))  # save_steps against the real step count
    trainer.train(resume_from_checkpoint=resume)
    data.update(health.summary())
    return finish(
        trainer,
        out,
        cfg,
        stage="grpo",
        base_model=model_path,
        data=data,
        curve_keys=CURVE_KEYS,
        started=started,
    )
