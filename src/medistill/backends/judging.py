"""One cached LLM judge: the machinery under the rubric reward and the safety judge.

A judge sends one chat request per item to an OpenAI-compatible endpoint (a
:class:`~medistill.backends.config.BackendConfig`) and reads a score from each reply. What is
shared lives here, written once:

- the **cache key**: the SHA-256 of a JSON list of what decides the verdict (:func:`cache_key`);
- the **cache**: scores by key in memory and, given a path, in one SQLite table
  (:class:`JudgeCache`; each judge keeps its own table layout, so files written before
  still read);
- **identical items judged once** and cached scores never asked again (:meth:`CachedJudge.judge`);
- **failures counted**: HTTP failures (after the backend's retries) and unreadable verdicts by
  kind, each logged; a failure is ``None``, never stored, so the next occurrence asks again;
- **concurrency**: the requests go through the one fan-out (:mod:`medistill.backends.fanout`)
  with its ``"none"`` policy, at most ``concurrency`` in flight (the backend config's).

What is not shared stays with each judge: its prompt (``messages``) and how it reads a reply
(``read``, which returns a :class:`Verdict`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medistill.backends.base import Generation, SamplingParams
from medistill.backends.config import BackendConfig, close_backend
from medistill.backends.fanout import Prompt, afan_out
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


def cache_key(parts: Sequence[Any], *, ensure_ascii: bool = True) -> str:
    """The cache key of a judgement: SHA-256 (hex) of the JSON list of ``parts``.

    >>> cache_key(["model", "prompt"])[:12]
    '10a1d9b4ddef'
    """
    blob = json.dumps(list(parts), ensure_ascii=ensure_ascii)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheLayout:
    """A judge's SQLite table: ``key TEXT PRIMARY KEY``, the score (``score_type``), then
    ``extra_columns`` (e.g. ``"verdict TEXT"``) filled from :attr:`Verdict.stored`.
    ``label`` names the cache in errors."""

    table: str
    score_type: str = "REAL"
    extra_columns: tuple[str, ...] = ()
    label: str = "judge cache"

    def create_sql(self) -> str:
        score = f"score {self.score_type}"
        columns = ", ".join(("key TEXT PRIMARY KEY", score, *self.extra_columns))
        return f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})"


class JudgeCache:
    """Scores by key, in memory and (with ``path``) in SQLite; safe to share across threads."""

    def __init__(self, path: str | Path | None, layout: CacheLayout) -> None:
        self.layout = layout
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path:
            try:
                self._db = sqlite3.connect(str(path), check_same_thread=False)
                self._db.execute(layout.create_sql())
                self._db.commit()
            except sqlite3.Error as e:
                raise MedistillError(f"{layout.label} {path}: {e}") from None

    def get(self, key: str) -> Any:
        """The stored score, or ``None``."""
        with self._lock:
            if key not in self._memory and self._db is not None:
                sql = f"SELECT score FROM {self.layout.table} WHERE key = ?"
                row = self._db.execute(sql, (key,)).fetchone()
                if row:
                    self._memory[key] = row[0]
            return self._memory.get(key)

    def put(self, key: str, score: Any, stored: Sequence[Any] = ()) -> None:
        """Store a score (and the layout's extra columns)."""
        with self._lock:
            self._memory[key] = score
            if self._db is not None:
                marks = ", ".join("?" * (2 + len(stored)))
                sql = f"INSERT OR REPLACE INTO {self.layout.table} VALUES ({marks})"
                self._db.execute(sql, (key, score, *stored))
                self._db.commit()

    def close(self) -> None:
        """Close the SQLite file (the memory layer stays)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


@dataclass(frozen=True)
class Verdict:
    """What a judge read from one reply: the ``score``, or ``None`` with ``problem`` (the kind
    of unreadable verdict, counted); ``stored``: the cache layout's extra column values."""

    score: Any = None
    problem: str | None = None
    stored: tuple[Any, ...] = ()


class CachedJudge:
    """Asks an LLM judge about items, once per distinct key, through a :class:`JudgeCache`.

    ``name`` prefixes the log lines (``"rubric judge"``); ``build_kwargs`` go to
    :meth:`BackendConfig.build`. Over the judge's life, :attr:`requests` counts the requests
    sent, :attr:`http_failures` those that failed after retries and :attr:`invalid` the
    unreadable verdicts by kind.
    """

    def __init__(
        self,
        backend_config: BackendConfig,
        cache: JudgeCache,
        *,
        name: str,
        max_tokens: int,
        build_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.backend_config, self.cache, self.name = backend_config, cache, name
        self.max_tokens = max_tokens
        self.build_kwargs = dict(build_kwargs or {})
        self.requests = 0
        self.http_failures = 0
        self.invalid: Counter[str] = Counter()

    @property
    def model(self) -> str:
        return self.backend_config.model

    async def judge(
        self,
        keys: Sequence[str | None],
        messages: Callable[[int], Messages],
        read: Callable[[int, str], Verdict],
        *,
        invalid: Counter[str] | None = None,
    ) -> list[Any]:
        """One score per item (``keys[i]`` its cache key; ``None``: not judged, ``None`` out).

        Cached scores are returned as they are; each other distinct key is asked once, with
        ``messages(i)`` of its first item ``i``, and the reply read by ``read(i, text)``; a
        score is stored and given to every item with that key. An HTTP failure or an
        unreadable verdict gives ``None`` (counted and logged; unreadable ones also in
        ``invalid``, this call's count)."""
        out: list[Any] = [None] * len(keys)
        todo: dict[str, list[int]] = {}  # identical items are judged once
        for i, key in enumerate(keys):
            if key is None:
                continue
            out[i] = self.cache.get(key)
            if out[i] is None:
                todo.setdefault(key, []).append(i)
        if not todo:
            return out
        firsts = [idx[0] for idx in todo.values()]
        replies = await self.ask([messages(i) for i in firsts])
        for (key, idx), first, text in zip(todo.items(), firsts, replies, strict=True):
            if text is None:
                continue
            verdict = read(first, text)
            if verdict.score is None:
                kind = verdict.problem or "unreadable"
                self.invalid[kind] += 1
                if invalid is not None:
                    invalid[kind] += 1
                log.warning(
                    "%s %s: unparsable verdict (%s; %d so far) %r",
                    self.name, self.model, kind, sum(self.invalid.values()), text[:200],
                )  # fmt: skip
                continue
            self.cache.put(key, verdict.score, verdict.stored)
            for i in idx:
                out[i] = verdict.score
        return out

    async def ask(self, requests: Sequence[Messages]) -> list[str | None]:
        """The judge's reply text to each request, through the one fan-out with policy
        ``"none"`` (at most ``concurrency`` in flight); ``None`` where the request failed
        after the backend's retries (logged by the fan-out, with the API key scrubbed)."""
        backend = self.backend_config.build(**self.build_kwargs)
        params = SamplingParams(max_new_tokens=self.max_tokens, temperature=0.0, seed=0)
        out: list[str | None] = [None] * len(requests)

        def keep(i: int, gen: Generation | None) -> None:
            self.requests += 1
            if gen is None:  # HTTP failure after retries: unscored, not 0
                self.http_failures += 1
            else:
                out[i] = gen.text  # the verdict, not a reasoning judge's thinking

        try:
            await afan_out(
                backend,
                [Prompt(m, params) for m in requests],
                keep,
                policy="none",
                concurrency=self.backend_config.concurrency,
                label=f"{self.name} {self.model}",
            )
        finally:
            close_backend(backend)
        return out

    def close(self) -> None:
        """Close the cache file."""
        self.cache.close()


__all__ = ["CacheLayout", "CachedJudge", "JudgeCache", "Verdict", "cache_key"]
