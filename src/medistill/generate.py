"""Stage 1: teacher traces -> the durable trace store.

``run_generate`` builds one request per (question, sample index), skips every key already in
the store, and runs the rest through the teacher backend: concurrently over HTTP (bounded,
paced, retried) or in batches for local models. Each finished call is committed on arrival, so
a killed run resumes where it stopped and no finished call is ever paid for twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from medistill.backends import SamplingParams, generate_each
from medistill.backends.base import Generation
from medistill.data import LETTERS, Question, get_spec, load_benchmark, sample_questions
from medistill.data.sampling import STRATA
from medistill.errors import MedistillError
from medistill.prompts import get_template
from medistill.store import TraceRecord, TraceStore, trace_key
from medistill.teacher import TeacherConfig

log = logging.getLogger(__name__)


@dataclass
class SampleConfig:
    """A seeded sample of a source's questions (``sample: {n: 10000, stratify: subject}``)."""

    n: int = field(metadata={"help": "questions to draw (exactly; more than read is an error)"})
    seed: int = field(default=0, metadata={"help": "sampling seed: same seed, same questions"})
    stratify: str | None = field(
        default=None,
        metadata={
            "help": "subject: allocate n across subjects in proportion (largest remainder, "
            "at least one each where n allows); none: a plain random sample"
        },
    )

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.stratify is not None and self.stratify not in STRATA:
            raise ValueError(
                f"stratify {self.stratify!r}: choose one of {', '.join(STRATA)} (or leave it out)"
            )


@dataclass
class SourceConfig:
    """One benchmark's questions for the teacher: which split, from where, how many."""

    benchmark: str = field(metadata={"help": "registered benchmark, e.g. medqa or medmcqa"})
    split: str | None = field(default=None, metadata={"help": "split, e.g. train"})
    path: str | None = field(default=None, metadata={"help": "that split's local file"})
    limit: int | None = field(default=None, metadata={"help": "first N questions read"})
    sample: SampleConfig | None = field(
        default=None, metadata={"help": "a seeded sample of the questions read (after limit)"}
    )

    def __post_init__(self) -> None:
        try:
            get_spec(self.benchmark)
        except MedistillError as e:
            raise ValueError(str(e)) from None

    def label(self) -> str:
        """``medmcqa train`` (the benchmark's own split when none is named)."""
        return f"{self.benchmark} {self.split or get_spec(self.benchmark).split}"


#: The single-source keys ``sources`` replaces (a recipe gives one or the other).
SINGLE_SOURCE_KEYS = ("benchmark", "split", "path", "limit")


