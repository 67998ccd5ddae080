"""Testing helpers for users: a pytest plugin with an in-memory span exporter.

Installed as a pytest plugin by the package; use the ``llm_tracing`` fixture (or
``llm_tracing_instrumented``, which traces every session the test creates, SDKs' included)::

    async def test_agent(llm_tracing):
        async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as s:
            await run_agent(s)
        assert llm_tracing.spans()[0].name == "chat gpt-4o-mini"

Requests mocked with `aioresponses <https://pypi.org/project/aioresponses-ng/>`_ never reach
aiohttp's request code, so no trace signal fires and a plain ``aioresponses()`` yields no spans.
Use ``llm_tracing_aioresponses`` (or :func:`traced_aioresponses` in place of ``aioresponses()``)
and mocked requests produce the same spans as real ones::

    async def test_chat(llm_tracing, llm_tracing_aioresponses):
        llm_tracing_aioresponses.post(URL, payload=CHAT_COMPLETION)
        async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as s:
            async with s.post(URL, json={"model": "gpt-4o-mini", "messages": [...]}) as r:
                await r.json()
        (span,) = llm_tracing.spans()
        assert span.attributes["gen_ai.usage.output_tokens"] == 9
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from . import _deferred, _finisher
from ._registry import SpanRegistry
from ._trace_config import TracingTraceConfig, create_trace_config

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = [
    "TracingFixture",
    "llm_tracing",
    "llm_tracing_aioresponses",
    "llm_tracing_instrumented",
    "llm_tracing_process",
    "traced_aioresponses",
]


class TracingFixture:
    """An isolated provider, exporter, registry and trace config for one test.

    Spans are exported synchronously as they end, so a test can assert right after the request.
    Keyword options are passed on to :func:`create_trace_config`.
    """

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.registry = SpanRegistry(sweep_interval=None)
        self.trace_config: TracingTraceConfig = create_trace_config(
            tracer_provider=self.provider, registry=self.registry, **options
        )

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended (large LLM calls finished off the loop
        included: they are waited for)."""
        _deferred.drain()
        _finisher.drain()
        return list(self.exporter.get_finished_spans())

    def assert_settled(self) -> None:
        """Assert that every span started has ended exactly once, nothing is in flight and no
        internal error was counted: what every test of traced code can check last."""
        stats = self.registry.stats()
        spans = self.spans()
        assert len(self.registry) == 0, f"{len(self.registry)} spans still in flight"
        assert stats.ended_total == stats.started == len(spans), (stats, len(spans))
        assert stats.internal_errors == 0, f"{stats.internal_errors} internal errors"

    def close(self) -> None:
        """End whatever is still in flight (as ``shutdown``) and shut the provider down."""
        self.registry.close()
        self.provider.shutdown()


@pytest.fixture
def llm_tracing() -> Iterator[TracingFixture]:
    """A :class:`TracingFixture`; attach ``llm_tracing.trace_config`` to your ClientSession."""
    fixture = TracingFixture()
    yield fixture
    fixture.close()


@pytest.fixture
def llm_tracing_instrumented() -> Iterator[TracingFixture]:
    """A :class:`TracingFixture` that every ``ClientSession`` created during the test reports
    to, the sessions that SDKs build for themselves included (through
    :class:`AiohttpLLMInstrumentor`, uninstrumented again afterwards)."""
    from .instrumentation import AiohttpLLMInstrumentor

    fixture = TracingFixture()
    instrumentor = AiohttpLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("llm_tracing_instrumented: the process is instrumented already")
    instrumentor.instrument(tracer_provider=fixture.provider, registry=fixture.registry)
    if instrumentor.trace_config is None or not instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("llm_tracing_instrumented: instrument() did not run (disabled?)")
    fixture.trace_config = instrumentor.trace_config
    try:
        yield fixture
    finally:
        instrumentor.uninstrument()
        fixture.close()


class _Forward(SpanProcessor):
    """Hands every span the global provider ends to the current test's exporter, if any."""

    def __init__(self) -> None:
        self.target: InMemorySpanExporter | None = None

    def on_end(self, span: ReadableSpan) -> None:
        target = self.target
        if target is not None:
            target.export([span])


_FORWARD = _Forward()
_forwarding = False


def _forward_global_spans() -> None:
    """Make sure every span of the global provider passes :data:`_FORWARD` (once a process)."""
    global _forwarding
    if _forwarding:
        return
    current = otel_trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        # Only the API's placeholder: install an SDK provider (the process had none; the
        # application's own spans then go through it too).
        otel_trace.set_tracer_provider(TracerProvider())
        current = otel_trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        raise RuntimeError("llm_tracing_process: the global tracer provider is not the SDK's")
    current.add_span_processor(_FORWARD)
    _forwarding = True


@pytest.fixture
def llm_tracing_process() -> Iterator[TracingFixture]:
    """A :class:`TracingFixture` that sees every span of the process during the test: the
    sessions the instrumentor reaches (SDKs' own included) and the trace configs the application
    builds itself on the global tracer provider (an SDK provider is installed as the global one
    if the process has none). Spans of configs given another ``tracer_provider`` are not seen.
    """
    from .instrumentation import AiohttpLLMInstrumentor

    _forward_global_spans()
    fixture = TracingFixture()
    instrumentor = AiohttpLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("llm_tracing_process: the process is instrumented already")
    instrumentor.instrument(registry=fixture.registry)
    if instrumentor.trace_config is None or not instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("llm_tracing_process: instrument() did not run (disabled?)")
    fixture.trace_config = instrumentor.trace_config
    _FORWARD.target = fixture.exporter
    try:
        yield fixture
    finally:
        instrumentor.uninstrument()
        fixture.close()
        _FORWARD.target = None


