"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests.

It answers from a ``responder(messages) -> str`` function and can inject faults: 429 with
``Retry-After``, 500/503, a dropped connection, a malformed body, a truncated completion,
and a slow response; it can require a bearer key and answer 401 otherwise.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "503", "reset", "malformed", "slow", "timeout")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for servers, and for refused ones)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatServer:
    """Start with ``with ChatServer(responder) as srv: srv.url``."""

    def __init__(
        self,
        responder: Callable[[list[dict]], str],
        *,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        api_key: str | None = None,
        latency_s: float = 0.0,
        truncate_every: int = 0,
        seed: int = 0,
        timeout_sleep_s: float = 1.0,
        reasoning: str | None = None,
        reject_status: int | None = None,
        reject_if: Callable[[dict], str | None] | None = None,
        reject_fields: tuple[str, ...] = (),
    ) -> None:
        self.responder = responder
        self.fault_rate = fault_rate
        self.faults = faults
        self.api_key = api_key
        self.latency_s = latency_s
        self.truncate_every = truncate_every
        self.rng = random.Random(seed)
        self.timeout_sleep_s = timeout_sleep_s
        self.reasoning = reasoning  # None | "field" | "inline"
        self.reject_status = reject_status
        self.reject_if = reject_if  # body -> an HTTP 400 message for that request, or None
        self.reject_fields = reject_fields  # refused by name, as api.openai.com refuses
        self.bodies: list[dict] = []  # every request body received, answered or not
        self.served: list[dict] = []  # bodies of requests answered 200 with a completion
        self.lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.seen_auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                with server.lock:
                    server.seen_auth.append(auth)
                if server.api_key is not None and auth != f"Bearer {server.api_key}":
                    server._send(self, 401, b'{"error": {"message": "Incorrect API key"}}')
                elif self.path.rstrip("/").endswith("/models"):
                    models = {"object": "list", "data": [{"id": "served", "object": "model"}]}
                    server._send(self, 200, json.dumps(models).encode())
                else:
                    server._send(self, 404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                server._handle(self, body)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                # A client that gave up (timeout, cancelled run) breaks the pipe: count it
                # instead of printing a traceback into the output under test.
                with server.lock:
                    server.stats["server_errors"] += 1

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)

    def _handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        auth = h.headers.get("Authorization")
        with self.lock:
            self.stats["requests"] += 1
            self.seen_auth.append(auth)
            self.bodies.append(body)
            fault = self.rng.choice(self.faults) if self.rng.random() < self.fault_rate else None
            n = self.stats["requests"]
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            self.stats["401"] += 1
            msg = {"error": {"message": f"Incorrect API key provided: {auth}"}}
            self._send(h, 401, json.dumps(msg).encode())
            return
        if self.reject_status:
            msg = {"error": {"message": f"bad request; you sent {auth}"}}
            self._send(h, self.reject_status, json.dumps(msg).encode())
            return
        refused = [k for k in self.reject_fields if k in body]
        if refused:
            msg = {"error": {"message": f"Unrecognized request argument supplied: {refused[0]}"}}
            self._send(h, 400, json.dumps(msg).encode())
            return
        reason = self.reject_if(body) if self.reject_if else None
        if reason:
            with self.lock:
                self.stats["rejected"] += 1
            err = {"message": reason, "type": "invalid_request_error"}
            self._send(h, 400, json.dumps({"error": err}).encode())
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault:
            with self.lock:
                self.stats[fault] += 1
            if fault == "429":
                self._send(h, 429, b'{"error": "rate limited"}', {"Retry-After": "0.01"})
                return
            if fault in ("500", "503"):
                self._send(h, int(fault), b'{"error": "server error"}')
                return
            if fault == "reset":
                h.close_connection = True
                h.connection.shutdown(2)
                return
            if fault == "malformed":
                self._send(h, 200, b'{"choices": [ {"message": ')
                return
            if fault == "slow":
                time.sleep(0.05)
            if fault == "timeout":  # longer than the client waits: it gives up and retries
                time.sleep(self.timeout_sleep_s)
                h.close_connection = True  # a client that waits longer sees a drop instead
                return
        text = self.responder(body["messages"])
        finish = "stop"
        if self.truncate_every and n % self.truncate_every == 0:
            text, finish = text[: max(1, len(text) // 3)], "length"
        message = {"role": "assistant", "content": text}
        if self.reasoning == "field":
            message["reasoning_content"] = "Thinking it through."
        elif self.reasoning == "inline":
            message["content"] = "<think>Thinking it through.</think>\n" + text
        payload = {
            "id": f"cmpl-{n}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": message,
                }
            ],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": len(text.split()),
                "total_tokens": 50 + len(text.split()),
            },
        }
        # Recorded before the reply goes out: a client that has its answer must find it in
        # ``served`` (appending afterwards raced with the test's next assertion).
        with self.lock:
            self.stats["ok"] += 1
            self.served.append(body)
        try:
            self._send(h, 200, json.dumps(payload).encode())
        except OSError:  # the client gave up on this request: it was not delivered
            with self.lock:
                self.stats["ok"] -= 1
                self.served.remove(body)


class AppServer:
    """An ASGI app (FastAPI) served by a real uvicorn on 127.0.0.1, in a thread:
    ``with AppServer(app) as srv: srv.url``."""

    def __init__(self, app) -> None:
        import uvicorn

        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
