"""Teacher-generation throughput against a loopback server with a fixed 200 ms latency.

    python benchmarks/generate_throughput.py --requests 5040 --concurrency 64,256

For each concurrency, the ideal is concurrency / latency requests per second. Measured side by
side in the same run: medistill's engine (``run_generate``: prompts, keys, retries, SQLite
commit per call) and a plain ``openai.AsyncOpenAI`` + ``asyncio.Semaphore`` loop sending the
same messages and storing nothing. The server runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medistill.backends.config import TeacherConfig
from medistill.data import load_benchmark
from medistill.generate import GenerateConfig, build_requests, run_generate

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _config(url: str, n: int, concurrency: int, out: str) -> GenerateConfig:
    samples = -(-n // 60)  # the 60 embedded questions, several samples each
    return GenerateConfig(
        teacher=TeacherConfig(
            model="bench",
            base_url=[url],
            concurrency=concurrency,
            api_key_env="MEDISTILL_BENCH_KEY",
            timeout_s=30,
        ),
        benchmark="sample",
        samples=samples,
        max_tokens=64,
        out=out,
        max_requests=n,
    )


def ours(url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Requests/s of run_generate (fresh store each time): over the calls phase (first request
    to last commit: the span the plain loop is timed over) and end to end (loading questions,
    building and hashing requests, opening the store included)."""
    with tempfile.TemporaryDirectory() as d:
        cfg = _config(url, n, concurrency, str(Path(d) / "t.db"))
        t0 = time.perf_counter()
        s = run_generate(cfg, show_progress=False)
        dt = time.perf_counter() - t0
        assert s["new_calls"] == n, s
    return n / s["calls_wall_s"], n / dt


def plain(url: str, n: int, concurrency: int) -> float:
    """Requests/s of a plain AsyncOpenAI + semaphore loop over the same messages."""
    import openai

    cfg = _config(url, n, concurrency, "unused")
    reqs = build_requests(load_benchmark("sample").questions, cfg)[:n]

    async def run() -> float:
        # The client as users write it: default connection pool, a few retries.
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=3, timeout=30)
        sem = asyncio.Semaphore(concurrency)

        async def one(r) -> None:
            async with sem:
                await client.chat.completions.create(
                    model="bench",
                    messages=r.messages,
                    max_tokens=64,
                    temperature=0.7,
                    seed=r.params.seed,
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in reqs))
        dt = time.perf_counter() - t0
        await client.close()
        return n / dt

    return asyncio.run(run())


def main() -> None:
    """Start the server, measure both clients at each concurrency, print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=5040)
    ap.add_argument("--concurrency", default="64,256")
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "loopback_server.py"),
            "--port",
            str(port),
            "--latency",
            str(args.latency),
        ]
    )
    try:
        _wait(port)
        url = f"http://127.0.0.1:{port}/v1"
        print(
            f"{args.requests} requests per measurement, server latency {args.latency * 1000:.0f}"
            f" ms, {os.cpu_count()} CPU cores (client and server share them)"
        )
        print(
            "| concurrency | ideal req/s | medistill req/s | of ideal | end to end, of ideal | "
            "plain AsyncOpenAI req/s | of ideal | medistill / plain |"
        )
        print("|--:|--:|--:|--:|--:|--:|--:|--:|")
        for c in (int(x) for x in args.concurrency.split(",")):
            ideal = c / args.latency
            ours(url, min(args.requests, 2 * c), c)  # warm-up
            a, e2e = ours(url, args.requests, c)
            b = plain(url, args.requests, c)
            print(
                f"| {c} | {ideal:.0f} | {a:.0f} | {a / ideal:.2f} | {e2e / ideal:.2f} | {b:.0f} "
                f"| {b / ideal:.2f} | {a / b:.2f}x |"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
