"""Any OpenAI-compatible chat-completions server: vLLM, SGLang, Ollama, llama.cpp, hosted APIs.

Requests run concurrently (bounded), spread over one or more endpoints by least outstanding
requests, optionally paced per endpoint (requests/min, tokens/min), and are retried with
exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and malformed
bodies (``Retry-After`` honoured). A 400/401/403/404 stops at once with a message naming the
endpoint and the API-key variable, never the key. The HTTP client is aiohttp: at hundreds of
requests in flight on two cores, client overhead decides the throughput.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from medistill.backends.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    Generation,
    Messages,
    RequestRejected,
    SamplingParams,
)
from medistill.backends.fanout import Prompt, afan_out, fan_out
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_THINK = re.compile(r"^\s*(?:<think>)?(?P<r>.*?)</think>\s*(?P<a>.*)$", re.S)


#: Statuses that reject one request (its prompt is too long, its content refused) rather than
#: the whole run (:class:`RequestRejected`; the caller's fan-out policy says what becomes of it).
REJECT_STATUS = {400, 413, 422}

#: Penalty fields outside the OpenAI spec that servers apply by default (llama.cpp's
#: ``repeat_penalty`` 1.1; vLLM and SGLang take a model's ``repetition_penalty``): sent
#: neutral with ``neutral_penalties``, and dropped for the rest of the run if a server
#: rejects them by name (as api.openai.com does).
NEUTRAL_EXTRAS = {"repetition_penalty": 1.0, "repeat_penalty": 1.0}


class RetryableError(Exception):
    """A failure worth retrying (rate limit, server error, network, bad body)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class _Pacer:
    """Spaces requests to stay under requests/min and tokens/min for one endpoint."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._next_req = 0.0
        self._next_tok = 0.0

    async def wait(self, tokens: int) -> None:
        """Reserve a slot for a request of about ``tokens`` tokens and sleep until it."""
        if not self.rpm and not self.tpm:
            return
        now = time.monotonic()
        at = now
        if self.rpm:
            at = max(at, self._next_req)
            self._next_req = at + 60.0 / self.rpm
        if self.tpm:
            at = max(at, self._next_tok)
            self._next_tok = at + 60.0 * tokens / self.tpm
        if at > now:
            await asyncio.sleep(at - now)


class OpenAIBackend:
    """Chat completions over HTTP with bounded concurrency, pacing and retries."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | list[str] = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 32,
        timeout_s: float = 600.0,
        max_retries: int = 8,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        extra_body: dict[str, Any] | None = None,
        neutral_penalties: bool = False,
        **_: Any,
    ) -> None:
        self.model = model
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise MedistillError("openai backend: base_url is empty")
        self.endpoints = [u.rstrip("/") for u in urls]
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.extra_body = extra_body or {}
        self.neutral_penalties = neutral_penalties
        self._optional = dict(NEUTRAL_EXTRAS) if neutral_penalties else {}
        self.dropped_fields: list[str] = []
        self.errors: Counter[str] = Counter()
        self._outstanding = dict.fromkeys(self.endpoints, 0)
        self._pacers = {e: _Pacer(requests_per_minute, tokens_per_minute) for e in self.endpoints}
        self._session: aiohttp.ClientSession | None = None

    def preferred_batch_size(self) -> int:
        """Enough requests in flight to keep every concurrency slot busy."""
        return max(4 * self.concurrency, 32)

    def close(self) -> None:
        """Nothing to free: each call opens and closes its own HTTP session."""

    def _auth_error(self, endpoint: str, status: int) -> MedistillError:
        """The 401/403 error: names the endpoint and the key's variable, never the key."""
        return MedistillError(
            f"{endpoint}: authentication failed (HTTP {status}); check the API key in the "
            f"environment variable {self.api_key_env}"
            + ("" if self._api_key else " (it is not set)")
        )

    def scrub(self, text: str) -> str:
        """Remove the API key from any text that may reach a log, a store or an error."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    @asynccontextmanager
    async def session(self):
        """Open the HTTP session that :meth:`complete` uses (one per event loop)."""
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, limit_per_host=0, ttl_dns_cache=300
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(
            headers=headers, connector=connector, timeout=timeout, raise_for_status=False
        ) as s:
            self._session = s
            try:
                yield self
            finally:
                self._session = None

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation, in order; the first failure stops all."""
        out: list[Generation] = [None] * len(batch)  # type: ignore[list-item]
        fan_out(self, [Prompt(m, params) for m in batch], out.__setitem__, policy="stop")
        return out

    async def agenerate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """:meth:`generate` inside a running event loop."""
        out: list[Generation] = [None] * len(batch)  # type: ignore[list-item]
        await afan_out(self, [Prompt(m, params) for m in batch], out.__setitem__, policy="stop")
        return out

    def generate_each(
        self,
        batch: list[Messages],
        params: SamplingParams,
        on_result: Callable[[int, Generation], None],
    ) -> None:
        """Generate concurrently, calling ``on_result(index, generation)`` as each answer
        comes back, so a caller can save it at once.

        Policy ``"error_row"`` (:mod:`medistill.backends.fanout`): a request the server
        rejects on its own (HTTP 400/413/422, e.g. a prompt longer than the context) comes
        back as a :data:`FINISH_ERROR` generation carrying the server's message, and the
        others go on; if the first requests are all rejected with none answered, the run
        itself is wrong (model name, a field the server refuses) and stops.
        """
        fan_out(self, [Prompt(m, params) for m in batch], on_result, policy="error_row")

    def check_endpoints(self, timeout_s: float = 5.0) -> None:
        """Fail in seconds, naming the URL, when an endpoint cannot be reached at all.

        Without this a wrong port would spend every retry's backoff (minutes) before the
        first error. Any HTTP answer counts as reachable, except 401/403, which is the
        API-key error; a server that does not answer within ``timeout_s`` is logged and
        left to the normal retries (it may be busy).
        """
        asyncio.run(self._check_endpoints(timeout_s))

    async def _check_endpoints(self, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as s:
            for endpoint in self.endpoints:
                url = f"{endpoint}/models"
                try:
                    async with s.get(url) as resp:
                        status = resp.status
                except aiohttp.ClientConnectorError as e:
                    code = getattr(e.os_error, "errno", None)
                    if code == errno.ECONNREFUSED:
                        raise MedistillError(
                            f"connection refused at {endpoint} (nothing listens there: is "
                            f"the server running, and is base_url right?)"
                        ) from None
                    raise MedistillError(
                        f"cannot connect to {endpoint}: {self.scrub(str(e.os_error or e))}"
                    ) from None
                except (asyncio.TimeoutError, aiohttp.ClientError) as e:
                    log.warning(
                        "%s did not answer GET /models within %.0f s (%s); going on",
                        endpoint,
                        timeout_s,
                        type(e).__name__,
                    )
                    continue
                if status in (401, 403):
                    raise self._auth_error(endpoint, status)

    def request_body(self, messages: Messages, params: SamplingParams) -> dict[str, Any]:
        """The chat-completions body: the sampling parameters as given, then ``extra_body``.

        With ``neutral_penalties`` the penalties a server may apply by default are sent
        switched off (``frequency_penalty``/``presence_penalty`` 0, and the non-standard
        ``repetition_penalty``/``repeat_penalty`` 1.0 unless the server rejected them), so
        temperature 0 means greedy decoding of the model, not of the server's defaults.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
        }
        if params.top_k is not None:  # not OpenAI's own field; vLLM and llama.cpp take it
            body["top_k"] = params.top_k
        if self.neutral_penalties:
            body.update(frequency_penalty=0.0, presence_penalty=0.0, **self._optional)
        if messages and messages[-1].get("role") == "assistant":
            # continue the final assistant turn (vLLM's server; llama.cpp's prefills it)
            body.update(continue_final_message=True, add_generation_prompt=False)
        body.update(self.extra_body)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def request_fields(self, params: SamplingParams) -> dict[str, Any]:
        """Every field of a request except the messages: what a run config records."""
        body = self.request_body([], params)
        del body["messages"]
        return body

    def request_payload(
        self, messages: Messages, params: SamplingParams, messages_json: str | None = None
    ) -> bytes:
        """The encoded request body; ``messages_json`` (already-encoded messages) saves
        re-encoding the long part of the body on every call."""
        if messages_json is None:
            return json.dumps(self.request_body(messages, params), ensure_ascii=False).encode()
        body = self.request_body([], params)
        del body["messages"]
        head = json.dumps(body, ensure_ascii=False)
        return (head[:-1] + ', "messages": ' + messages_json + "}").encode()

    async def complete(
        self, messages: Messages, params: SamplingParams, *, messages_json: str | None = None
    ) -> Generation:
        """One call with retries; ``attempts`` on the result says how many it took."""
        if self._session is None:
            raise RuntimeError("OpenAIBackend.complete needs `async with backend.session()`")
        payload = self.request_payload(messages, params, messages_json)
        sent_optional = set(self._optional)
        est_tokens = len(payload) // 4 + params.max_new_tokens
        attempt = 0
        while True:
            endpoint = min(self._outstanding, key=self._outstanding.__getitem__)
            self._outstanding[endpoint] += 1
            try:
                await self._pacers[endpoint].wait(est_tokens)
                t0 = time.perf_counter()
                gen = await self._post(endpoint, payload)
                gen.latency_s = time.perf_counter() - t0
                gen.endpoint = endpoint
                gen.attempts = attempt + 1
                return gen
            except RequestRejected as e:
                refused = [k for k in sorted(sent_optional) if k in str(e)]
                if not refused:
                    raise
                if self._optional:
                    log.warning(
                        "%s rejects %s; sending requests without the non-standard penalty "
                        "fields %s from now on",
                        endpoint,
                        ", ".join(refused),
                        ", ".join(self._optional),
                    )
                    self.dropped_fields = sorted({*self.dropped_fields, *self._optional})
                    self._optional = {}
                payload = self.request_payload(messages, params, messages_json)
                sent_optional = set()
            except RetryableError as e:
                self.errors[e.kind] += 1
                if attempt == self.max_retries:
                    raise MedistillError(
                        f"{endpoint}: giving up after {attempt + 1} attempts ({e.kind}: "
                        f"{self.scrub(str(e))})"
                    ) from None
                delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
                delay = random.uniform(delay / 2, delay)
                if e.retry_after is not None:
                    delay = max(delay, e.retry_after)
                log.debug("%s: %s, retry %d in %.2fs", endpoint, e.kind, attempt + 1, delay)
                attempt += 1
                await asyncio.sleep(delay)
            finally:
                self._outstanding[endpoint] -= 1

    async def _post(self, endpoint: str, payload: bytes) -> Generation:
        assert self._session is not None
        url = f"{endpoint}/chat/completions"
        try:
            async with self._session.post(url, data=payload) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except asyncio.TimeoutError:
            raise RetryableError("timeout", "request timed out") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise RetryableError("connection", f"{type(e).__name__}") from None
        text = raw.decode("utf-8", errors="replace")
        if status in RETRY_STATUS:
            raise RetryableError(f"http_{status}", text[:200], _retry_after(retry_after))
        if status in (401, 403):
            raise self._auth_error(endpoint, status)
        if status in REJECT_STATUS:
            raise RequestRejected(
                f"{endpoint}: request rejected (HTTP {status}): {self.scrub(text[:500])}", status
            )
        if status >= 400:
            raise MedistillError(
                f"{endpoint}: request rejected (HTTP {status}): {self.scrub(text[:500])}"
            )
        try:
            data = json.loads(text)
            choice = data["choices"][0]
            msg = choice.get("message") or {}
            content = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RetryableError("malformed_body", text[:200]) from None
        if reasoning is None and "</think>" in content:  # inline <think> reasoning
            m = _THINK.match(content)
            if m:
                reasoning, content = m.group("r").strip(), m.group("a")
        usage = data.get("usage") or {}
        finish = FINISH_LENGTH if choice.get("finish_reason") == "length" else FINISH_STOP
        return Generation(
            text=content,
            finish_reason=finish,
            output_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
            reasoning=reasoning,
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form); ``None`` if absent/odd."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
