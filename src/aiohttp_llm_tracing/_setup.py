"""``setup_tracing``: a provider that exports, configured as the OpenTelemetry SDK configures
itself from the environment, with Langfuse one keyword away.

Explicit arguments win; then the SDK's variables: ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``, ``none``, comma-separated), ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc``, ``http/protobuf``), the OTLP exporters' own
``OTEL_EXPORTER_OTLP_*`` endpoint, header and TLS variables, and ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES`` merged as the SDK merges them; then Langfuse when its keys are set;
then OTLP/gRPC.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import metrics as _metrics_api
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from ._export import ExporterName, TracingProvider, langfuse_exporter

__all__ = ["setup_tracing"]

_logger = logging.getLogger("aiohttp_llm_tracing")
_DEFAULT_SERVICE = "aiohttp-llm-tracing"
_PROTOCOLS = ("grpc", "http/protobuf")


def setup_tracing(
    *,
    exporter: ExporterName | SpanExporter = "auto",
    service_name: str | None = None,
    endpoint: str | None = None,
    insecure: bool | None = None,
    langfuse_host: str | None = None,
    set_global: bool = True,
    export_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
    schedule_delay: float | None = None,
    protocol: str | None = None,
    metrics: bool = False,
) -> TracingProvider:
    """Build a TracerProvider with a BatchSpanProcessor and return it.

    **Parameters:**

    * **exporter** - ``"langfuse"`` (OTLP/HTTP straight to Langfuse), ``"otlp"`` (to a
      collector, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables), ``"console"``,
      ``"none"``, or any ``SpanExporter``. ``"auto"`` follows ``OTEL_TRACES_EXPORTER`` when set,
      else picks Langfuse when ``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY`` are set, else
      OTLP.
    * **service_name** - ``service.name``; else what ``OTEL_SERVICE_NAME`` or
      ``OTEL_RESOURCE_ATTRIBUTES`` say; else ``aiohttp-llm-tracing``.
    * **endpoint** / **insecure** - override the OTLP endpoint (``host:port`` for gRPC, the
      traces URL for HTTP) and TLS (gRPC).
    * **protocol** - ``"grpc"`` or ``"http/protobuf"`` for ``"otlp"``; else
      ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, then ``OTEL_EXPORTER_OTLP_PROTOCOL``, then gRPC.
    * **langfuse_host** - override ``LANGFUSE_HOST``.
    * **set_global** - also install it as the global tracer provider.
    * **export_timeout** - seconds one export may take before it is abandoned.
    * **shutdown_timeout** - the longest ``shutdown()`` (and the exit hook) waits.
    * **schedule_delay** - seconds between batch exports (the SDK's default is 5).
    * **metrics** - also export the GenAI and HTTP client metrics over OTLP (same protocol
      and endpoint variables, ``OTEL_EXPORTER_OTLP_METRICS_*``); the meter provider is
      ``provider.meter_provider``, made global with ``set_global``, and flushed and shut down
      with the tracer provider.

    Call ``provider.shutdown()`` (or let the exit hook do it) so the last batch is sent.
    """
    resource = _resource(service_name)
    provider = TracingProvider(resource=resource, shutdown_timeout=shutdown_timeout)
    protocol = _protocol(protocol, "TRACES")
    kwargs: dict[str, Any] = {"export_timeout_millis": export_timeout * 1000}
    if schedule_delay is not None:
        kwargs["schedule_delay_millis"] = schedule_delay * 1000
    for name in _exporter_names(exporter):
        span_exporter = (
            exporter
            if name is None
            else _exporter(name, protocol, endpoint, insecure, langfuse_host, export_timeout)
        )
        if span_exporter is not None:
            provider.add_reporting_exporter(span_exporter, **kwargs)  # type: ignore[arg-type]
    if metrics:
        provider.meter_provider = _meter_provider(resource, _protocol(None, "METRICS"))
    if set_global:
        _warn_if_global_provider_exports()
        trace.set_tracer_provider(provider)
        if provider.meter_provider is not None:
            _metrics_api.set_meter_provider(provider.meter_provider)
    return provider


def _resource(service_name: str | None) -> Resource:
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME as the SDK does; an
    # explicit name wins, and ours only stands in for the SDK's "unknown_service".
    resource = Resource.create({SERVICE_NAME: service_name} if service_name else {})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: _DEFAULT_SERVICE}))
    return resource


def _protocol(explicit: str | None, signal: str) -> str:
    value = (
        explicit
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if value not in _PROTOCOLS:
        if explicit:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, not {explicit!r}")
        _logger.warning("aiohttp-llm-tracing: OTLP protocol %r is not supported; using grpc", value)
        return "grpc"
    return value


def _exporter_names(exporter: ExporterName | SpanExporter) -> list[str | None]:
    """The exporters to build (``None`` stands for the SpanExporter given)."""
    if not isinstance(exporter, str):
        return [None]
    if exporter != "auto":
        return [exporter]
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if configured:
        names = [n.strip() for n in configured.split(",") if n.strip()]
        known = [n for n in names if n in ("otlp", "console", "none")]
        for name in set(names) - set(known):
            _logger.warning("aiohttp-llm-tracing: OTEL_TRACES_EXPORTER %r is not supported", name)
        return list(known)
    has_keys = os.environ.get("LANGFUSE_PUBLIC_KEY") and os.environ.get("LANGFUSE_SECRET_KEY")
    return ["langfuse" if has_keys else "otlp"]


_warned_global = False


def _warn_if_global_provider_exports() -> None:
    """Warn when another SDK provider with processors is the global one already.

    OpenTelemetry keeps the first global provider, so ours would not replace it: spans from
    trace configs built without ``tracer_provider=`` go to that one, and with the Langfuse SDK
    (whose processor exports to Langfuse itself) every span can reach Langfuse twice.
    """
    global _warned_global
    current = trace.get_tracer_provider()
    if _warned_global or not isinstance(current, TracerProvider):
        return
    # The SDK has no public accessor for a provider's processors.
    active = getattr(current, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", ())
    if processors:
        _warned_global = True
        names = ", ".join(sorted({type(p).__name__ for p in processors}))
        _logger.warning(
            "aiohttp-llm-tracing: a global TracerProvider with span processors (%s) is installed "
            "already and stays the global one; setup_tracing's provider is not made global. "
            "Pass tracer_provider= to instrument()/create_trace_config(), or use that provider "
            "alone (with the Langfuse SDK, setup_tracing(exporter='langfuse') beside it exports "
            "every span twice).",
            names,
        )


def _exporter(
    name: str,
    protocol: str,
    endpoint: str | None,
    insecure: bool | None,
    langfuse_host: str | None,
    timeout: float,
) -> SpanExporter | None:
    if name == "langfuse":
        return langfuse_exporter(host=langfuse_host, timeout=timeout)
    if name == "otlp":
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )

            return HttpSpanExporter(endpoint=endpoint, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=insecure, timeout=timeout)
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "none":
        return None
    raise ValueError(f"unknown exporter {name!r}")


def _meter_provider(resource: Resource, protocol: str) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    return MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
