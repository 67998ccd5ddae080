"""``create_trace_config``: a trace config whose callbacks (``_hooks``) trace every request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider
from yarl import URL

from ._hooks import HookOptions, Hooks, RequestContext, RequestHook, ResponseHook
from ._http_conventions import captured_response_headers, excluded_urls, known_methods
from ._llm import LLMOptions
from ._metrics import Metrics
from ._registry import DEFAULT_SWEEP_INTERVAL, SpanRegistry
from ._version import __version__

if TYPE_CHECKING:
    from .adapters import Adapter

__all__ = ["SCHEMA_URL", "TracingTraceConfig", "create_trace_config"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"
"""The semantic-conventions version our attribute names follow (``gen_ai.provider.name``...)."""


class TracingTraceConfig(aiohttp.TraceConfig):
    """An ``aiohttp.TraceConfig`` that traces every request.

    ``registry`` holds the requests in flight.
    """

    registry: SpanRegistry


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
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    url_filter: Callable[[URL], str] | None = None,
    meter_provider: MeterProvider | None = None,
    content_format: str | None = None,
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
      ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says otherwise: ``false``,
      ``NO_CONTENT`` or ``EVENT_ONLY`` (we record content on spans only) turn it off; ``true``,
      ``SPAN_ONLY`` and ``SPAN_AND_EVENT`` keep it on. Usage, model and errors are recorded
      either way.
    * **content_format** - how recorded content leaves the process, once per span:
      ``"langfuse"`` (default; ``langfuse.observation.input``/``output`` in the API's own shape,
      which Langfuse reads first and renders in full), ``"gen_ai"`` (the semantic conventions'
      ``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``,
      ``gen_ai.tool.definitions``, for other backends) or ``"both"``; else
      ``AIOHTTP_LLM_TRACING_CONTENT_FORMAT``.
    * **mask** - called on every input and output before it is recorded; return the value to keep.
    * **max_body_bytes** - bytes of each request and response body kept for parsing (1 MiB).
    * **max_attribute_length** - characters per recorded content attribute (32 KiB); longer
      values are cut and end with a visible ``...[truncated N chars]`` marker.
    * **provider_name** - ``gen_ai.provider.name``; derived from the host by default.
    * **adapters** - the LLM API shapes to recognise; all built-in ones by default.
    * **request_hook** - ``hook(span, params)`` called once the span started
      (``params`` is aiohttp's ``TraceRequestStartParams``), as in OpenTelemetry's aiohttp-client
      instrumentation.
    * **response_hook** - ``hook(span, params)`` called when the headers arrived
      (``TraceRequestEndParams``) or the request failed (``TraceRequestExceptionParams``).
    * **url_filter** - ``filter(url) -> str`` for ``url.full`` (redaction still applies after).
    * **meter_provider** - where the GenAI and HTTP client metrics go (token usage, operation
      duration, time to first chunk, request duration); the global one by default, and free
      while none is configured.

    The HTTP conventions' environment variables apply as in the contrib instrumentation:
    ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS``, ``OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS``
    (or ``OTEL_PYTHON_EXCLUDED_URLS``) and
    ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE``. A hook that raises is
    counted as an internal error, never raised into the request.

    The callbacks never raise into the request: an internal failure is logged once and counted
    in ``registry.stats().internal_errors``.
    """
    if registry is None:
        registry = SpanRegistry(sweep_interval=sweep_interval)
    tracer = trace.get_tracer(
        "aiohttp_llm_tracing", __version__, tracer_provider, schema_url=SCHEMA_URL
    )
    options = (
        LLMOptions.from_env(
            capture_content=capture_content,
            mask=mask,
            max_body_bytes=max_body_bytes,
            max_attribute_length=max_attribute_length,
            provider_name=provider_name,
            adapters=adapters,
            content_format=content_format,
        )
        if llm
        else None
    )
    hooks = Hooks(
        HookOptions(
            tracer=tracer,
            registry=registry,
            request_id_header=request_id_header,
            propagate=propagate,
            llm=options,
            known_methods=known_methods(),
            excluded=excluded_urls(),
            url_filter=url_filter,
            request_hook=request_hook,
            response_hook=response_hook,
            response_headers=captured_response_headers(),
            metrics=Metrics(meter_provider, SCHEMA_URL),
        )
    )
    # aiohttp types its context as SimpleNamespace; ours is a slotted class with the same
    # role, so the casts are for the checker only (nothing runs per request).
    config = TracingTraceConfig(
        trace_config_ctx_factory=cast("type[SimpleNamespace]", RequestContext)
    )
    config.registry = registry
    config.on_request_start.append(cast(Any, hooks.on_request_start))
    config.on_request_redirect.append(cast(Any, hooks.on_request_redirect))
    config.on_request_end.append(cast(Any, hooks.on_request_end))
    config.on_request_exception.append(cast(Any, hooks.on_request_exception))
    if options is not None:
        # Only LLM calls need the request body; plain tracing skips the per-chunk callback.
        config.on_request_chunk_sent.append(cast(Any, hooks.on_request_chunk_sent))
    return config
