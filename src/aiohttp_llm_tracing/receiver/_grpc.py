"""The OTLP/gRPC receiver: a real ``TraceService`` server."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ._spans import (
    HOST,
    MAX_MESSAGE_BYTES,
    ReceivedSpan,
    SpansCallback,
    SpanStore,
    spans_from_request,
)

__all__ = ["OTLPGrpcReceiver"]


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


class OTLPGrpcReceiver(SpanStore):
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
        return f"{HOST}:{self.port}"

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
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # gRPC enables SO_REUSEPORT by default, which would let a fixed port be
                # "bound" twice with exports split between servers; fail loudly instead.
                ("grpc.so_reuseport", 0),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), server)
        try:
            port = server.add_insecure_port(f"{HOST}:{self._requested_port}")
        except RuntimeError:
            executor.shutdown(wait=False)
            raise
        if port == 0:  # older grpcio reports bind failures this way instead of raising
            executor.shutdown(wait=False)
            raise RuntimeError(f"could not bind {HOST}:{self._requested_port}")
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
