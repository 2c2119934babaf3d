"""The one generation interface behind which every backend sits.

``evaluate`` (the student), ``generate`` (the teacher) and an LLM judge all call
:meth:`Backend.generate` with chat messages and :class:`SamplingParams`, and get back one
:class:`Generation` per request, with the finish reason and token counts that truncation
and cost accounting need.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from medistill.errors import MedistillError

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
#: A degenerate repetition loop stopped early (local continuous batching): cut off too.
FINISH_REPETITION = "repetition"
#: Finish reasons of an answer that did not end on its own.
CUT_OFF = (FINISH_LENGTH, FINISH_REPETITION)
#: The request failed for this question alone (e.g. its prompt exceeds the server's context):
#: an error row, counted and reported, never scored as a wrong answer.
FINISH_ERROR = "error"


@dataclass
class SamplingParams:
    """Decoding settings. Greedy (``temperature=0``) by default for evaluation.

    ``max_new_tokens`` defaults high enough for reasoning models: a cut-off answer is a
    truncation, not a wrong answer, and is counted separately.
    """

    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    n: int = 1
    #: Sample from the ``top_k`` most likely tokens only; ``None``: no such cut (greedy
    #: decoding ignores it). Qwen3's thinking mode asks for 20.
    top_k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form for run configs and store keys (``top_k`` only when set, so a
        key written before it existed still matches)."""
        d = asdict(self)
        if d["top_k"] is None:
            del d["top_k"]
        return d


@dataclass
class Generation:
    """One finished completion.

    Attributes:
        text: the answer text (for reasoning models, what follows the reasoning).
        reasoning: separate reasoning (``reasoning_content`` / ``<think>``), if any.
        finish_reason: ``stop``, ``length`` (hit ``max_new_tokens``: truncated),
            ``repetition`` (a degenerate loop stopped early: truncated too) or ``error``.
        prompt_tokens / output_tokens: token counts, when the backend knows them.
        latency_s: seconds this answer took (for batched backends, the batch time divided
            by the batch size: the amortised cost per answer).
        endpoint: which server answered (HTTP backends).
        attempts: how many tries the call took (HTTP retries).
        error: why the request failed, when ``finish_reason`` is ``error``.
    """

    text: str
    finish_reason: str
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    latency_s: float | None = None
    reasoning: str | None = None
    endpoint: str | None = None
    attempts: int = 1
    error: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the answer did not end on its own (token limit, or a stopped loop)."""
        return self.finish_reason in CUT_OFF

    def full_text(self) -> str:
        """Reasoning and answer as one text, with the reasoning in a ``<think>`` block."""
        if self.reasoning:
            return f"<think>\n{self.reasoning}\n</think>\n{self.text}"
        return self.text


Messages = list[dict[str, str]]


class RequestRejected(MedistillError):
    """The server refused one request (HTTP 400/413/422): a property of that request, not of
    the run (the fan-out's policy says what becomes of it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    """What every backend provides."""

    name: str
    model: str

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per message list, in order."""
        ...

    def preferred_batch_size(self) -> int:
        """How many requests to hand over at once (the eval loop checkpoints per batch)."""
        ...

    def close(self) -> None:
        """Free what the backend holds (a local model's GPU memory, a vLLM engine); a no-op
        where there is nothing to free. The backend is not used afterwards."""
        ...
