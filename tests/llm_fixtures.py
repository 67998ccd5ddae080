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
from opentelemetry.sdk.trace import ReadableSpan

from aiohttp_llm_tracing import TracingTraceConfig, _demo, create_trace_config
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture

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


class Tracing(TracingFixture):
    """The plugin's fixture, plus trace configs with any options and exactly-once checks."""

    def config(self, **options: Any) -> TracingTraceConfig:
        return create_trace_config(tracer_provider=self.provider, registry=self.registry, **options)

    def session(self, *, config: TracingTraceConfig | None = None, **kwargs: Any):
        return aiohttp.ClientSession(trace_configs=[config or self.config()], **kwargs)

    def only(self) -> ReadableSpan:
        """The single finished span, after checking the registry let go of it."""
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        self.assert_settled()
        return spans[0]


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.close()


@pytest.fixture
async def llm_server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


def openai_client(base_url: str, config: aiohttp.TraceConfig) -> Any:
    """The real openai SDK over aiohttp, with our trace config on its (lazily made) session."""
    return _demo.openai_client(base_url, config, api_key=API_KEY)


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
