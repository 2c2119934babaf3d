"""One local OpenAI-compatible chat-completions server on 127.0.0.1, for tests, the
rehearsal's stand-in teacher and the throughput benchmark:
``with LocalChatServer(reply) as srv: srv.url`` (serves in a thread; ``url`` ends in /v1), or
``serve_forever()`` in a process of its own (``benchmarks/loopback_server.py``).

A real HTTP/1.1 server (keep-alive, on a bare asyncio protocol) that answers every
``POST .../chat/completions`` from a pluggable ``reply(body) -> str | Completion`` and
``GET .../models`` with its one model. The caller decides the reply; the server adds what
all of them share: a fixed latency (a timer, not a thread), injected faults (429 with
``Retry-After``, 500/503, a dropped connection, a malformed body, a slow or too-slow reply),
every ``truncate_every``-th completion cut short (``finish_reason: "length"``), a bearer key
it requires (401 otherwise), requests it refuses (400), usage counts, and a log of what it
received and answered (``bodies``, ``served``, ``seen_auth``, ``stats``). A reply function
runs in a thread of its own per request (it may block, as a slow judge does) unless
``threaded=False``; a constant :class:`Completion` with nothing to check or log is encoded
once, so a benchmark's server costs no more per request than HTTP framing. A client that
hangs up mid-request is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

log = logging.getLogger(__name__)

FAULTS = ("429", "500", "503", "reset", "malformed", "slow", "timeout")
SLOW_S = 0.05  # what the "slow" fault adds to the latency
HEADERS = {"authorization", "connection", "content-length", "expect", "transfer-encoding"}


class BadRequest(Exception):
    """Raised by a reply function: the request is answered 400 with this message."""


@dataclass(frozen=True)
class Completion:
    """One reply: the assistant's ``content``, its ``reasoning_content`` (a reasoning
    model's, as DeepSeek's API and vLLM's reasoning parsers send it) and the usage counts;
    a count left ``None`` is the number of words (of the request's messages, of the
    content as sent)."""

    content: str
    reasoning_content: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Reply = Callable[[dict[str, Any]], "str | Completion"]


@dataclass(frozen=True)
class Answer:
    """What the server does with one request: after ``delay`` seconds, send ``status`` with
    ``payload`` (``status`` None: drop the connection instead). ``served`` is the request
    body of a completion, logged when it goes out."""

    delay: float
    status: int | None
    payload: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    served: dict[str, Any] | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for servers, and for refused ones)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (bound as the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def error_body(message: str, **fields: str) -> bytes:
    """An OpenAI-style error body."""
    return json.dumps({"error": {"message": message, **fields}}).encode()


class LocalChatServer:
    """``with LocalChatServer(reply) as srv: srv.url``. The socket is bound at construction
    (``port`` 0: any free port), so ``url`` is known before the server starts. ``api_key``,
    ``fault_rate`` and the other options are read per request: a test may change them
    between requests."""

    def __init__(
        self,
        reply: Reply | Completion,
        *,
        port: int = 0,
        name: str = "local server",
        model: str = "local",
        id_prefix: str = "cmpl",
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        timeout_sleep_s: float = 1.0,
        truncate_every: int = 0,
        api_key: str | None = None,
        reject_status: int | None = None,
        reject_if: Callable[[dict[str, Any]], str | None] | None = None,
        reject_fields: tuple[str, ...] = (),
        record: bool = True,
        threaded: bool = True,
    ) -> None:
        self.reply = reply
        self.name = name
        self.model = model
        self.id_prefix = id_prefix
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = faults
        self.rng = random.Random(seed)
        self.timeout_sleep_s = timeout_sleep_s  # longer than the client waits: it retries
        self.truncate_every = truncate_every
        self.api_key = api_key
        self.reject_status = reject_status  # every completion refused with this status
        self.reject_if = reject_if  # body -> an HTTP 400 message for that request, or None
        self.reject_fields = reject_fields  # refused by name, as api.openai.com refuses
        self.record = record
        self.threaded = threaded
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []  # every completion request, answered or not
        self.served: list[dict[str, Any]] = []  # bodies of requests answered 200 with one
        self.seen_auth: list[str | None] = []  # every request's Authorization header
        self._canned = self._encode_constant()
        self._canned_wire = response(200, self._canned) if self._canned is not None else None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(4096)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.connections: set[asyncio.Transport] = set()

    # -- life -----------------------------------------------------------------------------

    def __enter__(self) -> LocalChatServer:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = loop.run_until_complete(self._listen())
            finally:
                started.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                for transport in list(self.connections):
                    transport.abort()
                loop.run_until_complete(asyncio.sleep(0))  # let the transports close
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{self.name} {self.port}", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._sock.close()

    def serve_forever(self) -> None:
        """Serve in this thread until killed (a benchmark's server process); uvloop when
        installed."""

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            async with await self._listen() as server:
                await server.serve_forever()

        try:
            import uvloop

            uvloop.run(serve())
        except ImportError:
            asyncio.run(serve())

    async def _listen(self) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: Connection(self), sock=self._sock, backlog=4096)

    # -- requests -------------------------------------------------------------------------

    def dispatch(
        self,
        conn: Connection,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        close: bool,
    ) -> None:
        """Answer one parsed request on ``conn`` (called on the event loop)."""
        auth = headers.get("authorization")
        if method == "POST" and self.threaded and self._canned is None:
            work = threading.Thread(target=self._work, args=(conn, body, auth, close), daemon=True)
            work.start()
            return
        if method == "POST":
            answer = self.complete(body, auth)
        elif method == "GET":
            answer = self.get(path, auth)
        else:
            answer = Answer(0.0, 405, error_body(f"{method} is not served"))
        self._schedule(conn, answer, close)

    def _work(self, conn: Connection, body: bytes, auth: str | None, close: bool) -> None:
        answer = self.complete(body, auth)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the server stopped while this one worked
            loop.call_soon_threadsafe(self._schedule, conn, answer, close)

    def _schedule(self, conn: Connection, answer: Answer, close: bool) -> None:
        if answer.delay > 0:
            assert self._loop is not None
            self._loop.call_later(answer.delay, self._deliver, conn, answer, close)
        else:
            self._deliver(conn, answer, close)

    def _deliver(self, conn: Connection, answer: Answer, close: bool) -> None:
        transport = conn.transport
        if transport is None or transport.is_closing():
            return  # the client gave up on this request: it was not delivered
        if answer.status is None:
            transport.close()
            return
        if answer.served is not None:
            # Logged before the reply goes out: a client that has its answer finds it here.
            with self.lock:
                self.stats["ok"] += 1
                if self.record:
                    self.served.append(answer.served)
        canned = self._canned_wire if answer.payload is self._canned and not close else None
        transport.write(canned or response(answer.status, answer.payload, answer.headers, close))
        if close:
            transport.close()

    def get(self, path: str, auth: str | None) -> Answer:
        """``GET .../models`` lists the one model; a wrong key is a 401, any other path 404."""
        with self.lock:
            if self.record:
                self.seen_auth.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return Answer(0.0, 401, error_body("Incorrect API key"))
        if path.split("?", 1)[0].rstrip("/").endswith("/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            return Answer(0.0, 200, json.dumps(models).encode())
        return Answer(0.0, 404, b'{"error": "not found"}')

    def complete(self, raw: bytes, auth: str | None) -> Answer:
        """What to answer one chat-completions request (runs the reply function)."""
        if self._canned is not None:
            self.stats["requests"] += 1  # on the event loop (never threaded)
            return Answer(self.latency_s, 200, self._canned, served={})
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the request body is not a JSON object")
        except ValueError as e:
            return Answer(0.0, 400, error_body(f"{self.name}: {e}"))
        with self.lock:
            self.stats["requests"] += 1
            if self.record:
                self.seen_auth.append(auth)
                self.bodies.append(body)
            fault = self.rng.choice(self.faults) if self.rng.random() < self.fault_rate else None
            n = self.stats["requests"]
        refused = self.refusal(body, auth)
        if refused is not None:
            return refused
        delay = self.latency_s
        if fault:
            with self.lock:
                self.stats[fault] += 1
            if fault == "429":
                return Answer(delay, 429, b'{"error": "rate limited"}', (("Retry-After", "0.01"),))
            if fault in ("500", "503"):
                return Answer(delay, int(fault), b'{"error": "server error"}')
            if fault == "reset":
                return Answer(delay, None)
            if fault == "malformed":
                return Answer(delay, 200, b'{"choices": [ {"message": ')
            if fault == "slow":
                delay += SLOW_S
            if fault == "timeout":  # a client that waits longer sees a drop instead
                return Answer(delay + self.timeout_sleep_s, None)
        try:
            out = self.reply if isinstance(self.reply, Completion) else self.reply(body)
        except BadRequest as e:
            return Answer(0.0, 400, error_body(str(e)))
        except Exception:
            log.warning("%s: the reply to a request failed", self.name, exc_info=True)
            with self.lock:
                self.stats["server_errors"] += 1
            return Answer(0.0, None)
        truncate = bool(self.truncate_every) and n % self.truncate_every == 0
        payload = self.completion(body, out, truncate=truncate, n=n)
        return Answer(delay, 200, payload, served=body)

    def refusal(self, body: dict[str, Any], auth: str | None) -> Answer | None:
        """The 401 or 400 this request gets before any reply is written, if any."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            with self.lock:
                self.stats["401"] += 1
            return Answer(0.0, 401, error_body(f"Incorrect API key provided: {auth}"))
        if self.reject_status:
            return Answer(0.0, self.reject_status, error_body(f"bad request; you sent {auth}"))
        refused = [k for k in self.reject_fields if k in body]
        if refused:
            message = f"Unrecognized request argument supplied: {refused[0]}"
            return Answer(0.0, 400, error_body(message))
        reason = self.reject_if(body) if self.reject_if else None
        if reason:
            with self.lock:
                self.stats["rejected"] += 1
            return Answer(0.0, 400, error_body(reason, type="invalid_request_error"))
        return None

    def completion(
        self, body: dict[str, Any], out: str | Completion, *, truncate: bool, n: int
    ) -> bytes:
        """The chat-completion body for one reply."""
        c = out if isinstance(out, Completion) else Completion(out)
        content, finish = c.content, "stop"
        if truncate:
            content, finish = content[: max(1, len(content) // 3)], "length"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if c.reasoning_content is not None:
            message["reasoning_content"] = c.reasoning_content
        prompt = c.prompt_tokens
        if prompt is None:
            messages = body.get("messages") or []
            prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion = len(content.split()) if c.completion_tokens is None else c.completion_tokens
        return json.dumps(
            {
                "id": f"{self.id_prefix}-{n}",
                "object": "chat.completion",
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        ).encode()

    def _encode_constant(self) -> bytes | None:
        """The one reply body of a server with a constant reply and nothing to check or log
        per request (a benchmark's); None otherwise."""
        checks = (self.record, self.fault_rate, self.truncate_every, self.api_key)
        if any((*checks, self.reject_status, self.reject_if, self.reject_fields)):
            return None
        if not isinstance(self.reply, Completion):
            return None
        return self.completion({"model": self.model}, self.reply, truncate=False, n=0)


def response(
    status: int, payload: bytes, headers: tuple[tuple[str, str], ...] = (), close: bool = False
) -> bytes:
    """One HTTP/1.1 response with a JSON body."""
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers]
    head += [f"Content-Length: {len(payload)}", f"Connection: {'close' if close else 'keep-alive'}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


class Connection(asyncio.Protocol):
    """One client connection: parse requests (keep-alive) and hand each to the server."""

    def __init__(self, server: LocalChatServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.connections.discard(self.transport)
        self.transport = None  # a client that hung up is no error: its replies are dropped

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            path, _, version = rest.partition(" ")
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if (key := key.lower()) in HEADERS:
                    headers[key] = value.strip()
            size = headers.get("content-length", "0")
            if not size.isdigit() or "transfer-encoding" in headers:
                self.transport.write(response(411, error_body("send a Content-Length"), (), True))
                self.transport.close()
                return
            length = int(size)
            if len(self.buf) < end + 4 + length:
                if headers.get("expect", "").lower() == "100-continue" and not self.continued:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.continued = True
                return
            body, self.buf = self.buf[end + 4 : end + 4 + length], self.buf[end + 4 + length :]
            self.continued = False
            conn = headers.get("connection", "").lower()
            close = conn == "close" or (version.strip() == "HTTP/1.0" and conn != "keep-alive")
            self.server.dispatch(self, method, path, headers, body, close)
