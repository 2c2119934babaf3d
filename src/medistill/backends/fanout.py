"""The one fan-out: many prompts through one backend, each answer handed back as it ends.

Every stage that sends many prompts to a model goes through here: ``generate`` (teacher
traces), ``rubrics``, evaluation and the LLM judges. Over HTTP (a backend with ``complete``
and ``session``: :class:`~medistill.backends.openai_http.OpenAIBackend`) ``concurrency``
workers pull from one queue; a local backend (transformers, vLLM, llama.cpp) gets the prompts
in groups that share sampling parameters, through its own streaming ``generate_each`` or in
batches of ``preferred_batch_size``. ``on_result(index, generation)`` is called as each answer
ends, so a caller stores work as it comes and a killed run loses only what was in flight.

A caller declares what one failed prompt means, its ``policy`` (no default: say it):

- ``"stop"``: the first failure raises and every other worker is cancelled (nothing else is
  worth sending after an authentication error). ``generate`` and ``rubrics``.
- ``"error_row"``: a prompt the server rejects on its own (:class:`RequestRejected`, HTTP
  400/413/422, e.g. a prompt longer than the context) comes back as a :data:`FINISH_ERROR`
  generation carrying the server's message, counted in ``backend.errors`` as
  ``rejected_<status>``, and the rest go on; if the first :data:`REJECTED_BEFORE_ANY` are all
  rejected with none answered, the run itself is wrong (model name, a refused field) and
  stops. Any other failure stops. Evaluation (:func:`generate_each`).
- ``"none"``: a prompt that still fails after the backend's retries (any
  :class:`~medistill.errors.MedistillError`) comes back as ``None``, logged under ``label``
  (scrubbed of the API key); the rest go on. The judges: unscored, never 0.

Policies govern one prompt's failure over HTTP; a local backend has no per-prompt failure, so
whatever it raises stops the run. The other knobs, all optional:

- ``spent()``: the cost cap, asked before each new call (and after each local answer); once it
  says true no new call starts and the fan-out returns ``"max_cost"`` (else ``None``).
- ``flush()``: group commit. Over HTTP it runs once per event-loop turn in which answers
  arrived (a burst of responses is written together) and once at the end; locally after every
  answer. What it raises stops the run as :class:`CommitError`.
- ``retry(prompt, generation)``: sampling parameters to ask the same prompt once more with
  (``generate``'s ``retry_truncated``), or ``None``. HTTP only: a local batch is not re-run.
- ``concurrency``: workers in flight (default: the backend's own ``concurrency``).

Progress is the caller's ``on_result``; :class:`ProgressBar` is the bar it can move (done/total,
the caller's rates and cost, ETA).

Usage::

    stopped = fan_out(backend, [Prompt(messages, params), ...], on_result, policy="stop",
                      spent=lambda: stats.cost >= cap)
    answers = generate_all(backend, prompts, policy="none")   # a list, in order
    await afan_out(backend, prompts, on_result, policy="none")  # inside a running loop
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from medistill.backends.base import (
    FINISH_ERROR,
    Generation,
    Messages,
    RequestRejected,
    SamplingParams,
)
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

#: What one failed prompt means to its caller (see the module docstring).
Policy = Literal["stop", "error_row", "none"]
POLICIES: tuple[str, ...] = ("stop", "error_row", "none")

#: How many rejected requests in a row, with none answered, mean the run itself is wrong.
REJECTED_BEFORE_ANY = 5

#: ``on_result(index, generation)``; the generation is ``None`` only under policy ``"none"``.
OnResult = Callable[[int, Any], None]


class PromptLike(Protocol):
    """What the fan-out reads from each prompt (``messages_json`` is optional: already-encoded
    messages, reused for the HTTP body)."""

    messages: Messages
    params: SamplingParams


@dataclass
class Prompt:
    """One conversation to send, with its sampling parameters."""

    messages: Messages
    params: SamplingParams
    messages_json: str | None = None


class CommitError(MedistillError):
    """The caller's ``flush`` failed (a full disk, a locked file); the cause is chained."""


class _Spent(Exception):
    """Raised from a local result callback to stop at the cost cap."""


