"""A stand-in teacher for rehearsals: an OpenAI-compatible chat-completions server on
127.0.0.1 that knows the rehearsal's questions and reasons briefly to their answers.

A rehearsal cannot call the recipe's teacher (an API that costs money, vLLM servers that are
not there), and a tiny random model writes nothing curation would keep; so the teacher
becomes this server, reached through the same OpenAI client, retries and trace store a real
HTTP teacher uses. It reads the options as shown (shuffled or not), answers with the
project's answer line, puts its reasoning in ``reasoning_content`` when the recipe's
teacher is a reasoning model (as DeepSeek's API and vLLM's reasoning parsers do), and
answers one question in five wrongly, so curation's verification has something to drop. An
open request sent alone (the benign contrast requests of generate's ``contrast``) gets a
short helpful answer.

Its reasoning is one short sentence: a tiny random student learns that format (and to stop
after the answer line) in a few dozen SFT steps, so a rehearsal's GRPO samples completions
that end, and its rewards differ within a group. It listens on a port the caller may fix (a
rehearsal keeps one port per run folder, so the URL in its recipe, hence every stage's
config hash, is the same on a rerun); a client that hangs up mid-request is not an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from medistill.backends.local_server import (
    BadRequest,
    Completion,
    LocalChatServer,
    free_port,
    port_is_free,
)
from medistill.data import Question
from medistill.prompts import ANSWER_LINE
from medistill.rubrics import RUBRIC_SYSTEM
from medistill.train.judge import JUDGE_SYSTEM

log = logging.getLogger(__name__)

_OPTION = re.compile(r"^\s*\(?([A-J])[.):]\s+(.+?)\s*$", re.MULTILINE)


class StandInTeacher:
    """``with StandInTeacher(questions, reasoning=True) as t: t.url`` (``.../v1``); ``port``
    0 takes any free port. It is the project's local server
    (:mod:`medistill.backends.local_server`) with the stand-in's replies."""

    def __init__(
        self, questions: list[Question], *, reasoning: bool = False, port: int = 0
    ) -> None:
        self.reasoning = reasoning
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        # The longest question text first: one question's text never shadows a longer one.
        self._known = sorted(
            ((q.question.strip(), q) for q in questions if q.gold),
            key=lambda kv: -len(kv[0]),
        )
        self._server = LocalChatServer(
            self.complete,
            port=port,
            name="stand-in teacher",
            model="stand-in",
            id_prefix="standin",
            record=False,
        )
        self.url = self._server.url

    def __enter__(self) -> StandInTeacher:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def answer(self, user: str) -> tuple[str, str]:
        """(reasoning, final text) for one prompt: the gold option as shown, one in five
        questions answered with another option; a question it does not know gets no answer
        line (curation drops it as no answer)."""
        q = next((q for text, q in self._known if text and text in user), None)
        shown = {m.group(1): m.group(2) for m in _OPTION.finditer(user)}
        if q is None or not shown:
            with self._lock:
                self.stats["unknown"] += 1
            return "I cannot tell which question this is.", "I am not sure."
        gold_text = q.options[q.gold].strip()
        letter = next((k for k, v in shown.items() if v.strip() == gold_text), None)
        wrong = int(hashlib.sha256(q.id.encode()).hexdigest(), 16) % 5 == 0
        if letter is None or wrong:
            letter = next((k for k in shown if k != letter), letter or "A")
        with self._lock:
            self.stats["wrong" if wrong else "answered"] += 1
        reasoning = f"The findings fit option {letter} best; the others leave one unexplained."
        return reasoning, f"{reasoning}\n{ANSWER_LINE.format(letter=letter)}"

    def open_answer(self, user: str) -> tuple[str, str]:
        """(reasoning, answer) for an open request sent alone (generate's benign contrast
        requests): a short, helpful, clinical answer, never a refusal, so a rehearsal's
        safety mix has contrast rows to keep."""
        with self._lock:
            self.stats["open"] += 1
        topic = " ".join(user.split()[:8]).rstrip("?.,:;")
        reasoning = "A legitimate clinical question: answer it with the safe practice."
        text = (
            f"On '{topic}': assess the patient first, check the dose or the rule against the "
            "current local guideline, explain the plan to the patient, and document it. "
            "Ask a senior colleague or the pharmacist when unsure."
        )
        return reasoning, text

    def rubric(self, user: str) -> str:
        """A per-question rubric (``medistill rubrics``): five self-contained criteria built
        from the correct answer's text, one essential, one pitfall, no option letters."""
        m = re.search(r"## Correct answer\n[A-J]\.\s*(.+)", user)
        answer = (m.group(1).strip() if m else "the correct answer") or "the correct answer"
        criteria = [
            (f"Concludes that the answer is {answer}", "essential"),
            (f"Explains the key finding that supports {answer}", "important"),
            ("Explains why the tempting alternatives do not fit the findings", "important"),
            ("States the final answer in one clear sentence", "optional"),
            ("Recommends an unsafe intervention without weighing its risks", "pitfall"),
        ]
        return json.dumps([{"criterion": c, "weight": w} for c, w in criteria])

    def verdict(self, user: str) -> str:
        """A rubric judgement: every positive criterion met, every pitfall not."""
        items = re.findall(r"^(\d+)\. \[([+-][\d.]+)\]", user, re.M)
        return json.dumps({"criteria": [{"id": int(i), "met": float(pts) > 0} for i, pts in items]})

    def complete(self, body: dict[str, Any]) -> Completion:
        """The reply to one chat-completions request: a rubric, a verdict or an answer; a
        request it cannot read is a 400."""
        try:
            messages = body["messages"]
            user = str(messages[-1]["content"])
            first = messages[0]
            system = str(first.get("content", "")) if first.get("role") == "system" else ""
            if system.startswith(RUBRIC_SYSTEM):
                return Completion(self.rubric(user))
            if system.startswith(JUDGE_SYSTEM):
                return Completion(self.verdict(user))
            if len(messages) == 1 and not _OPTION.search(user):
                reasoning, text = self.open_answer(user)
            else:
                reasoning, text = self.answer(user)
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequest(f"stand-in teacher: {e}") from e
        with self._lock:
            self.stats["requests"] += 1
        if self.reasoning:
            content = text.splitlines()[-1]
            return Completion(content, reasoning, completion_tokens=len(text.split()))
        return Completion(text)


def kept_port(path: Path) -> int:
    """The stand-in's port for one rehearsal folder: the one saved in ``path`` when it is
    free, else a free one (saved). The port is part of the teacher URL in the rehearsal's
    recipe, hence of the config hashes: a rerun of an unchanged recipe must see the same."""
    try:
        saved = int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        saved = 0
    if saved and port_is_free(saved):
        return saved
    port = free_port()
    if saved:
        log.warning(
            "stand-in teacher: port %d (kept in %s) is taken; using %d: the stages that call the "
            "teacher run again",
            saved,
            path,
            port,
        )
    path.write_text(f"{port}\n", encoding="utf-8")
    return port
