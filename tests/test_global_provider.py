"""setup_tracing beside a global provider someone else installed (the Langfuse SDK's, say)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_setup_tracing_warns_once_beside_another_global_provider() -> None:
    # A fresh interpreter: OpenTelemetry's global provider can be set only once per process.
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from aiohttp_llm_tracing import setup_tracing

        other = TracerProvider()  # as the Langfuse SDK installs its own
        other.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(other)
        setup_tracing(exporter="none")
        setup_tracing(exporter="none")
        assert trace.get_tracer_provider() is other
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("SimpleSpanProcessor") == 1
    assert "exports every span twice" in result.stderr


def test_setup_tracing_is_quiet_when_it_is_the_first_provider() -> None:
    script = "from aiohttp_llm_tracing import setup_tracing; setup_tracing(exporter='none')"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "aiohttp-llm-tracing" not in result.stderr