def is_http(backend: Any) -> bool:
    """True for a backend that takes concurrent calls (``complete`` inside ``session``)."""
    return hasattr(backend, "complete") and hasattr(backend, "session")


def run_async(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def fan_out(
    backend: Any,
    prompts: Sequence[PromptLike],
    on_result: OnResult,
    *,
    policy: Policy,
    concurrency: int | None = None,
    spent: Callable[[], bool] | None = None,
    flush: Callable[[], None] | None = None,
    retry: Callable[[Any, Generation], SamplingParams | None] | None = None,
    label: str = "generation",
) -> str | None:
    """Send every prompt through ``backend``, calling ``on_result(i, generation)`` as each
    ends; ``"max_cost"`` when ``spent()`` stopped it early, else ``None``. Blocking: over HTTP
    it runs its own event loop (use :func:`afan_out` inside one)."""
    check_policy(policy)
    if is_http(backend):
        return run_async(
            afan_out(
                backend, prompts, on_result, policy=policy, concurrency=concurrency,
                spent=spent, flush=flush, retry=retry, label=label,
            )
        )  # fmt: skip
    return _local(backend, prompts, on_result, spent=spent, flush=flush)


def generate_all(
    backend: Any,
    prompts: Sequence[PromptLike],
    *,
    policy: Policy,
    concurrency: int | None = None,
    label: str = "generation",
) -> list[Any]:
    """Every prompt's generation, in order (``None`` for a failed one under ``"none"``)."""
    out: list[Any] = [None] * len(prompts)

    def keep(i: int, g: Any) -> None:
        out[i] = g

    fan_out(backend, prompts, keep, policy=policy, concurrency=concurrency, label=label)
    return out


def generate_each(
    backend: Any,
    batch: list[Messages],
    params: SamplingParams,
    on_result: Callable[[int, Generation], None],
) -> None:
    """Evaluation's fan-out: every conversation under the same ``params``, policy
    ``"error_row"`` (a rejected prompt is an error row, the others go on)."""
    fan_out(backend, [Prompt(m, params) for m in batch], on_result, policy="error_row")


def check_policy(policy: str) -> None:
    """Refuse a policy that is not one of :data:`POLICIES`."""
    if policy not in POLICIES:
        raise ValueError(f"fan-out policy {policy!r}: choose one of {', '.join(POLICIES)}")


async def afan_out(
    backend: Any,
    prompts: Sequence[PromptLike],
    on_result: OnResult,
    *,
    policy: Policy,
    concurrency: int | None = None,
    spent: Callable[[], bool] | None = None,
    flush: Callable[[], None] | None = None,
    retry: Callable[[Any, Generation], SamplingParams | None] | None = None,
    label: str = "generation",
) -> str | None:
    """:func:`fan_out` over HTTP inside a running event loop (opens the backend's session)."""
    check_policy(policy)
    if not is_http(backend):
        raise TypeError(f"afan_out needs an HTTP backend (complete/session), got {backend!r}")
    queue = iter(enumerate(prompts))
    stopped: list[str] = []
    seen: Counter[str] = Counter()
    flush_errors: list[BaseException] = []
    fatal: list[MedistillError] = []
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.Handle] = []

    def do_flush() -> None:
        scheduled.clear()
        try:
            flush()  # type: ignore[misc]
        except Exception as e:  # a full disk, a locked file: stop the run, say why
            err = CommitError(str(e))
            err.__cause__ = e
            flush_errors.append(err)

    async def call(p: Any) -> Any:
        mj = getattr(p, "messages_json", None)
        extra = {"messages_json": mj} if mj is not None else {}
        try:
            g = await backend.complete(p.messages, p.params, **extra)
            if retry is not None:
                again = retry(p, g)
                if again is not None:
                    g = await backend.complete(p.messages, again, **extra)
            seen["answered"] += 1
            return g
        except RequestRejected as e:
            if policy == "error_row":
                seen["rejected"] += 1
                backend.errors[f"rejected_{e.status}"] += 1
                if not seen["answered"] and seen["rejected"] >= REJECTED_BEFORE_ANY:
                    if not fatal:  # workers rejected in the same turn all say the same
                        fatal.append(
                            MedistillError(
                                f"the server rejected the first {seen['rejected']} requests "
                                f"and answered none, so the run stops; the last said: {e}"
                            )
                        )
                    raise fatal[0] from None
                return Generation(text="", finish_reason=FINISH_ERROR, error=str(e))
            if policy == "none":
                return _failed(backend, label, e)
            raise
        except MedistillError as e:
            if policy == "none":
                return _failed(backend, label, e)
            raise

    async def worker() -> None:
        for i, p in queue:
            if flush_errors:
                raise flush_errors[0]
            if spent is not None and spent():
                stopped.append("max_cost")
                return
            g = await call(p)
            on_result(i, g)
            if flush is not None and not scheduled:
                scheduled.append(loop.call_soon(do_flush))

    n = concurrency or getattr(backend, "concurrency", 1)
    async with backend.session():
        workers = [asyncio.create_task(worker()) for _ in range(max(1, n))]
        try:
            # Wait for all; on the first exception stop the rest at once.
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in done if not t.cancelled() and t.exception()), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
        finally:
            for t in workers:
                t.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if scheduled:
                scheduled[0].cancel()
                do_flush()
    if flush_errors:
        raise flush_errors[0]
    return stopped[0] if stopped else None


