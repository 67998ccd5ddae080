"""``setup_tracing``: a TracerProvider that exports to Langfuse or an OTLP collector.

Optional: the trace config works with any provider. This helper builds the two routes users ask
for and closes the traps they hit: Langfuse speaks OTLP over HTTP only, at the full path
``/api/public/otel/v1/traces``, wants Basic auth and ``x-langfuse-ingestion-version: 4`` (or
traces can take minutes to appear), and short scripts lose spans unless the provider is flushed
at exit without hanging on an unreachable endpoint.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from . import _deferred, _finisher
from ._registry import close_all_registries

__all__ = ["LANGFUSE_TRACES_PATH", "ExporterName", "TracingProvider", "langfuse_exporter"]

_logger = logging.getLogger("aiohttp_llm_tracing")

LANGFUSE_TRACES_PATH = "/api/public/otel/v1/traces"
DEFAULT_LANGFUSE_HOST = "https://cloud.langfuse.com"
ExporterName = Literal["auto", "langfuse", "otlp", "console", "none"]


class TracingProvider(TracerProvider):
    """A TracerProvider whose shutdown and flush never outlast their timeout.

    The SDK's OTLP exporters retry with backoff when the endpoint is down; a process exiting
    then hangs (opentelemetry-python#3309). Here the work runs on a helper thread and the caller
    waits at most ``timeout`` seconds. The provider shuts itself down at interpreter exit.
    """

    def __init__(self, *, shutdown_timeout: float = 5.0, **kwargs: Any) -> None:
        # Our own exit hook, so in-flight spans are ended before the last export.
        super().__init__(shutdown_on_exit=False, **kwargs)
        self._shutdown_timeout = shutdown_timeout
        self._shutdown_lock = threading.Lock()
        self._shut = False
        self._shutdown_ok = False
        self._reporting: list[_ReportingExporter] = []
        self.meter_provider: Any = None
        """The SDK ``MeterProvider`` that ``setup_tracing(metrics=True)`` built, else None."""
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        close_all_registries()
        self.shutdown()

    def shutdown(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Flush and stop the exporters; ``True`` if done within ``timeout`` seconds.

        A second call does nothing and returns what the first one did.
        """
        with self._shutdown_lock:
            if self._shut:
                return self._shutdown_ok
            self._shut = True
        atexit.unregister(self._at_exit)
        limit = self._shutdown_timeout if timeout is None else timeout
        _deferred.drain()
        _finisher.drain(limit)
        meters = self.meter_provider
        if meters is not None:
            _bounded(lambda: meters.shutdown(timeout_millis=limit * 1000), limit)
        self._shutdown_ok = _bounded(super().shutdown, limit)
        return self._shutdown_ok

    def flush(self, timeout: float = 5.0) -> bool:
        """Export everything ended so far; ``True`` if done within ``timeout`` seconds and every
        export since the last flush succeeded (a batch the endpoint rejected, a 401 say, makes
        it ``False``; the SDK's own ``force_flush`` says ``True`` there), and ``False`` after
        shutdown (older SDKs say ``True`` there too)."""
        if self._shut:
            return False
        _deferred.drain()  # ends queued for the loop's next turn
        _finisher.drain(timeout)  # large LLM calls still being finished off the loop
        meters = self.meter_provider
        if meters is not None:
            _bounded(lambda: meters.force_flush(int(timeout * 1000)), timeout)
        done = _bounded(lambda: self.force_flush(int(timeout * 1000)), timeout)
        failed = [exporter.take_failures() for exporter in self._reporting]
        return done and not any(failed)

    def add_reporting_exporter(self, exporter: SpanExporter, **batch_options: Any) -> None:
        """Export through ``exporter`` in batches, keeping track of failed exports for flush."""
        reporting = _ReportingExporter(exporter)
        self._reporting.append(reporting)
        self.add_span_processor(BatchSpanProcessor(reporting, **batch_options))


class _ReportingExporter(SpanExporter):
    """Passes every batch on and counts the ones the endpoint refused."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self._failures += 1
        return result

    def take_failures(self) -> int:
        failures, self._failures = self._failures, 0
        return failures

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _bounded(work: Callable[[], object], timeout: float) -> bool:
    """Run ``work`` on a helper thread; ``True`` if it finished within ``timeout`` and did not
    report failure by returning ``False``."""
    done = threading.Event()
    outcome = [False]

    def run() -> None:
        try:
            outcome[0] = work() is not False
        except Exception:
            _logger.exception("aiohttp-llm-tracing: exporter flush/shutdown failed")
        finally:
            done.set()

    try:
        threading.Thread(target=run, name="aiohttp-llm-tracing-flush", daemon=True).start()
    except RuntimeError:
        # Python 3.12+ refuses new threads at interpreter exit: export inline, bounded then
        # by the exporter's own timeout.
        run()
        return outcome[0]
    finished = done.wait(timeout)
    if not finished:
        _logger.warning("aiohttp-llm-tracing: export did not finish within %.1f s", timeout)
    return finished and outcome[0]


def langfuse_exporter(
    *,
    host: str | None = None,
    public_key: str | None = None,
    secret_key: str | None = None,
    timeout: float = 10.0,
) -> SpanExporter:
    """An OTLP/HTTP exporter for Langfuse's OpenTelemetry endpoint.

    Reads ``LANGFUSE_HOST`` (or ``LANGFUSE_BASE_URL``), ``LANGFUSE_PUBLIC_KEY`` and
    ``LANGFUSE_SECRET_KEY`` for anything not given. Sends protobuf, gzip-compressed, to
    ``{host}/api/public/otel/v1/traces`` with Basic auth and ``x-langfuse-ingestion-version: 4``
    so traces are written at once instead of after the legacy path's delay.
    """
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    host = host or os.environ.get("LANGFUSE_HOST") or os.environ.get("LANGFUSE_BASE_URL")
    host = (host or DEFAULT_LANGFUSE_HOST).rstrip("/")
    public_key = public_key or os.environ.get("LANGFUSE_PUBLIC_KEY")
    secret_key = secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
    if not public_key or not secret_key:
        raise ValueError("Langfuse export needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY")
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    return OTLPSpanExporter(
        endpoint=host + LANGFUSE_TRACES_PATH,
        headers={"Authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"},
        compression=Compression.Gzip,
        timeout=timeout,
    )
