"""Prompt templates and chat formatting.

A :class:`PromptTemplate` turns a :class:`Question` into chat messages; the model's own chat
template (``tokenizer.apply_chat_template``) turns messages into text for local backends,
and OpenAI-compatible servers apply theirs. Templates are plain data: load your own from YAML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medistill.data.options import format_options
from medistill.data.schema import Question
from medistill.errors import MedistillError

#: THE answer contract: the one final line every answer ends with. The prompt asks for it,
#: curation's SFT targets end with it, the ``format`` reward checks it and the extractor reads
#: it strictly. Change it here and every stage follows.
ANSWER_LINE = "The answer is {letter}."


def answer_line(letter: str) -> str:
    """The contract's final line for ``letter``: ``answer_line("B") == "The answer is B."``."""
    return ANSWER_LINE.format(letter=letter)


def answer_line_regex(letters: str = "ABCDEFGHIJ") -> re.Pattern[str]:
    """A pattern matching exactly one contract line (the whole line) and capturing its letter.

    ``answer_line_regex("ABCD").fullmatch("The answer is C.").group(1) == "C"``.
    """
    head, _, tail = ANSWER_LINE.partition("{letter}")
    return re.compile(re.escape(head) + f"([{re.escape(letters)}])" + re.escape(tail))


COT_SYSTEM = (
    "You are a medical expert answering a multiple-choice exam question. Reason step by step "
    "through the clinical findings and each option, then commit to exactly one option."
)
COT_USER = (
    "{question}\n\n{options}\n\n"
    f'Think step by step. Then end with a final line of the form "{answer_line("X")}" where X '
    "is one of {letters_or}."
)
#: STaR rationalisation (Zelikman et al., 2022): the teacher is shown the key and writes the
#: reasoning that reaches it. Only the teacher's request carries it; curation builds the
#: student's prompt from the question alone, and the ``leaked_gold`` filter drops a trace that
#: cites the key.
RATIONALIZE_HINT = (
    "\n\n(For the teacher only: the correct answer is {letter}. {text}.{explanation} Write "
    "the reasoning that reaches it from the findings, as if you were solving the question "
    "yourself, without saying that you were given the answer, and end with the final line "
    '"{final}")'
)
DIRECT_USER = (
    "{question}\n\n{options}\n\nAnswer with the letter of the single best option, in the form "
    f'"{answer_line("X")}"'
)


@dataclass
class PromptTemplate:
    """A chat prompt for multiple-choice questions.

    Attributes:
        name: identifier recorded in run configs (changing the template changes the run).
        system: system message; empty string for none (some models reject system turns).
        user: user message with ``{question}``, ``{options}``, ``{letters}`` (``A, B, C, D``)
            and ``{letters_or}`` (``A, B, C or D``) placeholders.
        option_format: how one option is rendered, with ``{letter}`` and ``{text}``.
        loglik_suffix: for log-likelihood scoring, the text after the options that the
            option letter continues (lm-evaluation-harness style ``Answer:``).
    """

    name: str = "cot"
    system: str = COT_SYSTEM
    user: str = COT_USER
    option_format: str = "{letter}. {text}"
    loglik_suffix: str = "Answer:"
    extra: dict[str, Any] = field(default_factory=dict)

    def user_message(self, q: Question) -> str:
        """The user turn for ``q``."""
        letters = q.letters
        return self.user.format(
            question=q.question.strip(),
            options=format_options(q.options, self.option_format),
            letters=", ".join(letters),
            letters_or=", ".join(letters[:-1]) + " or " + letters[-1],
        )

    def messages(self, q: Question) -> list[dict[str, str]]:
        """Chat messages (system if any, then user) for ``q``."""
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": self.user_message(q)})
        return msgs

    def rationalize(self, q: Question) -> list[dict[str, str]]:
        """:meth:`messages` with the key and the reference explanation appended to the user
        turn, for a teacher that writes the reasoning towards a known answer (STaR)."""
        msgs = self.messages(q)
        explanation = str(q.meta.get("explanation") or "").strip()
        hint = RATIONALIZE_HINT.format(
            letter=q.gold,
            text=q.options[q.gold].rstrip("."),
            explanation=f" Reference explanation: {explanation}" if explanation else "",
            final=answer_line(q.gold),
        )
        msgs[-1] = {**msgs[-1], "content": msgs[-1]["content"] + hint}
        return msgs

    def loglik_context(self, q: Question) -> str:
        """Plain-text context for letter log-likelihood scoring (no chat template)."""
        opts = format_options(q.options, self.option_format)
        return f"{q.question.strip()}\n{opts}\n{self.loglik_suffix}"

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form, stored in run configs so a resumed run can check it."""
        return asdict(self)


TEMPLATES: dict[str, PromptTemplate] = {
    "cot": PromptTemplate(),
    "direct": PromptTemplate(name="direct", system="You are a medical expert.", user=DIRECT_USER),
}


def get_template(spec: str | None) -> PromptTemplate:
    """A template by name (``cot``, ``direct``) or from a YAML file with the same fields."""
    if spec is None:
        return TEMPLATES["cot"]
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") and path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise MedistillError(f"{path}: invalid YAML ({e})") from e
        known = set(PromptTemplate.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise MedistillError(
                f"{path}: unknown template field(s) {sorted(unknown)}; valid: {sorted(known)}"
            )
        data.setdefault("name", path.stem)
        tpl = PromptTemplate(**data)
        for key in ("{question}", "{options}"):
            if key not in tpl.user:
                raise MedistillError(f"{path}: field 'user' must contain {key}")
        return tpl
    raise MedistillError(
        f"unknown prompt template {spec!r}: use one of {', '.join(TEMPLATES)} "
        f"or a path to a .yaml file"
    )


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Apply the tokenizer's chat template with the generation prompt appended (a final
    assistant message is the start of the answer: its text follows the generation prompt).

    A tokenizer without a chat template (a base model) gets a plain ``role: content``
    rendering so evaluation still works, and the fallback is visible in the prompt text.
    """
    if messages and messages[-1].get("role") == "assistant":
        # A final assistant turn is continued, not closed (budget control: "Wait", the cue).
        return render_chat(tokenizer, messages[:-1]) + messages[-1]["content"]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


