"""Testing helpers for users: a pytest plugin with an in-memory span exporter.

Installed as a pytest plugin by the package; use the ``llm_tracing`` fixture::

    async def test_agent(llm_tracing):
        async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as s:
            await run_agent(s)
        assert llm_tracing.spans()[0].name == "chat gpt-4o-mini"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ._registry import SpanRegistry
from ._trace_config import TracingTraceConfig, create_trace_config

__all__ = ["TracingFixture", "llm_tracing"]


class TracingFixture:
    """An isolated provider, exporter, registry and trace config for one test."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = SpanRegistry(sweep_interval=None)
        self.trace_config: TracingTraceConfig = create_trace_config(
            tracer_provider=self.provider, registry=self.registry, **options
        )

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        self.registry.close()
        self.provider.shutdown()


@pytest.fixture
def llm_tracing() -> Iterator[TracingFixture]:
    """A :class:`TracingFixture`; attach ``llm_tracing.trace_config`` to your ClientSession."""
    fixture = TracingFixture()
    yield fixture
    fixture.close()