class ProgressBar:
    """A rich progress bar: ``label``, done/total, (elapsed,) ETA and the caller's info text
    (rates, cost, retried errors); a no-op when not ``enabled`` (no terminal). Generation and
    evaluation both show theirs with it."""

    def __init__(
        self,
        label: str,
        enabled: bool,
        total: int,
        completed: int = 0,
        *,
        elapsed: bool = False,
        console: Any = None,
    ) -> None:
        self.label, self.enabled, self.total, self.completed = label, enabled, total, completed
        self.elapsed, self.console = elapsed, console
        self._p: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                *([TimeElapsedColumn()] if self.elapsed else []),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            )
            self._p.__enter__()
            self._task = self._p.add_task(
                self.label, total=self.total, completed=self.completed, info=""
            )
        return self

    def advance(self, info: Callable[[], str] | str = "", n: int = 1) -> None:
        """``n`` more done; ``info`` (text, or a function giving it, called only when shown)."""
        if self._p is not None:
            text = info() if callable(info) else info
            self._p.update(self._task, advance=n, info=text)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


def _failed(backend: Any, label: str, e: Exception) -> None:
    scrub = getattr(backend, "scrub", None)
    log.warning("%s: %s", label, scrub(str(e)) if scrub else e)
    return None


def _local(
    backend: Any,
    prompts: Sequence[PromptLike],
    on_result: OnResult,
    *,
    spent: Callable[[], bool] | None,
    flush: Callable[[], None] | None,
) -> str | None:
    """Local models: prompts sharing sampling parameters go through the backend together
    (continuous batching for transformers), groups in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(str(p.params.to_dict()), []).append(i)
    for idx in groups.values():
        if spent is not None and spent():
            return "max_cost"

        def each(j: int, g: Generation, idx: list[int] = idx) -> None:
            on_result(idx[j], g)
            if flush is not None:
                try:
                    flush()
                except Exception as e:
                    raise CommitError(str(e)) from e
            if spent is not None and spent():
                raise _Spent

        try:
            _each(backend, [prompts[i].messages for i in idx], prompts[idx[0]].params, each)
        except _Spent:
            return "max_cost"
    return None


def _each(
    backend: Any,
    batch: list[Messages],
    params: SamplingParams,
    on_result: Callable[[int, Generation], None],
) -> None:
    """A backend's own streaming ``generate_each`` when it has one, else its ``generate`` in
    batches of ``preferred_batch_size``."""
    own = getattr(backend, "generate_each", None)
    if own is not None:
        own(batch, params, on_result)
        return
    step = backend.preferred_batch_size()
    for start in range(0, len(batch), step):
        for j, gen in enumerate(backend.generate(batch[start : start + step], params)):
            on_result(start + j, gen)


__all__ = [
    "POLICIES",
    "REJECTED_BEFORE_ANY",
    "CommitError",
    "Policy",
    "ProgressBar",
    "Prompt",
    "PromptLike",
    "RequestRejected",
    "afan_out",
    "check_policy",
    "fan_out",
    "generate_all",
    "generate_each",
    "is_http",
    "run_async",
]
