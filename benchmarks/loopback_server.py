"""A fixed-latency OpenAI-compatible server on 127.0.0.1 for throughput benchmarks.

    python benchmarks/loopback_server.py --port 8765 --latency 0.2

medistill's local server (``medistill.backends.local_server``) with one constant reply: each
``POST .../chat/completions`` is answered ``latency`` seconds later (a timer, no task or thread
per request) with a short completion and usage counts, encoded once. The server shares the
machine's cores with the client being measured, so it is kept as cheap as possible; both
clients compared face the same server.
"""

from __future__ import annotations

import argparse

from medistill.backends.local_server import Completion, LocalChatServer

REPLY = Completion("Reasoning.\nThe answer is B.", prompt_tokens=120, completion_tokens=8)


def main() -> None:
    """Parse arguments and serve until killed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    server = LocalChatServer(
        REPLY, port=args.port, name="loopback", latency_s=args.latency, record=False
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
