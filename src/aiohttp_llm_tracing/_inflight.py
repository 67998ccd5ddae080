"""One traced request between its start and its end, and the one place its span ends."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Mapping
from traceback import format_exception
from typing import TYPE_CHECKING, Any

from aiohttp import ClientResponseError
from opentelemetry.trace import Span, Status, StatusCode

from . import _attributes as A
from ._deferred import DEFER_MAX_BYTES, defer, watch
from ._exportable import ExportableAttributes, exportable_attributes, exportable_str
from ._finisher import OFFLOAD_BYTES, submit
from ._reasons import EndReason
from ._redact import redact_text
from ._span_write import set_end_attributes

if TYPE_CHECKING:
    from ._capture import BodyCapture
    from ._llm import LLMCall
    from ._metrics import Metrics
    from ._registry import SpanRegistry
    from ._stream import TracedStream

__all__ = ["HttpSpan"]

# Ended by the sweeper, by eviction or at shutdown: the request's real outcome is unknown.
_LOST = frozenset({EndReason.EXPIRED, EndReason.EVICTED, EndReason.SHUTDOWN})


class HttpSpan:
    """The registry entry for one request: its span plus what the end needs to know.

    Signals (aiohttp callbacks, the body proxy) never end the span themselves; they ask the
    registry to, which pops the entry first, so only one of them can ever reach :meth:`end`.
    """

    __slots__ = (
        "attributes",
        "body",
        "body_seen",
        "cancel_pending",
        "capture",
        "end_ns",
        "end_reason",
        "ended",
        "extra",
        "llm",
        "metrics",
        "protocol",
        "registry",
        "request_id",
        "span",
        "started_ns",
        "status_code",
    )

    def __init__(
        self,
        span: Span,
        request_id: str,
        registry: SpanRegistry,
        llm: LLMCall | None = None,
        metrics: Metrics | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.span = span
        # The attributes the span started with, read back by the metrics at the end: a dict of
        # our own is cheaper to read than the SDK's locked attribute mapping.
        self.attributes = attributes
        self.request_id = request_id
        self.registry = registry
        self.llm = llm
        self.metrics = metrics
        self.capture: BodyCapture | None = None
        self.status_code = 0
        self.protocol: str | None = None
        self.ended = False
        # What a queued end finishes with (_deferred holds the entry itself, not a tuple).
        self.end_reason = ""
        self.end_ns = 0
        self.cancel_pending = False
        self.body: weakref.ref[TracedStream] | None = None
        self.body_seen = 0
        self.extra: dict[str, Any] | None = None
        # Set only for a span the sampler dropped, while metrics are on: its own clock.
        self.started_ns = 0

    # -- signals from the body proxy -----------------------------------------------------------

    def body_complete(self) -> None:
        """The caller read the last byte."""
        self.registry.end(self.request_id, EndReason.BODY_COMPLETE)

    def abandoned(self) -> None:
        """The response was released or closed before the body was read to the end."""
        reason = EndReason.CANCELLED if self.cancel_pending else EndReason.RELEASED
        self.registry.end(self.request_id, reason)

    def read_failed(self, error: BaseException) -> None:
        """A body read raised (timeout, connection lost, payload error)."""
        self.registry.end(self.request_id, EndReason.EXCEPTION, error)

    def renew(self) -> bool:
        """Asked by the registry when the TTL runs out: keep the span if body bytes arrived
        since it was registered or last renewed (a live stream), else let it expire.

        It compares aiohttp's own count of bytes fed to the response's reader, so a stream
        pays nothing per chunk, whatever way it is read (``read()`` of the whole body is one
        call however long the stream), and a span ends once silence has lasted a whole TTL (at
        the latest after two). A caller that stops reading stops the flow too, once aiohttp's
        buffer is full, so an abandoned stream still expires.
        """
        proxy = self.body() if self.body is not None else None
        if proxy is None:  # no body yet, or the response was dropped and collected
            return False
        total = proxy.received
        if total == self.body_seen:
            return False
        self.body_seen = total
        return True

    def internal_error(self, site: str, error: BaseException) -> None:
        """Count a failure in our own code without touching the request."""
        self.registry.record_internal_error(site, error)

    # -- the end ---------------------------------------------------------------------------------

    def end(self, reason: str, error: BaseException | None = None) -> None:
        """Finish the span for ``reason``. Called once, by the registry, from any thread.

        Its end time is this moment; the rest of the work may run later (``_deferred``).
        """
        if self.ended:
            return
        self.ended = True
        # Only renew() reads it: dropped here, inside the signal, not by a queued end's turn.
        self.body = None
        span = self.span
        if not span.is_recording() and not self._counted_unsampled():
            span.end()
            return
        # Finished later, wherever that is, with the end time of this moment.
        end_ns = time.time_ns()
        llm = self.llm
        size = 0 if llm is None else llm.captured_bytes()
        if size >= OFFLOAD_BYTES:
            # A big body's parse would hold the event loop for tens of milliseconds: the span
            # is finished on the finisher thread.
            submit(lambda: self._finish(reason, error, end_ns))
            return
        # An LLM call's end: out of the caller's read, on the loop's next turn (_deferred says
        # why); at once when no loop runs here. Three kinds end at once all the same. A plain
        # request: its end is small, and the turn added 31,000 instructions (cachegrind) to
        # its 333,000. A failed request: held for a turn, its exception kept the request's
        # frames alive, and the leak harness's RSS grew 8-12 MB in 4,500 requests (+1 MB
        # otherwise) with nothing retained that tracemalloc could see. And bodies past
        # DEFER_MAX_BYTES, whose parse is most of their end: queued, 50 streams of 64-256 KiB
        # took the loop's p99 lag from 1.15 to 1.9-3.0 ms.
        if llm is not None and error is None and size < DEFER_MAX_BYTES:
            self.end_reason = reason
            self.end_ns = end_ns
            if defer(self):
                watch(span)
                return
        self._finish(reason, error, end_ns)

    def finish_deferred(self) -> None:
        """The queued end's work, with the reason and end time of its signal."""
        self._finish(self.end_reason, None, self.end_ns)

    def _finish(self, reason: str, error: BaseException | None, end_ns: int | None) -> None:
        span = self.span
        # Our own constants and numbers, unless the gate below runs: the SDK would store them as
        # they are.
        attributes: dict[str, Any] = ExportableAttributes({A.END_REASON: reason})
        if self.extra:
            attributes.update(self.extra)
        if self.status_code:
            attributes[A.HTTP_RESPONSE_STATUS_CODE] = self.status_code
            if self.protocol is not None:
                attributes[A.NETWORK_PROTOCOL_VERSION] = self.protocol
        status: Status | None = None
        if error is not None and not isinstance(error, asyncio.CancelledError):
            error_type = _error_type(error)
            if isinstance(error, ClientResponseError) and error.status:
                attributes[A.HTTP_RESPONSE_STATUS_CODE] = error.status
            attributes[A.ERROR_TYPE] = error_type
            message = redact_text(str(error))
            # The SDK would record str(error) and the traceback as they are, and aiohttp's
            # errors quote the request URL with its query string: give it redacted ones.
            span.record_exception(
                error,
                attributes=exportable_attributes(
                    {
                        A.EXCEPTION_MESSAGE: message,
                        A.EXCEPTION_STACKTRACE: redact_text("".join(format_exception(error))),
                    }
                ),
            )
            status = Status(StatusCode.ERROR, f"{type(error).__qualname__}: {message}")
        elif reason in _LOST:
            attributes[A.ERROR_TYPE] = str(self.status_code) if self.status_code >= 400 else reason
            status = Status(StatusCode.ERROR, f"span {reason} before the request completed")
        elif self.status_code >= 400:
            attributes[A.ERROR_TYPE] = str(self.status_code)
            status = Status(StatusCode.ERROR)
        if reason == EndReason.CANCELLED:
            # HTTP semantic conventions: a caller's cancellation is not an error, so the status
            # stays unset; Langfuse still flags it so the cut-off call stands out.
            attributes[A.LANGFUSE_OBSERVATION_LEVEL] = "WARNING"
            attributes[A.LANGFUSE_OBSERVATION_STATUS_MESSAGE] = "cancelled by the caller"
        if self.llm is not None:
            try:
                api_message = self.llm.finish(attributes, self, reason)
            except Exception as exc:
                api_message = None
                self.registry.record_internal_error("llm.finish", exc)
            if api_message is not None and (status is None or not status.description):
                # The API's own words beat a bare status code (and catch errors in a 200 body).
                status = Status(StatusCode.ERROR, api_message)
        # The one gate: whatever the server sent, nothing here can make the exporter drop a batch.
        # A plain response's end attributes are our own constants and numbers: nothing to clean.
        if self.llm is not None or self.extra or status is not None:
            attributes = exportable_attributes(attributes)
        set_end_attributes(span, attributes)
        if status is not None:
            if status.description:
                status = Status(status.status_code, exportable_str(status.description))
            span.set_status(status)
        span.end(end_time=end_ns)
        if self.metrics is not None and self.metrics.enabled:
            self._record_metrics(attributes, end_ns)

    def _counted_unsampled(self) -> bool:
        """A span the sampler dropped still counts in the metrics, as the conventions ask of
        every request: its end is worked out as a recorded one's (the span's methods do
        nothing), timed by its own clock."""
        return bool(self.started_ns) and self.metrics is not None and self.metrics.enabled

    def _record_metrics(self, end_attributes: Mapping[str, Any], end_ns: int | None) -> None:
        span: Any = self.span
        try:
            # The span's own timestamps, and the values it started and ended with (as
            # OpenTelemetry's HTTP instrumentations do, a hook's changes to the span are not
            # the metrics').
            start, end = getattr(span, "start_time", None), getattr(span, "end_time", None)
            if self.started_ns:
                start, end = self.started_ns, end_ns or time.time_ns()
            if isinstance(start, int) and isinstance(end, int):
                self.metrics.record(  # type: ignore[union-attr]
                    self.attributes or getattr(span, "attributes", None) or {},
                    end_attributes,
                    (end - start) / 1e9,
                    self.llm is not None,
                )
        except Exception as exc:
            self.registry.record_internal_error("metrics", exc)


def _error_type(error: BaseException) -> str:
    if isinstance(error, ClientResponseError) and error.status:
        return str(error.status)
    return type(error).__qualname__
