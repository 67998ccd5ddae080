"""The OTLP/HTTP receiver, shaped like Langfuse's ingestion endpoint."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import threading
import zlib
from collections.abc import Iterable

from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ._spans import (
    HOST,
    LANGFUSE_OTLP_TRACES_PATH,
    MAX_MESSAGE_BYTES,
    ReceivedRequest,
    ReceivedSpan,
    SpansCallback,
    SpanStore,
    spans_from_request,
)

__all__ = ["OTLPHttpReceiver"]

_PROTOBUF_CONTENT_TYPE = "application/x-protobuf"


class OTLPHttpReceiver(SpanStore):
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
        return f"http://{HOST}:{self.port}"

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
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
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
        site = web.TCPSite(runner, HOST, self._requested_port)
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
