"""The fast W3C injection writes exactly what OpenTelemetry's default propagators write."""

from __future__ import annotations

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from aiohttp_llm_tracing import _propagation
from aiohttp_llm_tracing._propagation import inject

TRACER = TracerProvider().get_tracer("t")


def _general(span: trace.Span, current: Context) -> dict[str, str]:
    headers: dict[str, str] = {}
    propagate.inject(headers, context=trace.set_span_in_context(span, current))
    return headers


@pytest.fixture(params=[True, False], ids=["unpacked", "properties"])
def span_context_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both ways of reading a SpanContext: tuple unpacking, and the properties it falls back to.
    monkeypatch.setattr(_propagation, "_UNPACK", request.param)


def test_the_span_context_layout_is_the_one_unpacked() -> None:
    assert _propagation._UNPACK


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_baggage", [False, True])
@pytest.mark.usefixtures("span_context_read")
def test_fast_equals_general(sampled: bool, with_state: bool, with_baggage: bool) -> None:
    state = TraceState([("vendor", "x1"), ("other", "y2")]) if with_state else TraceState()
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(
        SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=flags, trace_state=state)
    )
    current = Context()
    if with_baggage:
        current = baggage.set_baggage("user", "u-7", context=current)
    fast: dict[str, str] = {}
    inject(fast, span, current)
    assert fast == _general(span, current)
    assert fast["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-{'01' if sampled else '00'}"


@pytest.mark.usefixtures("span_context_read")
def test_a_real_span_and_an_invalid_one() -> None:
    span = TRACER.start_span("s")
    fast: dict[str, str] = {}
    inject(fast, span, Context())
    assert fast == _general(span, Context())
    invalid: dict[str, str] = {}
    inject(invalid, trace.INVALID_SPAN, Context())
    assert invalid == {} == _general(trace.INVALID_SPAN, Context())
