"""What the stages of one recipe must agree on, checked when the recipe is planned.

Each stage validates its own keys; these rules span stages, where a mismatch does not fail
but silently wastes the run: a student trained on traces up to N tokens and evaluated with a
smaller budget is cut off mid-reasoning and scored as having no answer (the failure behind
DeepSeek-R1-Distill-Llama-8B's below-chance 20.3 on the poster); an SFT ``max_length``
below the curated trace length drops the longest (often the hardest) traces; a GRPO
completion length below the conciseness reward's budget truncates before the penalty it
shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.errors import MedistillError
from medistill.train.reward_builder import reward_params
from medistill.train.rewards import conciseness

#: Tokens a question's prompt takes in the student's chat template (MedQA's longest vignettes
#: with five options and the answer-line instruction stay under this): an SFT ``max_length``
#: must hold it on top of the longest curated trace.
PROMPT_ALLOWANCE = 512


def length_problems(configs: dict[str, Any]) -> list[str]:
    """Every cross-stage length rule the planned configs break, as ``key: why`` lines."""
    problems: list[str] = []
    curate = configs.get("curate")
    trace = getattr(curate, "max_tokens", None)
    # A safety benchmark's answers are open requests read for a refusal in their opening
    # sentences (run.eval_benchmarks may give them a short max_new_tokens): not MCQ answers.
    evals = [e for _, e in configs.get("eval", []) if e.benchmark not in SAFETY_BENCHMARKS]
    eval_tokens = min((e.max_new_tokens for e in evals), default=None)
    sft = configs.get("sft")
    sft_length = getattr(sft, "max_length", None)
    if trace is not None and sft_length is not None and sft_length < trace + PROMPT_ALLOWANCE:
        problems.append(
            f"sft.max_length {sft_length} < curate.max_tokens {trace} + {PROMPT_ALLOWANCE} "
            f"prompt tokens: the longest kept traces would be dropped or cut; raise "
            f"sft.max_length or lower curate.max_tokens"
        )
    if eval_tokens is not None:
        trained = []
        if trace is not None and "sft" in configs:
            trained.append(("curate.max_tokens", trace, "the SFT student writes traces this long"))
        for stage in ("grpo", "distill"):
            cfg = configs.get(stage)
            if cfg is not None and cfg.max_completion_length:
                trained.append(
                    (
                        f"{stage}.max_completion_length",
                        cfg.max_completion_length,
                        f"the {stage} student was trained to finish within it",
                    )
                )
        for key, value, why in trained:
            if eval_tokens < value:
                problems.append(
                    f"eval.max_new_tokens {eval_tokens} < {key} {value} ({why}): answers "
                    f"would be cut off and scored as no answer; raise eval.max_new_tokens"
                )
    grpo = configs.get("grpo")
    if grpo is not None:
        budget = _conciseness_budget(grpo.rewards)
        if budget is not None and (grpo.max_completion_length or 0) < budget:
            problems.append(
                f"grpo.max_completion_length {grpo.max_completion_length} < the conciseness "
                f"reward's budget {budget}: completions are cut before the penalty it shapes; "
                f"raise grpo.max_completion_length or lower the budget"
            )
    return problems


def _conciseness_budget(rewards: Any) -> int | None:
    """The ``budget`` of a recipe's conciseness reward (its default when only weighted)."""
    if not isinstance(rewards, dict) or "conciseness" not in rewards:
        return None
    spec = rewards["conciseness"]
    if isinstance(spec, dict) and "budget" in spec:
        return int(spec["budget"])
    return int(reward_params(conciseness)["budget"])


def check_lengths(path: Path, configs: dict[str, Any]) -> None:
    """Refuse a recipe whose stage lengths disagree, naming every rule it breaks."""
    problems = length_problems(configs)
    if problems:
        raise MedistillError(f"{path}: stage lengths disagree:\n  " + "\n  ".join(problems))
