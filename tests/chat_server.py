"""Test reply logic for medistill's local OpenAI-compatible server
(:mod:`medistill.backends.local_server`), and a uvicorn server for ASGI apps.

``ChatServer`` answers from a ``responder(messages) -> str`` function, with the server's
options (faults, latency, truncation, a required key, refusals) and, for reasoning models, a
reasoning field or an inline think block.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from medistill.backends.local_server import Completion, LocalChatServer, free_port

THOUGHT = "Thinking it through."


class ChatServer(LocalChatServer):
    """Start with ``with ChatServer(responder) as srv: srv.url``; ``reasoning`` is None,
    ``"field"`` (``reasoning_content``) or ``"inline"`` (a ``<think>`` block). ``responder``
    may be replaced between requests."""

    def __init__(
        self,
        responder: Callable[[list[dict]], str],
        *,
        reasoning: str | None = None,
        **options: Any,
    ) -> None:
        self.responder = responder
        self.reasoning = reasoning
        super().__init__(self.answer, model="served", **options)

    def answer(self, body: dict[str, Any]) -> Completion:
        """The responder's text for the request's messages (usage: 50 prompt tokens)."""
        text = self.responder(body["messages"])
        if self.reasoning == "field":
            return Completion(text, reasoning_content=THOUGHT, prompt_tokens=50)
        if self.reasoning == "inline":
            inline = f"<think>{THOUGHT}</think>\n{text}"
            return Completion(inline, prompt_tokens=50, completion_tokens=len(text.split()))
        return Completion(text, prompt_tokens=50)


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
