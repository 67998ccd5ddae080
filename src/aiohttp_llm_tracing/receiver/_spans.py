"""What both receivers share: decoded spans, the paths, and the thread-safe span store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .._export import LANGFUSE_TRACES_PATH

__all__ = [
    "HOST",
    "LANGFUSE_OTLP_TRACES_PATH",
    "MAX_MESSAGE_BYTES",
    "OTLP_HTTP_TRACES_PATH",
    "ReceivedRequest",
    "ReceivedSpan",
    "SpanStore",
    "SpansCallback",
    "spans_from_request",
]

_log = logging.getLogger("aiohttp_llm_tracing.receiver")

#: Path on which Langfuse accepts OTLP/HTTP traces, relative to its base URL.
LANGFUSE_OTLP_TRACES_PATH = LANGFUSE_TRACES_PATH  # the one path, shared with the exporter
#: The standard OTLP/HTTP traces path, where an OTLP/HTTP exporter posts by default.
OTLP_HTTP_TRACES_PATH = "/v1/traces"

HOST = "127.0.0.1"
# Large enough for any realistic batch; the defaults (4 MiB gRPC, 1 MiB aiohttp) can
# reject big batches of spans carrying prompt/completion attributes.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SpansCallback = Callable[["list[ReceivedSpan]"], None]
_Store = TypeVar("_Store", bound="SpanStore")


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as decoded from an OTLP ``ExportTraceServiceRequest``.

    IDs are lower-case hex strings; attribute values are plain Python values (arrays become
    tuples, key/value lists become dicts), mirroring how the OpenTelemetry SDK stores them.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, object] = field(default_factory=dict)
    status_code: int = 0
    status_message: str = ""
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    resource: dict[str, object] = field(default_factory=dict)
    scope: str = ""

    @property
    def duration_ms(self) -> float:
        """Span duration in milliseconds."""
        return (self.end_ns - self.start_ns) / 1_000_000


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request made to the traces path of :class:`OTLPHttpReceiver`.

    Rejected requests are recorded too (with an empty ``spans`` list), so tests can assert
    on authentication or content-type failures.
    """

    path: str
    headers: dict[str, str]
    spans: list[ReceivedSpan]
    status: int


def _decode_any_value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_decode_any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _decode_key_values(value.kvlist_value.values)
    # string/bool/int/double/bytes map directly onto Python scalars.
    return getattr(value, kind)


def _decode_key_values(pairs: Iterable[KeyValue]) -> dict[str, object]:
    return {kv.key: _decode_any_value(kv.value) for kv in pairs}


def spans_from_request(req: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` objects."""
    out: list[ReceivedSpan] = []
    for resource_spans in req.resource_spans:
        resource = _decode_key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                out.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_decode_key_values(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        events=[(ev.name, _decode_key_values(ev.attributes)) for ev in span.events],
                        resource=dict(resource),
                        scope=scope,
                    )
                )
    return out


class SpanStore:
    """Shared span bookkeeping: a lock-protected list plus a condition for waiters.

    ``keep=False`` is for a receiver that runs for long and only hands each batch to
    ``on_spans`` (``aiohttp-llm-tracing receive``): nothing is held, so memory stays flat;
    :meth:`wait_for` still counts what arrived.
    """

    def __init__(self, on_spans: SpansCallback | None, keep: bool) -> None:
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._received = 0
        self._keep = keep
        self._on_spans = on_spans
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError("receiver is not started")
        return self._port

    def _add_spans(self, spans: list[ReceivedSpan]) -> None:
        with self._cond:
            self._received += len(spans)
            if self._keep:
                self._spans.extend(spans)
            self._cond.notify_all()
        # Called outside the lock so the callback may call spans() without deadlocking.
        if self._on_spans is not None and spans:
            try:
                self._on_spans(spans)
            except Exception:
                # A broken printer must not turn into an export failure, which would make
                # the exporter retry the same batch over and over.
                _log.exception("on_spans callback failed")

    def spans(self) -> list[ReceivedSpan]:
        """Return a snapshot of all spans received so far, in arrival order."""
        with self._cond:
            return list(self._spans)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` spans have arrived; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._received >= n, timeout=timeout)

    def clear(self) -> None:
        """Forget every span (and per-request record) received so far."""
        with self._cond:
            self._spans.clear()
            self._received = 0
            self._clear_records()

    def _clear_records(self) -> None:
        """Hook for subclasses to drop their per-request records under the lock."""

    def start(self) -> int:
        """Start serving and return the bound port."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving."""
        raise NotImplementedError

    def __enter__(self: _Store) -> _Store:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
