"""The one fan-out: each caller's declared failure policy, the cost cap, group commit, retry,
and local batches, against in-process fake backends (the HTTP path end to end is covered by
test_generate, test_rubrics and test_eval_http)."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager

import pytest

from medistill.backends import FINISH_ERROR, Generation, RequestRejected, SamplingParams
from medistill.backends.fanout import (
    REJECTED_BEFORE_ANY,
    CommitError,
    Prompt,
    fan_out,
    generate_all,
    generate_each,
)
from medistill.errors import MedistillError


class FakeHTTP:
    """Answers ``complete`` with the prompt's text; ``bad`` texts fail with ``fail``."""

    def __init__(self, bad=(), fail=None, concurrency=3) -> None:
        self.bad, self.fail, self.concurrency = set(bad), fail, concurrency
        self.errors: Counter[str] = Counter()
        self.calls: list[tuple[str, int]] = []
        self.in_flight = self.peak = 0

    @asynccontextmanager
    async def session(self):
        yield self

    def scrub(self, text: str) -> str:
        return text.replace("sk-secret", "***")

    async def complete(self, messages, params, **_):
        text = messages[-1]["content"]
        self.calls.append((text, params.max_new_tokens))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if text in self.bad:
            raise self.fail(text)
        return Generation(text=text.upper(), finish_reason="stop", output_tokens=1)


class FakeLocal:
    """A batch backend: ``generate`` only, in batches of 2."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[str], float]] = []

    def preferred_batch_size(self) -> int:
        return 2

    def generate(self, batch, params):
        self.batches.append(([m[-1]["content"] for m in batch], params.temperature))
        return [Generation(text=m[-1]["content"].upper(), finish_reason="stop") for m in batch]


def prompts(*texts: str, params: SamplingParams | None = None) -> list[Prompt]:
    return [Prompt([{"role": "user", "content": t}], params or SamplingParams()) for t in texts]


def test_policy_stop_raises_the_first_failure() -> None:
    backend = FakeHTTP(bad={"b"}, fail=lambda t: MedistillError(f"{t} failed"))
    with pytest.raises(MedistillError, match="b failed"):
        fan_out(backend, prompts("a", "b", "c"), lambda i, g: None, policy="stop")


def test_policy_none_gives_none_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeHTTP(bad={"b"}, fail=lambda t: MedistillError("key sk-secret refused"))
    out = generate_all(backend, prompts("a", "b", "c"), policy="none")
    assert [g.text if g else None for g in out] == ["A", None, "C"]
    assert "***" in caplog.text and "sk-secret" not in caplog.text


def test_policy_error_row_for_rejected_prompts_only() -> None:
    backend = FakeHTTP(bad={"b"}, fail=lambda t: RequestRejected("too long", 400))
    got: dict[int, Generation] = {}
    generate_each(
        backend, [p.messages for p in prompts("a", "b", "c")], SamplingParams(), got.__setitem__
    )
    assert got[1].finish_reason == FINISH_ERROR and got[1].error == "too long"
    assert got[0].text == "A" and got[2].text == "C"
    assert backend.errors == Counter({"rejected_400": 1})
    # another failure still stops under error_row
    other = FakeHTTP(bad={"b"}, fail=lambda t: MedistillError("auth"))
    with pytest.raises(MedistillError, match="auth"):
        fan_out(other, prompts("a", "b"), lambda i, g: None, policy="error_row")


def test_error_row_stops_when_every_first_prompt_is_rejected() -> None:
    texts = [f"q{i}" for i in range(REJECTED_BEFORE_ANY + 3)]
    backend = FakeHTTP(bad=set(texts), fail=lambda t: RequestRejected("model not found", 400))
    with pytest.raises(MedistillError, match=f"first {REJECTED_BEFORE_ANY} requests"):
        fan_out(backend, prompts(*texts), lambda i, g: None, policy="error_row")


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of stop, error_row, none"):
        fan_out(FakeHTTP(), prompts("a"), lambda i, g: None, policy="retry")  # type: ignore[arg-type]


def test_cost_cap_concurrency_group_commit_and_retry() -> None:
    backend = FakeHTTP(concurrency=2)
    seen: list[int] = []
    committed: list[list[int]] = []
    buffer: list[int] = []

    def on_result(i: int, g: Generation) -> None:
        seen.append(i)
        buffer.append(i)

    def flush() -> None:
        committed.append(buffer[:])
        buffer.clear()

    stopped = fan_out(
        backend, prompts(*"abcdefgh"), on_result, policy="stop",
        spent=lambda: len(seen) >= 4, flush=flush,
        retry=lambda p, g: SamplingParams(max_new_tokens=9) if g.text == "A" else None,
    )  # fmt: skip
    assert stopped == "max_cost"
    assert 4 <= len(seen) < 8 and backend.peak <= 2
    assert sorted(i for rows in committed for i in rows) == sorted(seen)  # all committed
    assert ("a", 9) in backend.calls  # asked again with the retry's parameters


def test_commit_failure_stops_the_run() -> None:
    def flush() -> None:
        raise OSError("disk full")

    with pytest.raises(CommitError, match="disk full"):
        fan_out(FakeHTTP(), prompts(*"abcdef"), lambda i, g: None, policy="stop", flush=flush)


def test_local_batches_group_by_params_in_first_seen_order() -> None:
    backend = FakeLocal()
    hot, cold = SamplingParams(temperature=0.7), SamplingParams(temperature=0.0)
    ps = [
        *prompts("a", "b", params=hot),
        *prompts("c", params=cold),
        *prompts("d", "e", params=hot),
    ]
    out = generate_all(backend, ps, policy="stop")
    assert [g.text for g in out] == ["A", "B", "C", "D", "E"]
    assert backend.batches == [(["a", "b"], 0.7), (["d", "e"], 0.7), (["c"], 0.0)]


def test_local_cost_cap_stops_after_an_answer() -> None:
    backend = FakeLocal()
    seen: list[int] = []
    stopped = fan_out(
        backend, prompts(*"abcde"), lambda i, g: seen.append(i), policy="stop",
        spent=lambda: len(seen) >= 3,
    )  # fmt: skip
    assert stopped == "max_cost" and seen == [0, 1, 2]
