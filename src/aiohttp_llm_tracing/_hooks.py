"""The aiohttp signal callbacks that start, follow and end each request's span."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from random import getrandbits
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.http import ExcludeList
from opentelemetry.util.types import AttributeValue
from yarl import URL

from . import _attributes as A
from ._context import _CURRENT, _EMPTY, from_request_ctx
from ._http_conventions import header_attributes
from ._inflight import HttpSpan
from ._llm import LLMOptions, match_llm_call
from ._metrics import Metrics
from ._propagation import inject
from ._reasons import EndReason
from ._redact import redact_url
from ._registry import SpanRegistry
from ._stream import TracedStream

__all__ = ["HookOptions", "Hooks", "RequestContext", "RequestHook", "ResponseHook"]

_SUPPRESS_KEYS = (
    otel_context._SUPPRESS_INSTRUMENTATION_KEY,
    otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY,
)
_PROTOCOLS = {aiohttp.HttpVersion10: "1.0", aiohttp.HttpVersion11: "1.1"}
# Version 4 in bits 76-79, variant 10 in bits 62-63 (RFC 4122 section 4.4).
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET = (0x4 << 76) | (0x2 << 62)

RequestHook = Callable[[Span, aiohttp.TraceRequestStartParams], None]
ResponseHook = Callable[
    [Span, "aiohttp.TraceRequestEndParams | aiohttp.TraceRequestExceptionParams"], None
]


def _protocol(version: aiohttp.HttpVersion | None) -> str | None:
    if version is None:
        return None
    return _PROTOCOLS.get(version) or f"{version.major}.{version.minor}"


def _uuid4() -> str:
    """A random RFC 4122 version-4 UUID string, like ``str(uuid.uuid4())`` at a third of the cost.

    From ``random`` rather than ``os.urandom``, as the SDK's own trace and span IDs are: an ID
    that only has to be unique needs no system call, and ``random`` reseeds in a forked child.
    """
    h = f"{getrandbits(128) & _UUID_CLEAR | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RequestContext:
    """What aiohttp keeps per request and trace config; slots keep it cheap."""

    __slots__ = ("entry", "trace_request_ctx")

    def __init__(self, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self.entry: HttpSpan | None = None


@dataclass(frozen=True)
class HookOptions:
    """Everything the callbacks need, resolved once when the trace config is built."""

    tracer: trace.Tracer
    registry: SpanRegistry
    request_id_header: str | None
    propagate: bool
    llm: LLMOptions | None
    known_methods: frozenset[str]
    excluded: ExcludeList | None
    url_filter: Callable[[URL], str] | None
    request_hook: RequestHook | None
    response_hook: ResponseHook | None
    response_headers: tuple[str, ...]
    metrics: Metrics | None


class Hooks:
    """The callbacks. Each one catches everything: tracing must never fail a request."""

    __slots__ = (
        "_excluded",
        "_header",
        "_known",
        "_llm",
        "_metrics",
        "_options",
        "_propagate",
        "_registry",
        "_request_hook",
        "_tracer",
        "_url_filter",
    )

    def __init__(self, options: HookOptions) -> None:
        # The fields read on every request as plain slots: a slot read is cheaper than a
        # dataclass attribute, and every traced request pays for each one.
        self._options = options
        self._tracer = options.tracer
        self._registry = options.registry
        self._header = options.request_id_header
        self._propagate = options.propagate
        self._llm = options.llm
        self._known = options.known_methods
        self._excluded = options.excluded
        self._url_filter = options.url_filter
        self._request_hook = options.request_hook
        self._metrics = options.metrics

    async def on_request_start(
        self, session: Any, ctx: RequestContext, params: aiohttp.TraceRequestStartParams
    ) -> None:
        try:
            current = otel_context.get_current()
            if current and (current.get(_SUPPRESS_KEYS[0]) or current.get(_SUPPRESS_KEYS[1])):
                return
            # aiohttp before 3.14 passes the method as the caller spelt it (google-genai: "post").
            method = params.method.upper()
            url = params.url
            if self._excluded is not None and self._excluded.url_disabled(str(url)):
                return
            request_id = _uuid4()
            known = method in self._known
            attributes: dict[str, AttributeValue] = {
                A.HTTP_REQUEST_METHOD: method if known else "_OTHER",
                A.URL_FULL: redact_url(url) if self._url_filter is None else self._filtered(url),
                A.SERVER_ADDRESS: url.raw_host or "",
                A.SERVER_PORT: url.port or 0,
                A.REQUEST_ID: request_id,
            }
            if not known:
                attributes[A.HTTP_REQUEST_METHOD_ORIGINAL] = method
            trace_attrs = _CURRENT.get()
            if ctx.trace_request_ctx is not None:
                trace_attrs = trace_attrs.merged(from_request_ctx(ctx.trace_request_ctx))
            if trace_attrs is not _EMPTY:
                attributes.update(trace_attrs.span_attributes)
            # Only a POST can be an LLM call: every other request skips the matching.
            call = (
                match_llm_call(self._llm, method, url, trace_attrs)
                if method == "POST" and self._llm is not None
                else None
            )
            if call is not None:
                call.add_start_attributes(attributes)
                call.request_headers = params.headers
                name = call.initial_name
            else:
                name = method if known else "HTTP"  # the conventions' name for an odd method
            span = self._tracer.start_span(
                name, context=current, kind=SpanKind.CLIENT, attributes=attributes
            )
            metrics = self._metrics
            metered = metrics is not None and metrics.enabled  # read once per request
            recording = span.is_recording()
            counted = recording
            if not recording:
                # Sampled out: only the metrics can still use the call (with its own clock, as
                # the span has no start time); without them, its bodies are not copied at all.
                counted = metered
                if not counted:
                    call = None
            if call is not None:
                # Time to first chunk counts from the span's own start, not from before it.
                started = getattr(span, "start_time", None)
                if isinstance(started, int):
                    call.started_ns = started
            # The start attributes are kept for the metrics alone (the span's own are read if a
            # meter provider comes in the meantime).
            entry = HttpSpan(
                span, request_id, self._registry, call, metrics, attributes if metered else None
            )
            if counted and not recording:
                entry.started_ns = time.time_ns()
            # Registered before anything else can fail, so every started span has an owner.
            try:
                self._registry.register(request_id, entry)
            except Exception:
                span.end()  # no owner would ever end it: ended now, bare, and the error counted
                raise
            ctx.entry = entry
            headers = params.headers
            if self._header is not None:
                sent = headers.setdefault(self._header, request_id)
                if sent != request_id:
                    span.set_attribute(A.REQUEST_ID, sent)
            if self._propagate:
                inject(headers, span, current)
            if self._request_hook is not None:
                self._call_hook("request_hook", self._request_hook, span, params)
        except Exception as exc:
            self._registry.record_internal_error("on_request_start", exc)

    def _filtered(self, url: URL) -> str:
        """``url.full`` through the user's ``url_filter``, then redacted all the same."""
        try:
            return redact_url(URL(self._options.url_filter(url)))  # type: ignore[misc]
        except Exception as exc:
            self._registry.record_internal_error("url_filter", exc)
            return redact_url(url)

    def _call_hook(self, site: str, hook: Callable[..., Any], span: Span, params: Any) -> None:
        # The user's code: its failure is counted, never raised into the request.
        try:
            hook(span, params)
        except Exception as exc:
            self._registry.record_internal_error(site, exc)

    async def on_request_chunk_sent(
        self, session: Any, ctx: RequestContext, params: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        entry = ctx.entry
        if entry is None or entry.llm is None or entry.ended:
            return
        try:
            entry.llm.feed_request(params.chunk)
        except Exception as exc:
            self._registry.record_internal_error("on_request_chunk_sent", exc)

    async def on_request_redirect(
        self, session: Any, ctx: RequestContext, params: aiohttp.TraceRequestRedirectParams
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
        self, session: Any, ctx: RequestContext, params: aiohttp.TraceRequestEndParams
    ) -> None:
        entry = ctx.entry
        if entry is None or entry.ended:
            return
        try:
            response = params.response
            # Recorded at the end, with the other end attributes, in one call.
            entry.status_code = response.status
            entry.protocol = _protocol(response.version)
            options = self._options
            if options.response_headers:
                entry.extra = header_attributes(response.headers, options.response_headers)
            if options.response_hook is not None:
                self._call_hook("response_hook", options.response_hook, entry.span, params)
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
        self, session: Any, ctx: RequestContext, params: aiohttp.TraceRequestExceptionParams
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
            hook = self._options.response_hook
            if hook is not None and not entry.ended:
                self._call_hook("response_hook", hook, entry.span, params)
            self._registry.end(entry.request_id, reason, error)
        except Exception as exc:
            self._registry.record_internal_error("on_request_exception", exc)
