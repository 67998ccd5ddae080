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

from ._grpc import OTLPGrpcReceiver
from ._http import OTLPHttpReceiver
from ._spans import (
    LANGFUSE_OTLP_TRACES_PATH,
    OTLP_HTTP_TRACES_PATH,
    ReceivedRequest,
    ReceivedSpan,
    spans_from_request,
)

__all__ = [
    "LANGFUSE_OTLP_TRACES_PATH",
    "OTLP_HTTP_TRACES_PATH",
    "OTLPGrpcReceiver",
    "OTLPHttpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "spans_from_request",
]