@dataclass
class GenerateConfig:
    """Everything ``medistill generate`` needs (also the ``generate:`` section of a recipe)."""

    teacher: TeacherConfig = field(
        metadata={"help": "who writes the traces", "from_string": TeacherConfig.spec_values}
    )
    benchmark: str | None = field(
        default=None,
        metadata={
            "help": "registered benchmark, one source (none: the embedded sample; several: a "
            "recipe's sources)"
        },
    )
    path: str | None = field(default=None, metadata={"help": "local questions file"})
    split: str | None = field(
        default=None,
        metadata={"help": "split to load/label, e.g. train; none: the benchmark's"},
    )
    limit: int | None = field(default=None, metadata={"help": "first N questions"})
    sources: list[SourceConfig] | None = field(
        default=None,
        metadata={
            "help": "several benchmarks into one store (recipe only): a list of {benchmark, "
            "split, path, limit, sample: {n, seed, stratify}}; replaces benchmark/split/path/"
            "limit"
        },
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "skip bad question rows (counted) instead of failing"}
    )
    samples: int = field(default=1, metadata={"help": "traces per question (k)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: top-p mass"})
    max_tokens: int = field(default=4096, metadata={"help": "completion token budget"})
    seed: int = field(default=0, metadata={"help": "base seed; sample i uses seed + i"})
    shuffle_options: bool = field(default=False, metadata={"help": "shuffle options per sample"})
    template: str = field(default="cot", metadata={"help": "prompt template name or YAML"})
    out: str = field(default="runs/traces.db", metadata={"help": "SQLite trace store"})
    max_requests: int | None = field(default=None, metadata={"help": "stop after N new calls"})
    max_cost: float | None = field(default=None, metadata={"help": "stop at this est. cost"})
    retry_truncated: bool = field(
        default=False, metadata={"help": "retry a cut-off call once with twice the budget"}
    )
    rationalize: bool = field(
        default=False,
        metadata={
            "help": "STaR rationalisation: show the teacher the correct answer (and the "
            "question's reference explanation) and ask for the reasoning that reaches it; the "
            "student's prompt never contains it, and curation's leaked_gold filter drops traces "
            "that cite the key"
        },
    )

    def __post_init__(self) -> None:
        if self.sources is None:
            return
        given = [k for k in SINGLE_SOURCE_KEYS if getattr(self, k) is not None]
        if given:
            raise ValueError(
                f"sources and {given[0]} are both set: with sources, give each source's "
                f"{'/'.join(SINGLE_SOURCE_KEYS)} inside its entry"
            )
        if not self.sources:
            raise ValueError("sources is empty: list at least one {benchmark: ...}")
        first: dict[str, int] = {}
        for i, src in enumerate(self.sources):
            if src.benchmark in first:
                raise ValueError(
                    f"sources[{first[src.benchmark]}] and sources[{i}] both read "
                    f"{src.benchmark}: one source per benchmark (a store tells questions apart "
                    "by benchmark and id)"
                )
            first[src.benchmark] = i

    def resolved_sources(self) -> list[SourceConfig]:
        """The sources to read: ``sources``, or the single one ``benchmark``/``split``/``path``/
        ``limit`` name (the embedded sample when nothing is named)."""
        if self.sources is not None:
            return list(self.sources)
        return [SourceConfig(self.benchmark or "sample", self.split, self.path, self.limit)]


@dataclass
class Request:
    """One teacher call to make: the question as shown and its store key."""

    key: str
    question: Question
    sample_index: int
    messages: list[dict[str, str]]
    params: SamplingParams
    options: dict[str, str]
    gold: str | None
    permutation: dict[str, str] | None
    params_dict: dict[str, Any] = field(default_factory=dict)
    messages_json: str = ""  # encoded once here, reused for the HTTP body and the store
    source_file: str | None = None  # the file the question was read from (or its Hub copy)


def shuffle_question(q: Question, seed: int, sample_index: int) -> tuple[Question, dict[str, str]]:
    """A copy of ``q`` with options permuted (deterministically per question and sample).

    Returns the shown question (gold remapped) and ``shown letter -> original letter``, which
    curation uses to undo the shuffle. Counters the teacher's position bias.
    """
    rng = random.Random(f"{seed}:{q.id}:{sample_index}")
    original = list(q.options)
    order = original[:]
    rng.shuffle(order)
    perm = {LETTERS[i]: orig for i, orig in enumerate(order)}
    options = {shown: q.options[orig] for shown, orig in perm.items()}
    gold = next((s for s, o in perm.items() if o == q.gold), None) if q.gold else None
    shown = Question(
        id=q.id,
        source=q.source,
        split=q.split,
        question=q.question,
        options=options,
        gold=gold,
        subject=q.subject,
        meta=q.meta,
    )
    return shown, perm


