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
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["inject"]

_seen: Any = None
_default = False
_BAGGAGE = W3CBaggagePropagator()


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
    if not sc.is_valid:
        return
    headers["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
    if sc.trace_state:
        headers["tracestate"] = sc.trace_state.to_header()
    if baggage.get_all(current):
        _BAGGAGE.inject(headers, context=current)
