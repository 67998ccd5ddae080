"""Local OTLP receivers for tests, the demo and the ``receive`` CLI command.

Two receivers are provided, both bound to ``127.0.0.1`` only:

* :class:`OTLPGrpcReceiver` is a real OTLP/gRPC ``TraceService`` server, suitable as the
  target of the standard gRPC span exporter or of a collector.
* :class:`OTLPHttpReceiver` imitates Langfuse's OTLP/HTTP ingestion endpoint
  (``POST /api/public/otel/v1/traces``), so the Langfuse-style HTTP exporter path can be
  exercised end to end without network access; ``paths`` adds others, such as the standard
  OTLP/HTTP ``/v1/traces`` (:data:`OTLP_HTTP_TRACES_PATH`).

Both decode what they receive into :class:`ReceivedSpan` objects, expose a thread-safe
snapshot through ``spans()`` and let callers block until enough spans have arrived with
``wait_for()``, which is driven by a condition variable rather than polling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import logging
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ._export import LANGFUSE_TRACES_PATH

__all__ = [
    "LANGFUSE_OTLP_TRACES_PATH",
    "OTLP_HTTP_TRACES_PATH",
    "OTLPGrpcReceiver",
    "OTLPHttpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "spans_from_request",
]

_log = logging.getLogger(__name__)

#: Path on which Langfuse accepts OTLP/HTTP traces, relative to its base URL.
LANGFUSE_OTLP_TRACES_PATH = LANGFUSE_TRACES_PATH  # the one path, shared with the exporter
#: The standard OTLP/HTTP traces path, where an OTLP/HTTP exporter posts by default.
OTLP_HTTP_TRACES_PATH = "/v1/traces"

_HOST = "127.0.0.1"
# Large enough for any realistic batch; the defaults (4 MiB gRPC, 1 MiB aiohttp) can
# reject big batches of spans carrying prompt/completion attributes.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_PROTOBUF_CONTENT_TYPE = "application/x-protobuf"

SpansCallback = Callable[["list[ReceivedSpan]"], None]


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


class _SpanStore:
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


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(
        self,
        request: ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        # Each item is a (key, value) named tuple.
        metadata = {key: value for key, value in context.invocation_metadata()}
        self._receiver._record(metadata, spans_from_request(request))
        return trace_service_pb2.ExportTraceServiceResponse()


class OTLPGrpcReceiver(_SpanStore):
    """A real OTLP/gRPC ``TraceService`` server on ``127.0.0.1``.

    Point an OTLP gRPC exporter at :attr:`endpoint` with ``insecure=True``. Each ``Export``
    call's invocation metadata is kept in :attr:`metadata`.
    """

    def __init__(
        self, *, port: int = 0, on_spans: SpansCallback | None = None, keep: bool = True
    ) -> None:
        super().__init__(on_spans, keep)
        self._requested_port = port
        self._server: grpc.Server | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._metadata: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        """``host:port`` suitable for a gRPC exporter's ``endpoint`` argument."""
        return f"{_HOST}:{self.port}"

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """Invocation metadata of each ``Export`` call, oldest first (a snapshot)."""
        with self._cond:
            return list(self._metadata)

    def _record(self, metadata: dict[str, Any], spans: list[ReceivedSpan]) -> None:
        if self._keep:
            with self._cond:
                self._metadata.append(metadata)
        self._add_spans(spans)

    def _clear_records(self) -> None:
        self._metadata.clear()

    def start(self) -> int:
        """Start serving and return the bound port."""
        if self._server is not None:
            raise RuntimeError("receiver already started")
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="otlp-grpc-receiver"
        )
        server = grpc.server(
            executor,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                # gRPC enables SO_REUSEPORT by default, which would let a fixed port be
                # "bound" twice with exports split between servers; fail loudly instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), server)
        try:
            port = server.add_insecure_port(f"{_HOST}:{self._requested_port}")
        except RuntimeError:
            executor.shutdown(wait=False)
            raise
        if port == 0:  # older grpcio reports bind failures this way instead of raising
            executor.shutdown(wait=False)
            raise RuntimeError(f"could not bind {_HOST}:{self._requested_port}")
        server.start()
        self._server, self._executor, self._port = server, executor, port
        return port

    def stop(self, grace: float | None = None) -> None:
        """Stop the server, waiting for in-flight calls for up to ``grace`` seconds."""
        server, executor = self._server, self._executor
        self._server = self._executor = None
        if server is not None:
            server.stop(grace).wait()
        if executor is not None:
            # grpc.Server.stop() does not shut down the executor it was given.
            executor.shutdown(wait=True)

    def __enter__(self) -> OTLPGrpcReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class OTLPHttpReceiver(_SpanStore):
    """A Langfuse-shaped OTLP/HTTP receiver on ``127.0.0.1``.

    Serves ``POST /api/public/otel/v1/traces`` accepting ``application/x-protobuf`` bodies,
    optionally gzip- or deflate-compressed. The aiohttp app runs on a private event loop in
    a daemon thread, so the receiver works the same from sync and async code.

    Successful exports get ``200`` with an empty protobuf body. Other paths get ``404``
    (recorded in :attr:`other_paths`), a wrong content type ``400``, undecodable bodies
    ``400`` and, when ``require_auth`` is set, a mismatched ``Authorization`` header ``401``.
    ``paths`` are the paths that accept traces: Langfuse's only, by default.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        require_auth: str | None = None,
        on_spans: SpansCallback | None = None,
        keep: bool = True,
        paths: Iterable[str] = (LANGFUSE_OTLP_TRACES_PATH,),
    ) -> None:
        super().__init__(on_spans, keep)
        self._requested_port = port
        self._paths = tuple(dict.fromkeys(paths))
        if not self._paths:
            raise ValueError("paths must name at least one traces path")
        self._require_auth = require_auth
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._requests: list[ReceivedRequest] = []
        self._other_paths: list[str] = []

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``, the equivalent of a Langfuse host URL."""
        return f"http://{_HOST}:{self.port}"

    @property
    def traces_url(self) -> str:
        """Full URL of the OTLP traces endpoint (the first of ``paths``)."""
        return self.base_url + self._paths[0]

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request made to the traces path, oldest first (a snapshot)."""
        with self._cond:
            return list(self._requests)

    @property
    def other_paths(self) -> list[str]:
        """Paths of requests that hit anything but the traces endpoint (a snapshot)."""
        with self._cond:
            return list(self._other_paths)

    def _clear_records(self) -> None:
        self._requests.clear()
        self._other_paths.clear()

    def start(self) -> int:
        """Start the server thread and return the bound port."""
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._run, args=(ready,), name="otlp-http-receiver", daemon=True
        )
        thread.start()
        try:
            self._port = ready.result(timeout=30)
        except BaseException:
            thread.join(timeout=30)
            raise
        self._thread = thread
        return self._port

    def stop(self) -> None:
        """Stop the server and join its thread; cleanup happens on the server's own loop."""
        thread, loop = self._thread, self._loop
        self._thread = None
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)

    def __enter__(self) -> OTLPHttpReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                port = loop.run_until_complete(self._serve())
            except BaseException as exc:
                loop.run_until_complete(self._cleanup())
                ready.set_exception(exc)
                return
            ready.set_result(port)
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
        finally:
            self._shutdown_loop(loop)

    async def _serve(self) -> int:
        app = web.Application(client_max_size=_MAX_MESSAGE_BYTES)
        for path in self._paths:
            app.router.add_post(path, self._handle_traces)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        # aiohttp's server gunzips request bodies by default, which would make an explicit
        # gzip.decompress() fail; decoding in one place keeps Content-Encoding handling
        # visible and lets unsupported encodings be rejected with a 400.
        # A short shutdown_timeout keeps stop() fast when an exporter holds a connection.
        runner = web.AppRunner(app, access_log=None, auto_decompress=False, shutdown_timeout=2.0)
        self._runner = runner
        await runner.setup()
        site = web.TCPSite(runner, _HOST, self._requested_port)
        await site.start()
        return int(runner.addresses[0][1])

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _shutdown_loop(loop: asyncio.AbstractEventLoop) -> None:
        # Anything still pending would otherwise be reported as "Task was destroyed but it
        # is pending!" when the loop is garbage-collected.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()

    def _record_request(self, request: web.Request, spans: list[ReceivedSpan], status: int) -> None:
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        if self._keep:
            with self._cond:
                self._requests.append(ReceivedRequest(request.path, headers, spans, status))
        self._add_spans(spans)

    async def _handle_traces(self, request: web.Request) -> web.Response:
        if self._require_auth is not None and (
            request.headers.get("Authorization") != self._require_auth
        ):
            self._record_request(request, [], 401)
            return web.Response(status=401, text="unauthorized")
        if request.content_type != _PROTOBUF_CONTENT_TYPE:
            self._record_request(request, [], 400)
            return web.Response(
                status=400, text=f"expected {_PROTOBUF_CONTENT_TYPE}, got {request.content_type}"
            )
        body = await request.read()
        try:
            body = _decompress(body, request.headers.get("Content-Encoding", ""))
            message = ExportTraceServiceRequest.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError, ValueError) as exc:
            self._record_request(request, [], 400)
            return web.Response(status=400, text=f"could not decode body: {exc}")
        self._record_request(request, spans_from_request(message), 200)
        # An empty protobuf ExportTraceServiceResponse; some collectors drop the batch when
        # they get a JSON body back.
        return web.Response(status=200, body=b"", content_type=_PROTOBUF_CONTENT_TYPE)

    async def _handle_other(self, request: web.Request) -> web.Response:
        if self._keep:
            with self._cond:
                self._other_paths.append(request.path)
        return web.Response(status=404, text="not found")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            # Some clients send raw deflate without the zlib header.
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding: {encoding}")
