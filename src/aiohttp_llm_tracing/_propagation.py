"""W3C trace-context injection, with a fast path for OpenTelemetry's default propagators.

``propagate.inject`` goes through the global composite propagator, its getters and setters and
two context look-ups per request. When the global propagator is the SDK's default (W3C trace
context plus W3C baggage, as ``OTEL_PROPAGATORS`` defaults to), the same headers are written
here directly: ``traceparent`` (and ``tracestate`` when the span has one); baggage, when there
is any, still goes through the baggage propagator. Any other global propagator (B3, Jaeger, a
custom one) takes the general path, looked up per request because applications often set it
after building their sessions.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import Span, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["inject"]

_seen: Any = None
_default = False
_BAGGAGE = W3CBaggagePropagator()


def _tuple_layout() -> bool:
    # SpanContext is a tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid)
    # read through one property per field; unpacking it reads all six at once. Checked here
    # rather than assumed, so a future layout falls back to the properties.
    sc = SpanContext(1, 2, False, TraceFlags(1), TraceState([("k", "v")]))
    try:
        trace_id, span_id, _, flags, state, valid = sc
    except (TypeError, ValueError):
        return False
    return (trace_id, span_id, flags, state, valid) == (1, 2, 1, sc.trace_state, True)


_UNPACK = _tuple_layout()


def _is_default(textmap: Any) -> bool:
    if not isinstance(textmap, CompositePropagator):
        return False
    kinds = [type(p) for p in getattr(textmap, "_propagators", ())]
    return kinds == [TraceContextTextMapPropagator, W3CBaggagePropagator]


def inject(headers: MutableMapping[str, str], span: Span, current: Context) -> None:
    """Write ``span``'s context (and ``current``'s baggage) into ``headers``."""
    global _seen, _default
    textmap = propagate.get_global_textmap()
    if textmap is not _seen:
        _seen, _default = textmap, _is_default(textmap)
    if not _default:
        propagate.inject(headers, context=trace.set_span_in_context(span, current))
        return
    sc = span.get_span_context()
    if _UNPACK:
        trace_id, span_id, _, flags, state, valid = sc
    else:
        trace_id, span_id, flags = sc.trace_id, sc.span_id, sc.trace_flags
        state, valid = sc.trace_state, sc.is_valid
    if not valid:
        return
    headers["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    if state:
        headers["tracestate"] = state.to_header()
    # An empty context (no parent span, no baggage) is the common case of a bare script.
    if current and baggage.get_all(current):
        _BAGGAGE.inject(headers, context=current)
