"""A fixed-latency OpenAI-compatible server on 127.0.0.1 for throughput benchmarks.

    python benchmarks/loopback_server.py --port 8765 --latency 0.2

HTTP/1.1 with keep-alive on a bare asyncio protocol: each ``POST .../chat/completions`` is
answered ``latency`` seconds later (a timer, no task or thread per request) with a short
completion and usage counts. The server shares the machine's cores with the client being
measured, so it is kept as cheap as possible; both clients compared face the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import json

BODY = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Reasoning.\nThe answer is B."},
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128},
    }
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"


class ChatProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer each after the fixed latency."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            ok = head.startswith("POST ") and "/chat/completions" in head.split("\r\n", 1)[0]
            asyncio.get_running_loop().call_later(
                self.latency, self._reply, RESPONSE if ok else NOT_FOUND
            )

    def _reply(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(payload)


async def serve(port: int, latency: float) -> None:
    """Serve forever on 127.0.0.1:port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ChatProtocol(latency), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse arguments and serve until killed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.latency))
    except ImportError:
        asyncio.run(serve(args.port, args.latency))


if __name__ == "__main__":
    main()