@pytest.fixture
def llm_tracing_aioresponses() -> Iterator[Any]:
    """A started :func:`traced_aioresponses` mock: register responses on it as usual.

    Every session's trace configs see the mocked requests, ``llm_tracing``'s included.
    """
    with traced_aioresponses() as mocked:
        yield mocked


def traced_aioresponses(**kwargs: Any) -> Any:
    """An ``aioresponses`` mock whose requests fire the session's trace signals.

    A drop-in for ``aioresponses(**kwargs)``: the same matching, responses and assertions, plus
    ``on_request_start``, ``on_request_chunk_sent``, ``on_request_redirect`` and then
    ``on_request_end`` (or ``on_request_exception``) in the order real aiohttp sends them. The
    response is the real ``ClientResponse`` that aioresponses built, so the body proxy sees the
    caller's reads and the span ends on the same path as for a real request. Headers the trace
    configs add (``traceparent``, ``X-Request-ID``) are not added to the recorded calls, so
    existing ``assert_called_with`` checks keep passing.
    """
    return _traced_class()(**kwargs)


@functools.cache
def _traced_class() -> type:
    # Built on first use: aioresponses is an optional test dependency, and this module is
    # imported by every pytest run in an environment where the package is installed.
    try:
        from aioresponses import aioresponses
    except ImportError as exc:
        raise ImportError(
            "traced_aioresponses needs aioresponses: pip install aioresponses-ng"
        ) from exc
    return type("TracedAioresponses", (_TracedMixin, aioresponses), {})


class _TracedMixin:
    """Wraps aioresponses' ``_request_mock`` with the trace signals aiohttp would send."""

    _matches: dict[str, Any]
    _passthrough: list[str]
    passthrough_unmatched: bool

    async def _request_mock(
        self, orig_self: aiohttp.ClientSession, method: str, url: Any, *args: Any, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        mock = super()._request_mock  # type: ignore[misc]
        if orig_self.closed or not _configs(orig_self):
            return await mock(orig_self, method, url, *args, **kwargs)
        method = method.upper()
        full_url = _full_url(orig_self, url, kwargs.get("params"))
        if not self._is_mocked(method, full_url):
            # Passed through to the real _request, which sends the signals itself.
            return await mock(orig_self, method, url, *args, **kwargs)
        data = kwargs.get("data")
        if data is not None and hasattr(data, "__aiter__"):
            # aioresponses drains async bodies too; doing it first lets the span see the bytes.
            kwargs["data"] = b"".join([chunk async for chunk in data])
        traces = _traces(orig_self, kwargs.get("trace_request_ctx"))
        # A copy: the trace configs add their headers to what "goes on the wire" without
        # changing the call that aioresponses records.
        headers = orig_self._prepare_headers(kwargs.get("headers"))
        for trace in traces:
            await trace.send_request_start(method, full_url, headers)
        try:
            body = _request_body(orig_self, kwargs)
            if body:
                for trace in traces:
                    await trace.send_request_chunk_sent(method, full_url, body)
            response = await mock(orig_self, method, url, *args, **kwargs)
            for hop in response.history:
                for trace in traces:
                    await trace.send_request_redirect(method, full_url, headers, hop)
        except BaseException as exc:
            for trace in traces:
                await trace.send_request_exception(method, full_url, headers, exc)
            raise
        for trace in traces:
            await trace.send_request_end(method, full_url, headers, response)
        return response

    def _is_mocked(self, method: str, url: URL) -> bool:
        from aioresponses.compat import normalize_url

        normalized = normalize_url(url)
        if any(str(normalized).startswith(prefix) for prefix in self._passthrough):
            return False
        if not self.passthrough_unmatched:
            # Unmatched requests fail with a connection error, which real requests trace too.
            return True
        return any(m.match(method, normalized) for m in self._matches.values())


def _full_url(session: aiohttp.ClientSession, url: Any, params: Any) -> URL:
    from aioresponses.compat import merge_params

    # What aiohttp passes to on_request_start: the base URL applied and params merged.
    return merge_params(session._build_url(url), params)


def _traces(session: aiohttp.ClientSession, trace_request_ctx: Any) -> list[Any]:
    from aiohttp.tracing import Trace

    return [
        Trace(session, config, config.trace_config_ctx(trace_request_ctx=trace_request_ctx))
        for config in _configs(session)
    ]


def _configs(session: aiohttp.ClientSession) -> list[aiohttp.TraceConfig]:
    # The private attribute: the public property only exists on newer aiohttp.
    return session._trace_configs


def _request_body(session: aiohttp.ClientSession, kwargs: dict[str, Any]) -> bytes | None:
    """The bytes aiohttp would send for ``json=`` or ``data=``, where they are known upfront."""
    json_value = kwargs.get("json")
    if json_value is not None:
        dumps_bytes = getattr(session, "_json_serialize_bytes", None)
        if dumps_bytes is not None:
            return bytes(dumps_bytes(json_value))
        return session.json_serialize(json_value).encode("utf-8")
    data = kwargs.get("data")
    if data is None:
        return None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (dict, list, tuple)):
        from aiohttp import FormData

        data = FormData(data)()
    value = getattr(data, "_value", None)  # aiohttp's bytes-backed payloads
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None
