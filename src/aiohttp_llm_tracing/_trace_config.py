"""``create_trace_config``: the aiohttp signal callbacks that start, follow and end each span."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, TracerProvider

from . import _attributes as A
from ._context import _CURRENT, _EMPTY, from_request_ctx
from ._inflight import HttpSpan
from ._llm import LLMOptions, match_llm_call
from ._reasons import EndReason
from ._redact import redact_url
from ._registry import DEFAULT_SWEEP_INTERVAL, SpanRegistry
from ._stream import TracedStream
from ._version import __version__

if TYPE_CHECKING:
    from .adapters import Adapter

__all__ = ["TracingTraceConfig", "create_trace_config"]

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_SUPPRESS_KEYS = (
    otel_context._SUPPRESS_INSTRUMENTATION_KEY,
    otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY,
)


_PROTOCOLS = {aiohttp.HttpVersion10: "1.0", aiohttp.HttpVersion11: "1.1"}
_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _protocol(version: aiohttp.HttpVersion | None) -> str | None:
    if version is None:
        return None
    return _PROTOCOLS.get(version) or f"{version.major}.{version.minor}"


def _uuid4() -> str:
    """A random RFC 4122 version-4 UUID string, like ``str(uuid.uuid4())`` at half the cost."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class TracingTraceConfig(aiohttp.TraceConfig):
    """An ``aiohttp.TraceConfig`` that traces every request.

    ``registry`` holds the requests in flight.
    """

    registry: SpanRegistry


