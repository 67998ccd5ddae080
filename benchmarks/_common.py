"""Helpers shared by the benchmark scripts: the server process, a no-op exporter and the floor
tracer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

HERE = Path(__file__).resolve().parent

CHAT_BODY = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
}
"""The chat request of the loopback benchmarks (overhead.py, sse_chunk.py)."""


@contextmanager
def server_process(cpu: int | None = None) -> Iterator[str]:
    """Start ``_server.py`` in its own process; yield its base URL; stop it by PID."""
    with _server(HERE / "_server.py", [], [], cpu) as url:
        yield url


@contextmanager
def _server(script: Path, flags: list[str], args: list[str], cpu: int | None) -> Iterator[str]:
    """Run ``script *flags PORT_FILE *args`` pinned to ``cpu``; yield its URL once the port is
    written; stop it by PID."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, str(script), *flags, str(port_file), *args]
        if cpu is not None and hasattr(os, "sched_setaffinity"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
        proc = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{script.name} server did not start")
                time.sleep(0.02)
            yield f"http://127.0.0.1:{port_file.read_text()}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def serve(app: web.Application, port_file: str) -> None:
    """Serve ``app`` on 127.0.0.1 (a free port, written to ``port_file``) until killed."""

    async def run() -> None:
        # Clients that walk away mid-body are part of the benchmarks; don't log each one.
        logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


class CountingExporter(SpanExporter):
    """Drops spans but counts them, so the export path runs without costing what is measured."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def floor_trace_config(provider, meter_provider=None):  # type: ignore[no-untyped-def]
    """The least a span per request can cost: start with two attributes, end with the status.

    No request ID, no registry, no propagation, no error or body handling: a reference point,
    not a usable tracer. Whatever any tracer adds costs on top of this. With ``meter_provider``
    it also records ``http.client.request.duration`` with the conventions' attributes, as any
    tracer with metrics on must: the SDK's own cost of one histogram record.
    """
    import time

    import aiohttp
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("floor")
    config = aiohttp.TraceConfig()
    histogram = (
        None
        if meter_provider is None
        else meter_provider.get_meter("floor").create_histogram(
            "http.client.request.duration", unit="s"
        )
    )

    async def start(session, ctx, params):  # type: ignore[no-untyped-def]
        ctx.span = tracer.start_span(
            params.method,
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": params.method, "url.full": str(params.url)},
        )
        ctx.t0 = time.perf_counter()

    async def end(session, ctx, params):  # type: ignore[no-untyped-def]
        ctx.span.set_attribute("http.response.status_code", params.response.status)
        ctx.span.end()
        if histogram is not None:
            url = params.url
            histogram.record(
                time.perf_counter() - ctx.t0,
                {
                    "http.request.method": params.method,
                    "http.response.status_code": params.response.status,
                    "server.address": url.raw_host,
                    "server.port": url.port,
                    "network.protocol.version": "1.1",
                },
            )

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    return config


def content_floor_trace_config(provider):  # type: ignore[no-untyped-def]
    """The floor with our span's content: the same name, the same eight attributes (the HTTP
    conventions' five at the start with our request ID, status, protocol and end reason at the
    end) and the same two headers (``X-Request-ID``, ``traceparent``), written as directly as
    the SDK allows, with no registry, no exactly-once end and no LLM check.

    What it costs above ``floor_trace_config`` is what the span's content costs in the SDK;
    what ours costs above it is our lifecycle.
    """
    from random import getrandbits

    import aiohttp
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("floor")
    config = aiohttp.TraceConfig()

    async def start(session, ctx, params):  # type: ignore[no-untyped-def]
        url = params.url
        h = f"{getrandbits(128):032x}"
        request_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        span = ctx.span = tracer.start_span(
            params.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": params.method,
                "url.full": str(url),
                "server.address": url.raw_host,
                "server.port": url.port,
                "llm_tracing.request_id": request_id,
            },
        )
        headers = params.headers
        headers.setdefault("X-Request-ID", request_id)
        sc = span.get_span_context()
        headers["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"

    async def end(session, ctx, params):  # type: ignore[no-untyped-def]
        ctx.span.set_attributes(
            {
                "llm_tracing.end_reason": "response",
                "http.response.status_code": params.response.status,
                "network.protocol.version": "1.1",
            }
        )
        ctx.span.end()

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    return config


def export_ref(ref: str, into: Path) -> Path:
    """``src/`` of ``ref``, written under ``into``; the folder to put on ``PYTHONPATH``."""
    root = (
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=HERE, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"], cwd=root, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


REF_SRC_ENV = "LLM_PEERS_REF_SRC"
"""Where the ``ours_ref`` mode of the peers' worker imports aiohttp_llm_tracing from."""


@contextmanager
def ref_source(ref: str | None) -> Iterator[None]:
    """With ``ref`` given, its ``src/`` exported for the ``ours_ref`` mode while in the block."""
    if ref is None:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="llm-tracing-ref-") as tmp:
        os.environ[REF_SRC_ENV] = str(export_ref(ref, Path(tmp)))
        try:
            yield
        finally:
            os.environ.pop(REF_SRC_ENV, None)


def pin_to_cpu(cpu: int) -> None:
    """Run this process on ``cpu`` alone, where the OS allows it (Linux), so that what is
    measured does not migrate between cores mid-run."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def write_report(out: str | Path, report: dict) -> None:  # type: ignore[type-arg]
    """Write a benchmark's report as indented JSON to ``out``, making its folder if needed."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def round_order(items: list, r: int) -> list:  # type: ignore[type-arg]
    """Round ``r``'s running order: rotated by ``r``, and reversed every other round.

    Rotation alone keeps each item right behind the same neighbour almost every round (the one
    after bare always pays for following it); reversing on odd rounds gives it both neighbours.
    """
    shift = r % len(items)
    order = items[shift:] + items[:shift]
    return order[::-1] if r % 2 else order


@contextmanager
def script_server(script: Path, *args: str, cpu: int | None = None) -> Iterator[str]:
    """Run ``script --serve PORT_FILE *args`` as a server process; yield its base URL; stop it.

    The same as :func:`server_process` for a script that serves its own app (see :func:`serve`).
    """
    with _server(script, ["--serve"], list(args), cpu) as url:
        yield url


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def null_meter_provider():  # type: ignore[no-untyped-def]
    """A MeterProvider whose reader exports nowhere: metrics recorded as a user's would be."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )

    class _Null(MetricExporter):
        def export(self, metrics_data, timeout_millis=0, **kwargs):  # type: ignore[no-untyped-def]
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=0):  # type: ignore[no-untyped-def]
            return True

        def shutdown(self, timeout_millis=0, **kwargs):  # type: ignore[no-untyped-def]
            pass

    reader = PeriodicExportingMetricReader(_Null(), export_interval_millis=60_000)
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