def build_requests(
    questions: list[Question], cfg: GenerateConfig, *, source_file: str | None = None
) -> list[Request]:
    """One request per (question, sample index), keyed for the store; ``source_file`` is the
    file the questions were read from (recorded with each trace)."""
    tpl = get_template(cfg.template)
    out = []
    for q in questions:
        for k in range(cfg.samples):
            shown, perm = shuffle_question(q, cfg.seed, k) if cfg.shuffle_options else (q, None)
            if cfg.rationalize and shown.gold:
                messages = tpl.rationalize(shown)
            else:
                messages = tpl.messages(shown)
            params = SamplingParams(
                max_new_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                seed=cfg.seed + k,
            )
            pdict = params.to_dict()
            key = trace_key(cfg.teacher.model, messages, pdict, k)
            out.append(
                Request(
                    key,
                    q,
                    k,
                    messages,
                    params,
                    shown.options,
                    shown.gold,
                    perm,
                    pdict,
                    json.dumps(messages, ensure_ascii=False),
                    source_file,
                )
            )
    return out


class _Stats:
    """Live counters for the progress bar and the final summary."""

    def __init__(self, teacher: TeacherConfig) -> None:
        self.teacher = teacher
        self.t0 = time.perf_counter()
        self.calls = self.prompt_tokens = self.completion_tokens = self.truncated = 0
        self.retried_truncated = 0
        self.calls_wall_s = 0.0
        self.errors: Counter[str] = Counter()

    def add(self, g: Generation) -> None:
        self.calls += 1
        self.prompt_tokens += g.prompt_tokens or 0
        self.completion_tokens += g.output_tokens or 0
        self.truncated += g.truncated

    @property
    def cost(self) -> float:
        return self.teacher.cost(self.prompt_tokens, self.completion_tokens)

    def line(self, backend_errors: Counter[str] | None = None) -> str:
        """The progress-bar text: rates, cost so far, errors by kind (retried ones included)."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        errors = self.errors + (backend_errors or Counter())
        errs = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
        return (
            f"{self.calls / dt:.1f} req/s, {self.completion_tokens / dt:.0f} tok/s, "
            f"${self.cost:.4f}, errors: {errs}"
        )


def _record(req: Request, g: Generation, teacher: str, scrub) -> TraceRecord:
    return TraceRecord(
        key=req.key,
        question_id=req.question.id,
        sample_index=req.sample_index,
        teacher=teacher,
        messages=req.messages_json or req.messages,
        params=req.params_dict,
        text=g.text,
        finish_reason=g.finish_reason,
        source=req.question.source,
        question=req.question.question,
        options=req.options,
        gold=req.gold,
        permutation=req.permutation,
        subject=req.question.subject,
        split=req.question.split or None,
        source_file=req.source_file,
        reasoning=g.reasoning,
        prompt_tokens=g.prompt_tokens,
        completion_tokens=g.output_tokens,
        latency_s=g.latency_s,
        endpoint=scrub(g.endpoint) if g.endpoint else None,
        attempts=g.attempts,
    )


def run_generate(cfg: GenerateConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Generate traces into ``cfg.out``; return (and log) the run summary."""
    if cfg.samples < 1:
        raise MedistillError("--samples must be at least 1")
    requests, sources = _source_requests(cfg)
    with TraceStore(cfg.out) as store:
        done = store.done_keys()
        pending = [r for r in requests if r.key not in done]
        already = len(requests) - len(pending)
        for info in sources:
            keys = info.pop("_keys")
            info["wanted"], info["already_stored"] = len(keys), len(keys & done)
        stopped = None
        if cfg.max_requests is not None and len(pending) > cfg.max_requests:
            pending, stopped = pending[: cfg.max_requests], "max_requests"
        stats = _Stats(cfg.teacher)
        log.info(
            "%s: %d calls wanted, %d already stored, %d to make",
            cfg.out,
            len(requests),
            already,
            len(pending),
        )
        if pending:
            # Closed on the way out: a local (vLLM) teacher's engine gives its GPU memory
            # back before the next stage starts.
            with cfg.teacher.open() as backend:
                check = getattr(backend, "check_endpoints", None)
                if check is not None:
                    check()  # a wrong URL fails in seconds, not after every retry
                t_calls = time.perf_counter()
                with _Progress(show_progress, len(requests), already) as bar:
                    if cfg.teacher.backend == "openai":
                        run = _run_async(_run_http(backend, pending, store, cfg, stats, bar))
                    else:
                        run = _run_local(backend, pending, store, cfg, stats, bar)
                stopped = run or stopped
                stats.calls_wall_s = time.perf_counter() - t_calls
                stats.errors.update(getattr(backend, "errors", {}))
        totals = store.totals()
    summary = {
        "store": str(cfg.out),
        "teacher": cfg.teacher.model,
        "wanted": len(requests),
        "already_stored": already,
        "new_calls": stats.calls,
        "stopped_by": stopped,
        "truncated_new": stats.truncated,
        "retried_truncated": stats.retried_truncated,
        "errors": dict(stats.errors),
        "prompt_tokens_new": stats.prompt_tokens,
        "completion_tokens_new": stats.completion_tokens,
        "estimated_cost_new": round(stats.cost, 6),
        "estimated_cost_total": round(
            cfg.teacher.cost(totals["prompt_tokens"], totals["completion_tokens"]), 6
        ),
        "wall_s": round(time.perf_counter() - stats.t0, 3),
        "calls_wall_s": round(stats.calls_wall_s, 3),
        "requests_per_s": round(stats.calls / stats.calls_wall_s, 2)
        if stats.calls_wall_s
        else None,
        "store_totals": totals,
        "sources": sources,
        "config": {k: v for k, v in asdict(cfg).items() if k != "teacher"},
    }
    log.info("generation summary: %s", {k: v for k, v in summary.items() if k != "config"})
    return summary