class _RequestContext:
    # aiohttp builds one of these per request and trace config; slots keep it cheap.
    __slots__ = ("entry", "trace_request_ctx")

    def __init__(self, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self.entry: HttpSpan | None = None


def create_trace_config(
    *,
    tracer_provider: TracerProvider | None = None,
    registry: SpanRegistry | None = None,
    request_id_header: str | None = "X-Request-ID",
    propagate: bool = True,
    sweep_interval: float | None = DEFAULT_SWEEP_INTERVAL,
    llm: bool = True,
    capture_content: bool | None = None,
    mask: Callable[[Any], Any] | None = None,
    max_body_bytes: int | None = None,
    max_attribute_length: int | None = None,
    provider_name: str | None = None,
    adapters: Sequence[Adapter] | None = None,
) -> TracingTraceConfig:
    """Build a trace config to pass as ``aiohttp.ClientSession(trace_configs=[...])``.

    Every request gets one CLIENT span, parented on the caller's current span, held in
    ``registry`` under a fresh UUID4 and ended exactly once: when the body came with the headers,
    when the caller has read it to the end, when the response is released or closed early, when
    the request fails or is cancelled, or, failing all of those, by the registry's sweeper.
    Requests to a recognised LLM API become generation spans with model, messages, output and
    token usage.

    **Parameters:**

    * **tracer_provider** - where spans go; the global provider by default.
    * **registry** - the in-flight registry; a new :class:`SpanRegistry` by default. Share one
      between sessions to see all in-flight requests in one ``stats()``.
    * **request_id_header** - header that carries the request ID to the server (a caller's own
      value is kept); ``None`` sends none.
    * **propagate** - inject W3C ``traceparent``/``tracestate`` with the global propagator.
    * **sweep_interval** - seconds between sweeps of the default registry (ignored when
      ``registry`` is given).
    * **llm** - recognise LLM calls; ``False`` keeps every request a plain HTTP span.
    * **capture_content** - record messages and outputs. Default on, unless
      ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``false`` (or ``NO_CONTENT``).
    * **mask** - called on every input and output before it is recorded; return the value to keep.
    * **max_body_bytes** - bytes of each request and response body kept for parsing (1 MiB).
    * **max_attribute_length** - characters per recorded content attribute (32 KiB); longer
      values are cut and end with a visible ``...[truncated N chars]`` marker.
    * **provider_name** - ``gen_ai.provider.name``; derived from the host by default.
    * **adapters** - the LLM API shapes to recognise; all built-in ones by default.

    The callbacks never raise into the request: an internal failure is logged once and counted
    in ``registry.stats().internal_errors``.
    """
    if registry is None:
        registry = SpanRegistry(sweep_interval=sweep_interval)
    tracer = trace.get_tracer("aiohttp_llm_tracing", __version__, tracer_provider)
    options = (
        LLMOptions.from_env(
            capture_content=capture_content,
            mask=mask,
            max_body_bytes=max_body_bytes,
            max_attribute_length=max_attribute_length,
            provider_name=provider_name,
            adapters=adapters,
        )
        if llm
        else None
    )
    hooks = _Hooks(tracer, registry, request_id_header, propagate, options)
    config = TracingTraceConfig(trace_config_ctx_factory=_RequestContext)
    config.registry = registry
    config.on_request_start.append(hooks.on_request_start)
    config.on_request_redirect.append(hooks.on_request_redirect)
    config.on_request_end.append(hooks.on_request_end)
    config.on_request_exception.append(hooks.on_request_exception)
    if options is not None:
        # Only LLM calls need the request body; plain tracing skips the per-chunk callback.
        config.on_request_chunk_sent.append(hooks.on_request_chunk_sent)
    return config


class _Hooks:
    """The callbacks. Each one catches everything: tracing must never fail a request."""

    __slots__ = ("_header", "_llm", "_propagate", "_registry", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        registry: SpanRegistry,
        request_id_header: str | None,
        propagate_context: bool,
        llm: LLMOptions | None,
    ) -> None:
        self._tracer = tracer
        self._registry = registry
        self._header = request_id_header
        self._propagate = propagate_context
        self._llm = llm

    async def on_request_start(
        self, session: Any, ctx: _RequestContext, params: aiohttp.TraceRequestStartParams
    ) -> None:
        try:
            current = otel_context.get_current()
            if current.get(_SUPPRESS_KEYS[0]) or current.get(_SUPPRESS_KEYS[1]):
                return
            method = params.method
            url = params.url
            request_id = _uuid4()
            attributes = {
                A.HTTP_REQUEST_METHOD: method if method in _KNOWN_METHODS else "_OTHER",
                A.URL_FULL: redact_url(url),
                A.SERVER_ADDRESS: url.raw_host or "",
                A.SERVER_PORT: url.port or 0,
                A.REQUEST_ID: request_id,
            }
            if method not in _KNOWN_METHODS:
                attributes[A.HTTP_REQUEST_METHOD_ORIGINAL] = method
            trace_attrs = _CURRENT.get()
            if ctx.trace_request_ctx is not None:
                trace_attrs = trace_attrs.merged(from_request_ctx(ctx.trace_request_ctx))
            if trace_attrs is not _EMPTY:
                attributes.update(trace_attrs.span_attributes)
            call = (
                None if self._llm is None else match_llm_call(self._llm, method, url, trace_attrs)
            )
            if call is not None:
                attributes.update(call.start_attributes)
                call.request_headers = params.headers
            span = self._tracer.start_span(
                method if call is None else call.initial_name,
                context=current,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            entry = HttpSpan(span, request_id, self._registry, call)
            # Registered before anything else can fail, so every started span has an owner.
            self._registry.register(request_id, entry)
            ctx.entry = entry
            headers = params.headers
            if self._header is not None:
                sent = headers.setdefault(self._header, request_id)
                if sent != request_id:
                    span.set_attribute(A.REQUEST_ID, sent)
            if self._propagate:
                # Looked up per request: applications often set the global propagator after
                # building their sessions.
                propagate.inject(headers, context=trace.set_span_in_context(span, current))
        except Exception as exc:
            self._registry.record_internal_error("on_request_start", exc)

    async def on_request_chunk_sent(
        self, session: Any, ctx: _RequestContext, params: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        entry = ctx.entry
        if entry is None or entry.llm is None or entry.ended:
            return
        try:
            entry.llm.feed_request(params.chunk)
        except Exception as exc:
            self._registry.record_internal_error("on_request_chunk_sent", exc)

    async def on_request_redirect(
        self, session: Any, ctx: _RequestContext, params: aiohttp.TraceRequestRedirectParams
    ) -> None:
        entry = ctx.entry
        if entry is None or entry.ended:
            return
        try:
            entry.span.add_event(
                "http.redirect",
                {
                    A.HTTP_RESPONSE_STATUS_CODE: params.response.status,
                    A.URL_FULL: redact_url(params.url),
                },
            )
            if entry.llm is not None:
                entry.llm.on_redirect()
        except Exception as exc:
            self._registry.record_internal_error("on_request_redirect", exc)

    async def on_request_end(
        self, session: Any, ctx: _RequestContext, params: aiohttp.TraceRequestEndParams
    ) -> None:
        entry = ctx.entry
        if entry is None or entry.ended:
            return
        try:
            response = params.response
            # Recorded at the end, with the other end attributes, in one call.
            entry.status_code = response.status
            entry.protocol = _protocol(response.version)
            content = response.content
            if entry.llm is None:
                if content.is_eof():
                    self._registry.end(entry.request_id, EndReason.RESPONSE)
                    return
            else:
                entry.capture = entry.llm.on_response(response)
            proxy = TracedStream(content, entry)
            # Weak: an entry must not keep a dropped response's unread buffer alive for a TTL.
            entry.body = weakref.ref(proxy)
            response.content = proxy  # type: ignore[assignment]
        except Exception as exc:
            self._registry.record_internal_error("on_request_end", exc)

    async def on_request_exception(
        self, session: Any, ctx: _RequestContext, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        entry = ctx.entry
        if entry is None:
            return
        error = params.exception
        reason = (
            EndReason.CANCELLED
            if isinstance(error, asyncio.CancelledError)
            else EndReason.EXCEPTION
        )
        try:
            self._registry.end(entry.request_id, reason, error)
        except Exception as exc:
            self._registry.record_internal_error("on_request_exception", exc)
