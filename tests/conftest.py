"""Shared fixtures: a real aiohttp server on 127.0.0.1, an in-memory exporter, a trace config."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiohttp_llm_tracing import SpanRegistry, _deferred, create_trace_config
from aiohttp_llm_tracing.receiver import OTLPGrpcReceiver

AIOHTTP_VERSION = tuple(int(p) for p in aiohttp.__version__.split(".")[:3] if p.isdigit())


class Gate:
    """Lets a test hold a server handler mid-body and release it: events, not sleeps."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()


def make_app(gate: Gate) -> web.Application:
    async def json_small(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"status": code}, status=code)

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/json" if n <= 1 else f"/redirect/{n - 1}")

    async def stream(request: web.Request) -> web.StreamResponse:
        # Two lines, then waits for the test's go-ahead, then the rest: the test decides when
        # the body ends, so "the span covers the body" can be asserted without timing.
        lines = int(request.query.get("lines", "4"))
        hold = request.query.get("hold", "1") == "1"
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for i in range(lines):
            if hold and i == 2:
                gate.reached.set()
                await gate.go.wait()
            await resp.write(f"line {i}\n".encode())
        await resp.write_eof()
        return resp

    async def stall(request: web.Request) -> web.StreamResponse:
        # Headers and one line, then nothing until the client goes away.
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(b"first\n")
        gate.reached.set()
        await asyncio.Event().wait()
        return resp

    async def slow_headers(request: web.Request) -> web.Response:
        gate.reached.set()
        await asyncio.Event().wait()
        return web.Response()

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", str(1 << 20)))
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            part = block[: size - sent]
            await resp.write(part)
            sent += len(part)
        await resp.write_eof()
        return resp

    async def cut(request: web.Request) -> web.StreamResponse:
        # Promises 1000 bytes, sends 10, then drops the connection (after the test's go-ahead
        # with ?hold=1, so the client can have the headers and stop reading first).
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"0123456789")
        if request.query.get("hold") == "1":
            gate.reached.set()
            await gate.go.wait()
        assert request.transport is not None
        request.transport.close()
        return resp

    async def echo_headers(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    app = web.Application()
    app.router.add_get("/json", json_small)
    app.router.add_post("/json", json_small)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/stream", stream)
    app.router.add_get("/stall", stall)
    app.router.add_get("/slow-headers", slow_headers)
    app.router.add_get("/big", big)
    app.router.add_get("/cut", cut)
    app.router.add_get("/echo-headers", echo_headers)
    return app


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for refused connections and fixed binds)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def traced(llm_tracing_instrumented: Any) -> Iterator[Any]:
    """The plugin's instrumented fixture, checked settled (every span ended once) at the end."""
    yield llm_tracing_instrumented
    llm_tracing_instrumented.assert_settled()


LITELLM_TESTED_FROM = (1, 110)


@pytest.fixture
async def litellm() -> AsyncIterator[Any]:
    """litellm with a clean process-wide client cache, closed again afterwards."""
    # The local cost map spares litellm a (retried, offline) download at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    version = importlib.metadata.version("litellm")
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < LITELLM_TESTED_FROM:
        # Seen on 1.95 (the newest that installs beside aiohttp < 3.14.2): after its clients
        # are closed between tests it reuses them ("the client has been closed").
        pytest.skip(f"litellm {version} reuses closed clients across tests; tested from 1.110")
    litellm.in_memory_llm_clients_cache.flush_cache()
    yield litellm
    await litellm.close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()


@pytest.fixture
def both_content_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trace configs built in the test write content in both vocabularies."""
    monkeypatch.setenv("AIOHTTP_LLM_TRACING_CONTENT_FORMAT", "both")


@pytest.fixture
def grpc_receiver() -> Iterator[OTLPGrpcReceiver]:
    """A real OTLP/gRPC receiver on 127.0.0.1."""
    with OTLPGrpcReceiver() as receiver:
        yield receiver


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def server(gate: Gate) -> AsyncIterator[TestServer]:
    srv = TestServer(make_app(gate), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


class FlushedExporter(InMemorySpanExporter):
    """The spans a flush would export: ends queued for the loop's next turn (``_deferred``)
    are done first, as the provider's ``force_flush()`` does them."""

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]:
        _deferred.drain()
        return super().get_finished_spans()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield FlushedExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def registry() -> Iterator[SpanRegistry]:
    reg = SpanRegistry(sweep_interval=None)
    yield reg
    reg.close()


@pytest.fixture
def trace_config(provider: TracerProvider, registry: SpanRegistry) -> aiohttp.TraceConfig:
    return create_trace_config(tracer_provider=provider, registry=registry)


@pytest.fixture
async def session(trace_config: aiohttp.TraceConfig) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[trace_config]) as s:
        yield s


class SpanWarnings(logging.Handler):
    """Collects the SDK's misuse warnings ("end() on an ended span", attribute on ended span)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def span_warnings() -> Iterator[SpanWarnings]:
    handler = SpanWarnings()
    logger = logging.getLogger("opentelemetry")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    misuse = [m for m in handler.messages if "ended span" in m or "already ended" in m]
    assert not misuse, misuse


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]