def _source_requests(cfg: GenerateConfig) -> tuple[list[Request], list[dict[str, Any]]]:
    """Every source's requests, in source order, and what was read from each: benchmark,
    split, the file really read, questions read and kept by the sample. A call two sources
    share (the same question text, options and settings) is made once, for the first."""
    requests: list[Request] = []
    seen: set[str] = set()
    sources: list[dict[str, Any]] = []
    several = cfg.sources is not None
    for i, src in enumerate(cfg.resolved_sources()):
        where = f"sources[{i}] ({src.label()})" if several else src.label()
        extra = {"split": src.split} if src.split else {}
        data = load_benchmark(
            src.benchmark, src.path, skip_invalid=cfg.skip_invalid, limit=src.limit, **extra
        )
        questions = data.questions
        if src.sample is not None:
            try:
                questions = sample_questions(
                    questions, src.sample.n, seed=src.sample.seed, stratify=src.sample.stratify
                )
            except MedistillError as e:
                raise MedistillError(f"{where}: sample: {e}") from None
        file = data.report.source_file or data.report.path
        shared = 0
        keys: set[str] = set()
        for r in build_requests(questions, cfg, source_file=file):
            keys.add(r.key)
            if r.key in seen:
                shared += 1
                continue
            seen.add(r.key)
            requests.append(r)
        sources.append(
            {
                "_keys": keys,
                "benchmark": src.benchmark,
                "source": questions[0].source if questions else src.benchmark,
                "split": data.report.split or (questions[0].split if questions else None),
                "file": file,
                "questions_read": len(data.questions),
                "questions": len(questions),
                "sample": asdict(src.sample) if src.sample is not None else None,
                "calls_shared_with_an_earlier_source": shared,
            }
        )
        log.info(
            "%s: %d questions from %s%s",
            where,
            len(questions),
            file,
            f" (a sample of {len(data.questions)})" if src.sample is not None else "",
        )
    return requests, sources