# ----------------------------------------------------------------- log-likelihood prompts
#: The lm-evaluation-harness release whose task prompts the ``lm-eval`` preset reproduces.
LM_EVAL_VERSION = "0.4.13"
LOGLIK_PRESETS = ("lm-eval", "medistill")


@dataclass(frozen=True)
class ChoiceRequest:
    """One question for log-likelihood scoring: a context and each option's continuation.

    ``add_bos``: ``True`` puts the tokenizer's BOS token first whatever the tokenizer does
    (medistill's own preset); ``None`` tokenises the context the tokenizer's default way,
    which adds BOS only for tokenizers configured to (lm-evaluation-harness's behaviour).
    """

    context: str
    continuations: dict[str, str]
    add_bos: bool | None = None

    def token_pairs(
        self, encode: Callable[[str], list[int]]
    ) -> dict[str, tuple[list[int], list[int]]]:
        """``key -> (context ids, continuation ids)`` as lm-evaluation-harness's
        ``_encode_pair`` makes them, for any backend's ``encode`` (text -> ids): trailing
        spaces of the context move to the continuation, the whole text is encoded and the
        continuation is what follows the context's own tokens (a continuation merged into the
        context's last token takes that token). The context is encoded once."""
        context = self.context.rstrip()
        spaces = self.context[len(context) :]
        ctx = encode(context)
        out = {}
        for key, continuation in self.continuations.items():
            whole = encode(context + spaces + continuation)
            cont = whole[len(ctx) :]
            out[key] = (ctx, cont) if cont else (whole[:-1], whole[-1:])
        return out


def _lm_eval_context(q: Question, benchmark: str) -> tuple[str, dict[str, str]]:
    """The context and continuations lm-evaluation-harness builds for ``q``'s task."""
    opts = format_options(q.options) + "\n"
    letters = {k: f" {k}" for k in q.options}
    if benchmark == "medmcqa":  # task medmcqa
        return f"Question: {q.question}\nChoices:\n{opts}Answer:", letters
    if benchmark == "mmlu_medical":  # tasks mmlu_<subject>, zero-shot
        subject = (q.subject or "").replace("_", " ")
        head = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        return f"{head}{q.question.strip()}\n{opts}Answer:", letters
    if benchmark == "pubmedqa":  # task pubmedqa: the decisions themselves are scored
        context, _, text = q.question.rpartition("\n\nQuestion: ")
        abstract = context.removeprefix("Context: ") if context else ""
        return (
            f"Abstract: {abstract}\nQuestion: {text or q.question}\nAnswer:",
            {k: f" {v}" for k, v in q.options.items()},
        )
    # medqa_4options, and its format for any other multiple-choice set
    return f"Question: {q.question}\n{opts}Answer:", letters


def loglik_requests(
    questions: list[Question],
    preset: str,
    *,
    benchmark: str,
    template: PromptTemplate | None = None,
) -> list[ChoiceRequest]:
    """The log-likelihood requests for ``questions`` under a prompt ``preset``.

    ``lm-eval`` reproduces lm-evaluation-harness 0.4.13's zero-shot task prompts
    (``medqa_4options`` — ``Question: ...\\nA. ...\\nAnswer:`` continued by ``" A"`` —
    ``medmcqa``, ``mmlu_<subject>``, ``pubmedqa``; other sets get the ``medqa_4options``
    form) and its tokenisation (no BOS added unless the tokenizer adds one), so per-letter
    log-likelihoods match lm-eval's. ``medistill`` is the template's own context (question,
    options, ``Answer:``) with BOS always first.
    """
    if preset == "lm-eval":
        return [ChoiceRequest(*_lm_eval_context(q, benchmark)) for q in questions]
    if preset == "medistill":
        tpl = template or TEMPLATES["cot"]
        return [
            ChoiceRequest(tpl.loglik_context(q), {k: f" {k}" for k in q.options}, add_bos=True)
            for q in questions
        ]
    raise MedistillError(
        f"unknown loglik preset {preset!r}; choose one of: {', '.join(LOGLIK_PRESETS)}"
    )
