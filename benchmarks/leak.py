"""Leak harness: many requests over every end path; nothing may stay in flight or grow.

    python benchmarks/leak.py --requests 200000

Mixes plain JSON, streams read to the end, streams abandoned, 500s, refused connections, timeouts
and cancellations before the headers and mid-body, responses dropped unread, and LLM calls in
OpenAI, Gemini (SSE), Bedrock (AWS eventstream) and Ollama (NDJSON) shapes; the session is traced
through the instrumentor, as an SDK's own would be. The server runs in its own process. At the end
the registry's clock is moved past the TTL twice and swept, so spans no signal ended are ended too.
Exits 1 on a leak: anything in flight, started != ended, spans not exported, or RSS growing more
than ``--max-growth-mb`` after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import sys
import time
import tracemalloc
from pathlib import Path

import aiohttp
import psutil
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CountingExporter, server_process
from aiohttp_llm_tracing import SpanRegistry, instrument

PATHS = (
    "json",
    "stream_read",
    "stream_abandoned",
    "status_500",
    "refused",
    "timeout_headers",
    "cancel_headers",
    "timeout_body",
    "cancel_body",
    "dropped_unread",
    "llm_json",
    "llm_stream",
    "gemini_stream",
    "bedrock_stream",
    "ollama_stream",
)
_USER = [{"role": "user", "content": "hi"}]
_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"


class ShiftableClock:
    """time.monotonic, plus an offset the harness can jump forward to expire what is left."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


async def one(s: aiohttp.ClientSession, base: str, refused: str, kind: str) -> None:
    short = aiohttp.ClientTimeout(total=0.02)
    try:
        if kind == "json":
            async with s.get(f"{base}/json") as r:
                await r.read()
        elif kind == "stream_read":
            async with s.get(f"{base}/stream") as r:
                async for _ in r.content:
                    pass
        elif kind == "stream_abandoned":
            async with s.get(f"{base}/stream?lines=200") as r:
                await r.content.readline()
        elif kind == "status_500":
            async with s.get(f"{base}/status/500") as r:
                await r.read()
        elif kind == "refused":
            await s.get(refused)
        elif kind == "timeout_headers":
            await s.get(f"{base}/slow-headers", timeout=short)
        elif kind == "cancel_headers":
            await asyncio.wait_for(s.get(f"{base}/slow-headers"), 0.02)
        elif kind == "timeout_body":
            async with s.get(f"{base}/stall", timeout=aiohttp.ClientTimeout(sock_read=0.02)) as r:
                async for _ in r.content:
                    pass
        elif kind == "cancel_body":
            async with s.get(f"{base}/stall") as r:
                await r.content.readline()
                await asyncio.wait_for(r.content.readline(), 0.02)
        elif kind == "dropped_unread":
            # Never read, never released: only the sweeper can end this span.
            r = await s.get(f"{base}/stream?lines=2000")
            del r
        elif kind == "llm_json":
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            async with s.post(f"{base}/v1/chat/completions", json=body) as r:
                await r.json()
        elif kind == "llm_stream":
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            async with s.post(f"{base}/v1/chat/completions?chunks=20", json=body) as r:
                async for _ in r.content:
                    pass
        elif kind == "gemini_stream":
            body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
            url = f"{base}/mock/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
            async with s.post(url, json=body) as r:
                async for _ in r.content:
                    pass
        elif kind == "bedrock_stream":
            body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
            async with s.post(f"{base}/mock/model/{_BEDROCK}/converse-stream", json=body) as r:
                async for _ in r.content.iter_any():
                    pass
        elif kind == "ollama_stream":
            async with s.post(f"{base}/mock/api/chat", json={"model": "m", "messages": _USER}) as r:
                async for _ in r.content:
                    pass
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 1e6


async def run(args: argparse.Namespace, base: str) -> int:
    clock = ShiftableClock()
    registry = SpanRegistry(ttl=args.ttl, sweep_interval=1.0, timer=clock)
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8192))
    # Through the instrumentor, as an SDK's own session would be: no trace config passed.
    instrumentor = instrument(tracer_provider=provider, registry=registry)
    refused = _refused_url()
    total = args.requests
    warmup = max(total // 10, min(total, 2000))
    samples: dict[str, float] = {"start": rss_mb()}
    snapshot = None
    started_n = done = 0
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def worker() -> None:
            nonlocal started_n, done, snapshot
            while started_n < total:
                i = started_n
                started_n += 1
                await one(s, base, refused, PATHS[i % len(PATHS)])
                done += 1
                if done == warmup:
                    gc.collect()
                    samples["after warm-up"] = rss_mb()
                    if args.tracemalloc:
                        snapshot = tracemalloc.take_snapshot()
                elif done == warmup + (total - warmup) // 2:
                    samples["middle"] = rss_mb()
                if args.progress and done % args.progress == 0:
                    print(f"  {done:>9,} requests  rss {rss_mb():7.1f} MB", flush=True)

        if args.tracemalloc:
            # From the start, so tracemalloc's own bookkeeping settles during the warm-up and
            # is not counted as growth.
            tracemalloc.start()
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.monotonic() - started
    # Move the registry's clock past the TTL, twice: whatever no signal ended is ended now. An
    # entry whose body bytes arrived since it was registered is renewed by the first sweep (a
    # live stream is never expired); the second finds it silent for a whole TTL.
    swept = 0
    for _ in range(2):
        clock.offset += args.ttl + 1
        swept += registry.sweep()
    provider.force_flush()
    gc.collect()
    samples["end"] = rss_mb()
    stats = registry.stats()
    top = []
    if snapshot is not None:
        diffs = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")
        top = [stat for stat in diffs if stat.size_diff > 0][:5]
        tracemalloc.stop()
    provider.shutdown()
    registry.close()
    instrumentor.uninstrument()

    print(f"requests          {total:,} in {elapsed:.1f} s ({total / elapsed:,.0f}/s)")
    print(f"spans started     {stats.started:,}")
    print(
        f"spans ended       {stats.ended_total:,}  "
        + ", ".join(f"{k}={v:,}" for k, v in sorted(stats.ended.items()))
    )
    print(f"spans exported    {exporter.count:,}")
    print(f"ended by sweep    {swept:,} at the end (dropped unread)")
    print(f"in flight         {stats.in_flight} after the final sweep")
    print(f"internal errors   {stats.internal_errors}")
    print("rss MB            " + "  ".join(f"{k} {v:.1f}" for k, v in samples.items()))
    growth = samples["end"] - samples.get("after warm-up", samples["start"])
    print(f"rss growth        {growth:+.1f} MB after warm-up (limit {args.max_growth_mb} MB)")
    for stat in top:
        print(f"  tracemalloc     {stat}")
    failures = []
    if stats.in_flight:
        failures.append(f"{stats.in_flight} spans still in flight")
    if stats.started != stats.ended_total:
        failures.append(f"started {stats.started} != ended {stats.ended_total}")
    if exporter.count != stats.started:
        failures.append(f"exported {exporter.count} != started {stats.started}")
    if stats.internal_errors:
        failures.append(f"{stats.internal_errors} internal errors")
    if growth > args.max_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MB")
    if failures:
        print("LEAK: " + "; ".join(failures))
        return 1
    print("no leak")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--ttl", type=float, default=5.0, help="registry TTL in seconds")
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false")
    parser.add_argument("--progress", type=int, default=0, help="print every N requests")
    args = parser.parse_args(argv)
    with server_process() as base:
        return asyncio.run(run(args, base))


if __name__ == "__main__":
    sys.exit(main())
