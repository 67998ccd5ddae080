"""A stream that is still being read is never expired by the TTL; only silence ends it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiohttp_llm_tracing import SpanRegistry, create_trace_config
from aiohttp_llm_tracing.mock_llm import MockLLMServer

TTL = 0.3


class Ended(SpanProcessor):
    """Sets an event when a span ends, so a test waits for it instead of sleeping."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        self.event.set()


def tracing(
    *, timer: Callable[[], float] = time.monotonic, sweep_interval: float | None = TTL / 6
) -> tuple[aiohttp.TraceConfig, InMemorySpanExporter, Ended, SpanRegistry]:
    exporter, ended = InMemorySpanExporter(), Ended()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(ended)
    registry = SpanRegistry(ttl=TTL, sweep_interval=sweep_interval, timer=timer)
    return (
        create_trace_config(tracer_provider=provider, registry=registry),
        exporter,
        ended,
        registry,
    )


class Clock:
    """The registry's clock, moved only by the test: a loaded machine's scheduling stalls (a
    collection in the loop's thread while the sweeper waits for the GIL) cannot pass for
    silence, which a real clock and a 0.3 s TTL once did on CI."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_stream_read_for_many_ttls_ends_complete() -> None:
    clock = Clock()
    config, exporter, _, registry = tracing(timer=clock, sweep_interval=None)
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Tell me a long story"}],
        # Chunks apart in real time, so the reads below see them one by one or a few at once.
        "metadata": {"mock_chunks": 24, "mock_delay": 0.01},
    }
    reads = 0
    async with MockLLMServer() as server, aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(f"{server.base_url}/chat/completions", json=body) as resp:
            raw = b""
            # readany() empties aiohttp's buffer, so every read that returns bytes follows
            # bytes fed since the sweep before it: each TTL that passes below holds body
            # bytes, and the sweep renews the span instead of ending it.
            async for part in resp.content.iter_any():
                raw += part
                if registry.stats().in_flight:  # not yet ended by the read that saw the end
                    clock.now += 1.5 * TTL
                    registry.sweep()
                    assert registry.stats().in_flight == 1
                    reads += 1
    assert reads >= 2  # at least two TTLs went by while it was read
    assert raw.endswith(b"data: [DONE]\n\n")
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["llm_tracing.end_reason"] == "body_complete"
    assert "Mock answer to: Tell me a long story" in attributes["langfuse.observation.output"]
    assert attributes["gen_ai.usage.output_tokens"] > 0
    stats = registry.stats()
    assert stats.ended == {"body_complete": 1} and stats.in_flight == 0
    registry.close()


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):  # type: ignore[no-untyped-def]
    """A real server on 127.0.0.1 answering the chat path with ``handler``; yields its URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    finally:
        await runner.cleanup()


async def test_one_read_of_a_stream_across_many_ttls_ends_complete() -> None:
    # resp.read() is one call however long the stream: the renewal counts bytes aiohttp fed
    # the reader, not reads.
    clock = Clock()
    config, exporter, _, registry = tracing(timer=clock, sweep_interval=None)
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def paced(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        while (chunk := await chunks.get()) is not None:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async with serving(paced) as url, aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(url, json={"model": "m", "stream": True}) as resp:
            reading = asyncio.create_task(resp.read())
            seen = 0
            for i in range(6):
                chunks.put_nowait(b'data: {"n": %d}\n\n' % i)
                # No event says "aiohttp fed the reader": wait for its count, bounded.
                for _ in range(5000):
                    if resp.content.received > seen:  # type: ignore[attr-defined]
                        break
                    await asyncio.sleep(0.001)
                seen = resp.content.received  # type: ignore[attr-defined]
                clock.now += 1.5 * TTL  # a TTL and more, with body bytes in it
                registry.sweep()
                assert registry.stats().in_flight == 1 and not reading.done()
            chunks.put_nowait(b"data: [DONE]\n\n")
            chunks.put_nowait(None)
            raw = await reading
    assert raw.startswith(b'data: {"n": 0}') and raw.endswith(b"data: [DONE]\n\n")
    (span,) = exporter.get_finished_spans()
    assert span.attributes["llm_tracing.end_reason"] == "body_complete"
    assert registry.stats().ended == {"body_complete": 1}
    registry.close()


async def test_a_stream_gone_silent_for_a_ttl_expires() -> None:
    config, exporter, ended, registry = tracing()
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {}\n\n")
        await release.wait()  # then silence, until the test is done
        return resp

    try:
        async with serving(stall) as url, aiohttp.ClientSession(trace_configs=[config]) as s:
            async with s.post(url, json={"model": "m", "stream": True}) as resp:
                assert await resp.content.readline() == b"data: {}\n"
                # The sweeper ends the span after a TTL (two at most) without another read.
                assert await asyncio.to_thread(ended.event.wait, 20 * TTL)
                (span,) = exporter.get_finished_spans()
                assert span.attributes["llm_tracing.end_reason"] == "expired"
                release.set()
    finally:
        release.set()
    assert registry.stats().ended == {"expired": 1}
    registry.close()
