"""Per-question rubrics: the teacher writes a grading rubric for every question of a trace store.

In the manner of Rubrics as Rewards (Gunjal et al., 2025, arXiv 2507.17746): conditioned on the
question, its options and its correct answer, the teacher lists 5-15 self-contained criteria,
each weighted ``essential``, ``important``, ``optional`` or ``pitfall`` (an unsafe or wrong step
the reasoning must not contain). The GRPO ``rubric`` reward's judge then grades each completion
against its own question's rubric instead of one rubric for every question.

``medistill rubrics --config recipe.yaml`` (the recipe's ``rubrics:`` section) reads the store
``generate`` wrote, asks once per question, and stores every reply in the store's ``rubrics``
table: the raw text, and the parsed criteria or the reason it was refused. A reply is refused
unless it is exactly the JSON asked for (a code fence is allowed): a list of
``min_criteria``-``max_criteria`` objects ``{criterion: str, weight: essential|important|
optional|pitfall}``, no other keys, at least one ``essential``, no duplicates, each criterion
10-400 characters and self-contained (no option letters such as "option B" or "(C)": the
student may see the options in another order, and a grader may not see them at all). Refused
replies are counted by reason, logged, and asked again on the next run (``retry_invalid``);
a question left without a valid rubric is counted in the summary and in the data card. A
rerun asks only for what is missing.

Weights become HealthBench points (:data:`WEIGHT_POINTS`): essential 5, important 3,
optional 1, pitfall -5. The judge's score is the points of the criteria met over the sum of the
positive points, a met pitfall subtracting, clamped to [0, 1].
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medistill.backends import Generation, SamplingParams, fan_out
from medistill.backends.config import TeacherConfig
from medistill.data.options import format_options, unpermute
from medistill.errors import MedistillError
from medistill.store import RubricRecord, TraceStore

log = logging.getLogger(__name__)

#: A weight's HealthBench points (the dataset's ``rubric`` rows carry both).
WEIGHT_POINTS: dict[str, int] = {"essential": 5, "important": 3, "optional": 1, "pitfall": -5}
#: The shortest and longest criterion text accepted, in characters.
CRITERION_CHARS = (10, 400)
#: An option named by its letter ("option B", "answer (C)", "(D)"): not self-contained.
_LETTER_REF = re.compile(r"\b(?i:options?|choices?|answers?|letters?)\s*\(?[A-J]\b\)?|\([A-J]\)")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S)

RUBRIC_SYSTEM = (
    "You write grading rubrics for a medical reasoning tutor. Given a multiple-choice question "
    "and its correct answer, list the criteria a grader checks in a student's written "
    "reasoning and final answer. Each criterion is one short, self-contained, checkable "
    "statement: name the finding, drug, mechanism or diagnosis itself, never an option letter "
    "(the student may see the options in another order) and never 'the question' or "
    "'the above'. Weights: essential (a good answer must do this, e.g. reach the correct "
    "answer for its key reason), important (a strong answer does this), optional (nice to "
    "have), pitfall (an unsafe or wrong step a good answer must NOT contain, phrased as the "
    "bad behaviour, e.g. 'Recommends thrombolysis despite a recent haemorrhagic stroke'). "
    "Reply with only a JSON list and nothing else: "
    '[{"criterion": "...", "weight": "essential"}, ...]'
)


@dataclass
class RubricsConfig:
    """Everything ``medistill rubrics`` needs (also the ``rubrics:`` section of a recipe)."""

    teacher: TeacherConfig = field(
        metadata={
            "help": "who writes the rubrics (the keys of generate's teacher)",
            "from_string": TeacherConfig.spec_values,
        }
    )
    store: str = field(
        default="runs/traces.db",
        metadata={"help": "the trace store generate wrote; its questions get rubrics"},
    )
    min_criteria: int = field(default=5, metadata={"help": "fewest criteria a rubric may have"})
    max_criteria: int = field(default=15, metadata={"help": "most criteria a rubric may have"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature"})
    max_tokens: int = field(default=2048, metadata={"help": "completion token budget"})
    seed: int = field(
        default=0, metadata={"help": "base seed; the n-th attempt at a question uses seed + n - 1"}
    )
    limit: int | None = field(
        default=None, metadata={"help": "only the store's first N questions (in store order)"}
    )
    max_requests: int | None = field(default=None, metadata={"help": "stop after N new calls"})
    max_cost: float | None = field(default=None, metadata={"help": "stop at this est. cost"})
    retry_invalid: bool = field(
        default=True,
        metadata={"help": "ask again for a question whose stored reply was refused"},
    )

    def __post_init__(self) -> None:
        if not 1 <= self.min_criteria <= self.max_criteria:
            raise ValueError(
                f"need 1 <= min_criteria <= max_criteria, got {self.min_criteria} and "
                f"{self.max_criteria}"
            )


# ----------------------------------------------------------------------------- the request


def original_lettering(q: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """A stored question's options and gold in their original lettering (undoing the shuffle
    its first trace showed), options in letter order."""
    return unpermute(q["options"], q.get("gold"), q.get("permutation"))


def rubric_messages(
    question: str, options: dict[str, str], gold: str, *, min_criteria: int, max_criteria: int
) -> list[dict[str, str]]:
    """The teacher's chat request for one question's rubric."""
    shown = format_options(options)
    user = (
        f"## Question\n{question}\n\n## Options\n{shown}\n\n## Correct answer\n{gold}. "
        f"{options.get(gold, '')}\n\nWrite {min_criteria} to {max_criteria} criteria, at least "
        "one essential, including pitfalls for the tempting wrong answers and any unsafe advice "
        "this question invites."
    )
    return [{"role": "system", "content": RUBRIC_SYSTEM}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- the reply


def parse_rubric(
    text: str, *, min_criteria: int = 5, max_criteria: int = 15
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """``(criteria, None)`` for a valid reply, else ``(None, reason)``.

    Criteria are ``{criterion, weight, points}`` (points from :data:`WEIGHT_POINTS`). Reasons
    start with a fixed word, by which the summary counts them: ``not_json``, ``not_a_list``,
    ``too_few``, ``too_many``, ``bad_item``, ``bad_weight``, ``bad_text``, ``letter_reference``,
    ``duplicate``, ``no_essential``.

    >>> parse_rubric('[{"criterion": "Names septic shock", "weight": "essential"}]',
    ...              min_criteria=1)
    ([{'criterion': 'Names septic shock', 'weight': 'essential', 'points': 5}], None)
    >>> parse_rubric('{"criteria": []}')
    (None, 'not_a_list: expected a JSON list of criteria, got an object')
    """
    s = (text or "").strip()
    fence = _FENCE.fullmatch(s)
    try:
        data = json.loads(fence.group(1) if fence else s)
    except ValueError:
        return None, f"not_json: {s[:80]!r}"
    if not isinstance(data, list):
        kind = "an object" if isinstance(data, dict) else type(data).__name__
        return None, f"not_a_list: expected a JSON list of criteria, got {kind}"
    if len(data) < min_criteria:
        return None, f"too_few: {len(data)} criteria, at least {min_criteria} wanted"
    if len(data) > max_criteria:
        return None, f"too_many: {len(data)} criteria, at most {max_criteria} wanted"
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    lo, hi = CRITERION_CHARS
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or set(item) != {"criterion", "weight"}:
            return None, f"bad_item: item {i} is not {{criterion, weight}}: {item!r:.80}"
        text_, weight = item["criterion"], item["weight"]
        if not isinstance(weight, str) or weight.strip().lower() not in WEIGHT_POINTS:
            return None, f"bad_weight: item {i} weight {weight!r:.40}"
        if not isinstance(text_, str) or not lo <= len(text_.strip()) <= hi:
            return None, f"bad_text: item {i} criterion must be {lo}-{hi} characters of text"
        text_ = " ".join(text_.split())
        if _LETTER_REF.search(text_):
            return None, f"letter_reference: item {i} names an option by letter: {text_!r:.80}"
        if text_.lower() in seen:
            return None, f"duplicate: item {i} repeats a criterion"
        seen.add(text_.lower())
        w = weight.strip().lower()
        out.append({"criterion": text_, "weight": w, "points": WEIGHT_POINTS[w]})
    if not any(c["weight"] == "essential" for c in out):
        return None, "no_essential: at least one essential criterion is needed"
    return out, None


# ----------------------------------------------------------------------------- the step


@dataclass
class _Ask:
    source: str
    question_id: str
    messages: list[dict[str, str]]
    attempt: int
    params: SamplingParams


class _Counts:
    def __init__(self, teacher: TeacherConfig) -> None:
        self.teacher = teacher
        self.calls = self.valid = self.prompt_tokens = self.completion_tokens = 0
        self.invalid: Counter[str] = Counter()
        self.examples: list[str] = []

    @property
    def cost(self) -> float:
        return self.teacher.cost(self.prompt_tokens, self.completion_tokens)


def run_rubrics(cfg: RubricsConfig, *, show_progress: bool = False) -> dict[str, Any]:
    """Ask the teacher for a rubric per question of ``cfg.store``; return the run summary.

    Every reply is committed as it arrives (raw and parsed, or refused with its reason), so a
    killed run resumes. Questions without gold are not asked (a rubric is conditioned on the
    correct answer) and are counted.
    """
    if not Path(cfg.store).exists():
        raise MedistillError(f"{cfg.store}: trace store not found (run medistill generate first)")
    t0 = time.perf_counter()
    counts = _Counts(cfg.teacher)
    with TraceStore(cfg.store) as store:
        questions = list(store.questions())
        if cfg.limit is not None:
            questions = questions[: cfg.limit]
        status = store.rubric_status()
        asks: list[_Ask] = []
        no_gold = already = 0
        for q in questions:
            key = (q["source"], q["question_id"])
            error, attempts = status.get(key, (None, 0))
            if key in status and (error is None or not cfg.retry_invalid):
                already += 1
                continue
            options, gold = original_lettering(q)
            if not gold or gold not in options or not q["question"]:
                no_gold += 1
                continue
            messages = rubric_messages(
                q["question"], options, gold,
                min_criteria=cfg.min_criteria, max_criteria=cfg.max_criteria,
            )  # fmt: skip
            attempt = attempts + 1
            asks.append(
                _Ask(q["source"], q["question_id"], messages, attempt, _params(cfg, attempt))
            )
        stopped = None
        if cfg.max_requests is not None and len(asks) > cfg.max_requests:
            asks, stopped = asks[: cfg.max_requests], "max_requests"
        log.info(
            "%s: %d questions, %d with a stored rubric outcome kept, %d to ask, %d without gold",
            cfg.store, len(questions), already, len(asks), no_gold,
        )  # fmt: skip

        def record(ask: _Ask, g: Generation) -> None:
            criteria, error = parse_rubric(
                g.text, min_criteria=cfg.min_criteria, max_criteria=cfg.max_criteria
            )
            counts.calls += 1
            counts.prompt_tokens += g.prompt_tokens or 0
            counts.completion_tokens += g.output_tokens or 0
            if error is None:
                counts.valid += 1
            else:
                counts.invalid[error.split(":", 1)[0]] += 1
                counts.examples.append(f"{ask.source}/{ask.question_id}: {error}")
                log.warning("rubric for %s/%s refused: %s", ask.source, ask.question_id, error)
            store.put_rubric(
                RubricRecord(
                    source=ask.source, question_id=ask.question_id, teacher=cfg.teacher.model,
                    messages=ask.messages, raw=g.text, criteria=criteria, error=error,
                    attempts=ask.attempt, prompt_tokens=g.prompt_tokens,
                    completion_tokens=g.output_tokens,
                )
            )  # fmt: skip

        if asks:
            with cfg.teacher.open() as backend:
                check = getattr(backend, "check_endpoints", None)
                if check is not None:
                    check()
                stopped = (
                    fan_out(
                        backend,
                        asks,
                        lambda i, g: record(asks[i], g),
                        policy="stop",
                        concurrency=cfg.teacher.concurrency,
                        spent=lambda: cfg.max_cost is not None and counts.cost >= cfg.max_cost,
                        label=f"rubrics teacher {cfg.teacher.model}",
                    )
                    or stopped
                )
        final = store.rubric_status()
    in_scope = [(q["source"], q["question_id"]) for q in questions]
    with_valid = sum(1 for k in in_scope if k in final and final[k][0] is None)
    refused = sum(1 for k in in_scope if k in final and final[k][0] is not None)
    summary = {
        "store": str(cfg.store),
        "teacher": cfg.teacher.model,
        "questions": len(in_scope),
        "with_valid_rubric": with_valid,
        "with_refused_rubric": refused,
        "not_asked_no_gold": no_gold,
        "without_valid_rubric": len(in_scope) - with_valid,
        "already_stored": already,
        "new_calls": counts.calls,
        "new_valid": counts.valid,
        "new_invalid": sum(counts.invalid.values()),
        "invalid_by_reason": dict(counts.invalid.most_common()),
        "invalid_examples": counts.examples[:10],
        "stopped_by": stopped,
        "prompt_tokens_new": counts.prompt_tokens,
        "completion_tokens_new": counts.completion_tokens,
        "estimated_cost_new": round(counts.cost, 6),
        "weight_points": dict(WEIGHT_POINTS),
        "wall_s": round(time.perf_counter() - t0, 3),
        "config": {k: v for k, v in asdict(cfg).items() if k != "teacher"},
    }
    if summary["without_valid_rubric"]:
        log.warning(
            "%d of %d questions have no valid rubric (%d refused, %d without gold, the rest "
            "not asked yet); their rows fall back to the recipe's rubric",
            summary["without_valid_rubric"], len(in_scope), refused, no_gold,
        )  # fmt: skip
    log.info("rubrics summary: %s", {k: v for k, v in summary.items() if k != "config"})
    return summary


def _params(cfg: RubricsConfig, attempt: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed + attempt - 1
    )


__all__ = [
    "RUBRIC_SYSTEM",
    "WEIGHT_POINTS",
    "RubricsConfig",
    "original_lettering",
    "parse_rubric",
    "rubric_messages",
    "run_rubrics",
]
