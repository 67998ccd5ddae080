"""Shared helpers for the LLM-layer tests (``tests/test_llm_*.py``).

Loaded by those modules with ``pytest_plugins = ["llm_fixtures"]``. Everything is real: the
embedded mock LLM server on 127.0.0.1, aiohttp, the openai SDK over aiohttp, an in-memory
exporter behind a real TracerProvider. Fixture names are prefixed so they never shadow the
generic ones in ``conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiohttp_llm_tracing import SpanRegistry, TracingTraceConfig, create_trace_config
from aiohttp_llm_tracing.mock_llm import MockLLMServer

API_KEY = "sk-secret-test-key-0123456789"
USER = [{"role": "user", "content": "Explain distributed tracing in one line"}]
ANSWER = "Mock answer to: " + USER[0]["content"][:40]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the docs",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


class Tracing:
    """One provider + exporter + registry; trace configs are made with any options."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = SpanRegistry(sweep_interval=None)

    def config(self, **options: Any) -> TracingTraceConfig:
        return create_trace_config(tracer_provider=self.provider, registry=self.registry, **options)

    def session(self, *, config: TracingTraceConfig | None = None, **kwargs: Any):
        return aiohttp.ClientSession(trace_configs=[config or self.config()], **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def only(self) -> ReadableSpan:
        """The single finished span, after checking the registry let go of it."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        self.assert_settled()
        return spans[0]

    def assert_settled(self) -> None:
        """Nothing in flight, every started span ended exactly once, no internal error."""
        stats = self.registry.stats()
        assert len(self.registry) == 0
        assert stats.in_flight == 0
        assert stats.ended_total == stats.started == len(self.spans())
        assert stats.internal_errors == 0

    def close(self) -> None:
        self.registry.close()
        self.provider.shutdown()


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.close()


@pytest.fixture
async def llm_server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


def openai_client(base_url: str, config: aiohttp.TraceConfig, **kwargs: Any) -> Any:
    """The real openai SDK over aiohttp, with our trace config on its (lazily made) session."""
    from openai import AsyncOpenAI, DefaultAioHttpClient
    from openai._vendor.httpx_aiohttp.transport import AiohttpTransport

    transport = AiohttpTransport(client=lambda: aiohttp.ClientSession(trace_configs=[config]))
    return AsyncOpenAI(
        base_url=base_url,
        api_key=API_KEY,
        max_retries=0,
        http_client=DefaultAioHttpClient(transport=transport),
        **kwargs,
    )


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def jattr(span: ReadableSpan, key: str) -> Any:
    """A JSON-valued attribute, parsed (fails clearly if missing or not JSON)."""
    value = (span.attributes or {}).get(key)
    assert isinstance(value, str), f"{key} is {value!r}"
    return json.loads(value)


def assert_secret_absent(span: ReadableSpan, secret: str = API_KEY) -> None:
    for key, value in attrs(span).items():
        assert secret not in str(value), key
        assert "Bearer" not in str(value), key
    for event in span.events:
        assert secret not in str(event.attributes), event.name


def sse_data(raw: bytes) -> list[Any]:
    """The JSON payloads of ``data:`` lines; ``[DONE]`` kept as a string."""
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def fetch_untraced(url: str, body: Any, **session_kwargs: Any) -> bytes:
    """The bytes the server sends for this request, read with no tracing at all."""
    async with aiohttp.ClientSession(**session_kwargs) as s, s.post(url, json=body) as resp:
        return await resp.read()
