"""Any OpenAI-compatible chat-completions server: vLLM, SGLang, Ollama, llama.cpp, hosted APIs.

Requests run concurrently (bounded), spread over one or more endpoints by least outstanding
requests, and are retried with exponential backoff and jitter on 429, 5xx, timeouts,
dropped connections and malformed bodies (``Retry-After`` honoured). A 400/401/403/404 stops
at once with a message naming the endpoint and the API-key variable, never the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from typing import Any

import httpx

from medistill.backends.base import FINISH_LENGTH, FINISH_STOP, Generation, Messages, SamplingParams
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RetryableError(Exception):
    """A failure worth retrying (rate limit, server error, network, bad body)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class OpenAIBackend:
    """Chat completions over HTTP with bounded concurrency and retries."""

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
        extra_body: dict[str, Any] | None = None,
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
        self.errors: dict[str, int] = {}

    def preferred_batch_size(self) -> int:
        """Enough requests in flight to keep every concurrency slot busy."""
        return max(4 * self.concurrency, 32)

    def _scrub(self, text: str) -> str:
        """Remove the API key from any text that may reach a log or an error."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation (blocking wrapper over asyncio)."""
        return asyncio.run(self.agenerate(batch, params))

    async def agenerate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate concurrently; results come back in request order."""
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        sem = asyncio.Semaphore(self.concurrency)
        outstanding = dict.fromkeys(self.endpoints, 0)
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout_s, limits=limits
        ) as client:

            async def one(messages: Messages) -> Generation:
                async with sem:
                    return await self._request(client, messages, params, outstanding)

            tasks = [asyncio.create_task(one(m)) for m in batch]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:
                    t.cancel()
                raise

    async def _request(
        self,
        client: httpx.AsyncClient,
        messages: Messages,
        params: SamplingParams,
        outstanding: dict[str, int],
    ) -> Generation:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            **self.extra_body,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        for attempt in range(self.max_retries + 1):
            endpoint = min(outstanding, key=outstanding.__getitem__)
            outstanding[endpoint] += 1
            t0 = time.perf_counter()
            try:
                gen = await self._post(client, endpoint, body)
                gen.latency_s = time.perf_counter() - t0
                gen.endpoint = endpoint
                return gen
            except RetryableError as e:
                self.errors[e.kind] = self.errors.get(e.kind, 0) + 1
                if attempt == self.max_retries:
                    raise MedistillError(
                        f"{endpoint}: giving up after {attempt + 1} attempts ({e.kind}: "
                        f"{self._scrub(str(e))})"
                    ) from None
                delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
                delay = random.uniform(delay / 2, delay)
                if e.retry_after is not None:
                    delay = max(delay, e.retry_after)
                log.debug("%s: %s, retry %d in %.2fs", endpoint, e.kind, attempt + 1, delay)
                await asyncio.sleep(delay)
            finally:
                outstanding[endpoint] -= 1
        raise AssertionError("unreachable")

    async def _post(
        self, client: httpx.AsyncClient, endpoint: str, body: dict[str, Any]
    ) -> Generation:
        url = f"{endpoint}/chat/completions"
        try:
            resp = await client.post(url, json=body)
        except httpx.TimeoutException as e:
            raise RetryableError("timeout", f"{type(e).__name__}") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise RetryableError("connection", f"{type(e).__name__}: {e}") from None
        if resp.status_code in RETRY_STATUS:
            raise RetryableError(
                f"http_{resp.status_code}",
                resp.text[:200],
                _retry_after(resp.headers.get("retry-after")),
            )
        if resp.status_code in (401, 403):
            raise MedistillError(
                f"{endpoint}: authentication failed (HTTP {resp.status_code}); check the API key "
                f"in the environment variable {self.api_key_env}"
                + ("" if self._api_key else " (it is not set)")
            )
        if resp.status_code >= 400:
            raise MedistillError(
                f"{endpoint}: request rejected (HTTP {resp.status_code}): "
                f"{self._scrub(resp.text[:500])}"
            )
        try:
            data = resp.json()
            choice = data["choices"][0]
            msg = choice.get("message") or {}
            text = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
        except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            raise RetryableError("malformed_body", resp.text[:200]) from None
        usage = data.get("usage") or {}
        finish = FINISH_LENGTH if choice.get("finish_reason") == "length" else FINISH_STOP
        return Generation(
            text=text,
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