def _run_async(coro):
    """Run a coroutine on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _run_http(
    backend, pending: list[Request], store: TraceStore, cfg: GenerateConfig, stats: _Stats, bar
) -> str | None:
    """Run requests with ``concurrency`` workers pulling from one queue; commit each call as
    it finishes. The first hard failure (auth, 400, retries exhausted) cancels every worker."""
    queue = iter(pending)
    stopped: list[str] = []
    # Group commit: calls finishing in the same event-loop iteration (a burst of responses)
    # are committed together at the end of that iteration, before anything else is awaited.
    buffer: list[TraceRecord] = []
    loop = asyncio.get_running_loop()

    flush_errors: list[BaseException] = []

    def flush() -> None:
        rows, buffer[:] = buffer[:], []
        try:
            store.put_many(rows)
        except Exception as e:  # a full disk, a locked file: stop the run, say why
            flush_errors.append(e)

    def commit(rec: TraceRecord) -> None:
        if not buffer:
            loop.call_soon(flush)
        buffer.append(rec)

    async def worker() -> None:
        for req in queue:
            if flush_errors:
                raise flush_errors[0]
            if cfg.max_cost is not None and stats.cost >= cfg.max_cost:
                stopped.append("max_cost")
                return
            g = await backend.complete(req.messages, req.params, messages_json=req.messages_json)
            if g.truncated and cfg.retry_truncated:
                bigger = SamplingParams(
                    **{**req.params_dict, "max_new_tokens": 2 * req.params.max_new_tokens}
                )
                stats.retried_truncated += 1
                g = await backend.complete(req.messages, bigger, messages_json=req.messages_json)
            commit(_record(req, g, cfg.teacher.model, backend.scrub))
            stats.add(g)
            bar.advance(stats, backend)

    async with backend.session():
        workers = [asyncio.create_task(worker()) for _ in range(cfg.teacher.concurrency)]
        try:
            # Wait for all; on the first exception stop the rest at once (nothing else is
            # worth sending after an authentication error).
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in done if not t.cancelled() and t.exception()), None)
            if failed is not None:
                raise failed.exception()
        finally:
            for t in workers:
                t.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if buffer:
                flush()
    if flush_errors:
        raise MedistillError(f"{cfg.out}: could not write to the trace store ({flush_errors[0]})")
    return stopped[0] if stopped else None


def _run_local(
    backend, pending: list[Request], store: TraceStore, cfg: GenerateConfig, stats: _Stats, bar
) -> str | None:
    """Local models: requests sharing sampling parameters go through the backend together
    (continuous batching for transformers), each trace stored as soon as it ends."""
    by_params: dict[str, list[Request]] = {}
    for r in pending:
        by_params.setdefault(str(r.params.to_dict()), []).append(r)
    for group in by_params.values():
        if cfg.max_cost is not None and stats.cost >= cfg.max_cost:
            return "max_cost"

        def on_result(i: int, g, group: list[Request] = group) -> None:
            store.put(_record(group[i], g, cfg.teacher.model, lambda s: s))
            stats.add(g)
            bar.advance(stats, backend)
            if cfg.max_cost is not None and stats.cost >= cfg.max_cost:
                raise _BudgetSpent

        try:
            generate_each(backend, [r.messages for r in group], group[0].params, on_result)
        except _BudgetSpent:
            return "max_cost"
    return None


class _BudgetSpent(Exception):
    """Raised from a result callback to stop local generation at ``max_cost``."""


class _Progress:
    """Rich progress: done/total, requests/s, tokens/s, cost, errors by kind, ETA."""

    def __init__(self, enabled: bool, total: int, completed: int) -> None:
        self.enabled, self.total, self.completed = enabled, total, completed
        self._p = None
        self._task = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]generate"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._p.__enter__()
            self._task = self._p.add_task(
                "gen", total=self.total, completed=self.completed, info=""
            )
        return self

    def advance(self, stats: _Stats, backend: Any) -> None:
        """One call finished: move the bar and refresh the rates."""
        if self._p is not None:
            info = stats.line(Counter(getattr(backend, "errors", {})))
            self._p.update(self._task, advance=1, info=info)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


__all__ = [
    "GenerateConfig",
    "Request",
    "SampleConfig",
    "SourceConfig",
    "build_requests",
    "run_generate",
    "shuffle_question",
]
