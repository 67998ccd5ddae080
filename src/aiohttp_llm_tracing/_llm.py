"""The LLM layer: turns a traced request to a known LLM API into a complete generation span.

Nothing here runs for other requests. For an LLM call the request body is copied as it is sent,
the response body as the caller reads it (both capped), and everything is parsed once, when the
span ends: decode, parse JSON or SSE, let the adapter extract facts, write attributes.

When a body cannot be described in full, the span says why (values joined by ``", "`` when
both sides apply):

* ``llm_tracing.body_truncated`` - ``request`` and/or ``response``: the body was longer than
  ``max_body_bytes``. Model, id, sampling parameters and usage are still recovered from the two
  ends of a cut JSON body, and a stream's closing events (usage, finish reason) from the 64 KiB
  tail window; content past the cap is not recorded.
* ``llm_tracing.parse_error`` - ``request: not JSON``, ``response: not JSON``,
  ``response: unrecognised JSON shape`` (valid JSON, but nothing the adapter knows),
  ``response: no recognised events``, ``response: event stream cut off mid-event`` (read to the
  end, but the last event never finished), or ``request|response: <Exception> in the adapter``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from yarl import URL

from . import _attributes as A
from ._capture import BodyCapture
from ._context import TraceAttributes
from ._exportable import exportable_str
from ._framing import stream_kind
from ._http_conventions import llm_header_attributes
from ._llm_attributes import cut, mark, request_attributes, response_attributes
from ._llm_bodies import error_snippet, read_request, read_response
from ._llm_fast import chat_attributes
from ._media import elide_media
from ._redact import _SENSITIVE_QUERY, redact_secrets
from .adapters import DEFAULT_ADAPTERS, Adapter, OpenAIChat, ParsedRequest, ParsedResponse
from .adapters._common import MESSAGES_WANTED

if TYPE_CHECKING:
    from aiohttp import ClientResponse

    from ._inflight import HttpSpan

__all__ = ["DEFAULT_MAX_ATTRIBUTE_LENGTH", "DEFAULT_MAX_BODY_BYTES", "LLMCall", "LLMOptions"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Bytes of each body kept for parsing (plus a 64 KiB tail of longer response bodies)."""
DEFAULT_MAX_ATTRIBUTE_LENGTH = 32 << 10
"""Characters per recorded content attribute before it is cut with a visible marker."""
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CONTENT_FORMAT_ENV = "AIOHTTP_LLM_TRACING_CONTENT_FORMAT"
CONTENT_FORMATS = ("langfuse", "gen_ai", "both")
ContentFormat = Literal["langfuse", "gen_ai", "both"]
_logger = logging.getLogger("aiohttp_llm_tracing")
_CONTENT_OFF = frozenset({"false", "0", "no", "off", "no_content", "event_only"})
_REQUEST_TAIL = 4096
# Headers until the real ones are known: one shared empty mapping, not two dicts a call.
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

_PROVIDER_BY_HOST = (
    (".openai.azure.com", "azure.ai.openai"),
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("openrouter.ai", "openrouter"),
)


@dataclass(frozen=True)
class LLMOptions:
    """How LLM calls are recognised and what of them is recorded."""

    capture_content: bool = True
    mask: Callable[[Any], Any] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_attribute_length: int = DEFAULT_MAX_ATTRIBUTE_LENGTH
    provider_name: str | None = None
    adapters: tuple[Adapter, ...] = DEFAULT_ADAPTERS
    content_format: ContentFormat = "langfuse"

    @property
    def langfuse_content(self) -> bool:
        """Content goes out as ``langfuse.observation.input``/``output``."""
        return self.capture_content and self.content_format != "gen_ai"

    @property
    def gen_ai_content(self) -> bool:
        """Content goes out as ``gen_ai.input.messages``/``output.messages``/... ."""
        return self.capture_content and self.content_format != "langfuse"

    @classmethod
    def from_env(
        cls,
        *,
        capture_content: bool | None,
        mask: Callable[[Any], Any] | None,
        max_body_bytes: int | None,
        max_attribute_length: int | None,
        provider_name: str | None,
        adapters: Sequence[Adapter] | None,
        content_format: str | None = None,
    ) -> LLMOptions:
        """Explicit arguments first, then the environment, then the defaults."""
        if capture_content is None:
            env = os.environ.get(CAPTURE_ENV, "").strip().lower()
            # The GenAI utilities' values too: content goes on spans for SPAN_ONLY and
            # SPAN_AND_EVENT; EVENT_ONLY asks for events, which we do not emit, so none.
            capture_content = env not in _CONTENT_OFF
        adapters = tuple(adapters) if adapters is not None else DEFAULT_ADAPTERS
        if content_format is None:
            content_format = os.environ.get(CONTENT_FORMAT_ENV, "").strip().lower() or "langfuse"
            if content_format not in CONTENT_FORMATS:
                _logger.warning(
                    "aiohttp-llm-tracing: %s=%r is not one of %s; using langfuse",
                    CONTENT_FORMAT_ENV,
                    content_format,
                    CONTENT_FORMATS,
                )
                content_format = "langfuse"
        elif content_format not in CONTENT_FORMATS:
            raise ValueError(f"content_format must be one of {CONTENT_FORMATS}")
        return cls(
            content_format=content_format,  # type: ignore[arg-type]
            capture_content=capture_content,
            mask=mask,
            max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
            max_attribute_length=max_attribute_length or DEFAULT_MAX_ATTRIBUTE_LENGTH,
            provider_name=provider_name,
            adapters=adapters,
        )

    @property
    def suffixes(self) -> tuple[str, ...]:
        cached = self.__dict__.get("_suffixes")
        if cached is None:
            cached = tuple(s for a in self.adapters for s in a.path_suffixes)
            object.__setattr__(self, "_suffixes", cached)
        return cached


def match_llm_call(
    options: LLMOptions, method: str, url: URL, trace_attrs: TraceAttributes
) -> LLMCall | None:
    """An :class:`LLMCall` if this request is to a known LLM API, else ``None`` (cheaply)."""
    if method != "POST":
        return None
    path = url.raw_path
    if not path.endswith(options.suffixes):
        return None
    for adapter in options.adapters:
        if adapter.matches(path):
            return LLMCall(options, adapter, url, trace_attrs)
    return None


class LLMCall:
    """One LLM request in flight: its captured bodies and how to describe it at the end."""

    __slots__ = (
        "adapter",
        "content_encoding",
        "failures",
        "options",
        "path",
        "provider",
        "provider_fixed",
        "redirected_body",
        "request_body",
        "request_headers",
        "response_body",
        "response_headers",
        "started_ns",
        "stream_kind",
        "trace_attrs",
        "url",
    )

    def __init__(
        self, options: LLMOptions, adapter: Adapter, url: URL, trace_attrs: TraceAttributes
    ) -> None:
        self.options = options
        self.adapter = adapter
        self.url = url
        self.path = url.raw_path
        self.trace_attrs = trace_attrs
        # Read only if the API sends an error back: its credentials are scrubbed from the text.
        self.request_headers: Mapping[str, str] = _NO_HEADERS
        self.response_headers: Mapping[str, str] = _NO_HEADERS
        named = options.provider_name or _provider_by_host(url.raw_host or "")
        # Named by the caller or the host: the body cannot override it.
        self.provider_fixed = named is not None
        self.provider = named or _provider_by_path(adapter, self.path)
        # A short tail: a big request's model may be its last field.
        self.request_body = BodyCapture(options.max_body_bytes, tail_limit=_REQUEST_TAIL)
        self.redirected_body: BodyCapture | None = None
        self.response_body: BodyCapture | None = None
        self.content_encoding: str | None = None
        self.stream_kind: str | None = None
        # Created by the first failure: each object an in-flight call holds is one more for the
        # garbage collector to count (docs/performance.md, "Objects per call").
        self.failures: list[tuple[str, Exception]] | None = None
        self.started_ns = time.time_ns()

    def add_start_attributes(self, attributes: dict[str, Any]) -> None:
        """Add the attributes the span starts with to ``attributes``."""
        adapter = self.adapter
        attributes[A.GEN_AI_OPERATION_NAME] = adapter.operation
        attributes[A.GEN_AI_PROVIDER_NAME] = self.provider
        attributes[A.LANGFUSE_OBSERVATION_TYPE] = adapter.observation_type

    def failed(self, site: str, error: Exception) -> None:
        """Note a failure in our own code at ``site``; the end counts each site once."""
        if self.failures is None:
            self.failures = []
        self.failures.append((site, error))

    @property
    def initial_name(self) -> str:
        """The span name until the model is known."""
        name = self.trace_attrs.name
        return exportable_str(name) if name else self.adapter.operation

    def captured_bytes(self) -> int:
        """About how many bytes the end's parse will read: both bodies as captured, a
        compressed response counted as it will inflate (JSON and SSE compress 4-10 times)."""
        response = self.response_body
        size = 0 if response is None else response.total
        if self.content_encoding:
            size *= 8
        return self.request_body.total + size

    def feed_request(self, chunk: bytes) -> None:
        """Capture a chunk of the request body as it is sent, base64 media elided first so a
        large image does not push the prompt's text past the cap."""
        self.request_body.feed(elide_media(chunk))

    def on_redirect(self) -> None:
        """A redirect: the next request starts its body afresh.

        A 307/308 sends the body again, which must not land after the first copy; a 301-303
        turns the request into a GET without one, and then the first copy is what is parsed.
        """
        if self.request_body.total:
            self.redirected_body = self.request_body
            self.request_body = BodyCapture(self.options.max_body_bytes, tail_limit=_REQUEST_TAIL)

    def on_response(self, response: ClientResponse) -> BodyCapture:
        """Headers arrived: decide how the body will be read back and start capturing it."""
        headers = self.response_headers = response.headers
        self.stream_kind = stream_kind(headers.get("Content-Type", ""))
        self.content_encoding = headers.get("Content-Encoding")
        # Timed whatever the type: a JSON array can be a stream too (Gemini without alt=sse),
        # and a plain JSON body costs one clock read per read, of which it has a few.
        self.response_body = BodyCapture(self.options.max_body_bytes, timed=True)
        return self.response_body

    # -- the end -------------------------------------------------------------------------------

    def finish(self, attributes: dict[str, Any], entry: HttpSpan, reason: str) -> str | None:
        """Parse what was captured and add the generation's attributes to ``attributes``.

        Returns the API's error message when the body reported one, for the span's status.
        """
        adapter = self.adapter
        if adapter.__class__ is OpenAIChat and not adapter.__dict__:
            # Exactly the built-in adapter: a subclass, or a method patched on the instance,
            # may parse differently.
            try:
                fast = chat_attributes(self, entry.status_code, reason)
            except Exception as exc:  # counted; the general path still describes the call
                self.failed("llm.fast_path", exc)
                fast = None
            if fast is not None:
                request_model, model, generation = fast
                attributes.update(llm_header_attributes(self.response_headers))
                self._name(entry, request_model, model)
                attributes.update(generation)
                return None
        # The GenAI message schema is built only when it is exported.
        token = MESSAGES_WANTED.set(self.options.gen_ai_content)
        try:
            request, response = self._parse(attributes, reason)
        finally:
            MESSAGES_WANTED.reset(token)
        if response is not None and response.wrong_types:
            fields = ", ".join(response.wrong_types)
            mark(attributes, A.PARSE_ERROR, f"response: wrong JSON types in {fields}")
        # The provider's request ID and rate-limit state: what a support ticket or a 429 needs.
        attributes.update(llm_header_attributes(self.response_headers))
        if request.provider and not self.provider_fixed:
            attributes[A.GEN_AI_PROVIDER_NAME] = request.provider
        if response is not None and response.error_message:
            # The API's own words, content capture or not: never with a key it echoed back.
            response.error_message = self._redact(response.error_message)
        model = (response.model if response else None) or request.model
        self._name(entry, request.model, model)
        request_attributes(attributes, request, self)
        message = None
        if response is not None:
            response_attributes(attributes, response, model, self)
            if response.error_message:
                # Also when the HTTP exchange succeeded but the API reported a failure in the body.
                message = cut(response.error_message, self.options.max_attribute_length)
        elif entry.status_code >= 400:
            # An error page that is not an API error body (a proxy's HTML, plain text): its
            # first line is the best description there is.
            snippet = error_snippet(self)
            if snippet:
                attributes[A.LANGFUSE_OBSERVATION_STATUS_MESSAGE] = self._redact(snippet)
                attributes[A.LANGFUSE_OBSERVATION_LEVEL] = "ERROR"
        if self.failures:
            for site, failure in dict(reversed(self.failures)).items():  # once per site, the first
                entry.internal_error(site, failure)
        return message

    def _name(self, entry: HttpSpan, request_model: str | None, model: str | None) -> None:
        """``{operation} {model}``, the conventions' span name, unless the caller named it."""
        if self.trace_attrs.name is None:
            operation = self.adapter.operation
            name = f"{operation} {request_model or model}" if model else operation
            entry.span.update_name(exportable_str(name))

    def _parse(
        self, attributes: dict[str, Any], reason: str
    ) -> tuple[ParsedRequest, ParsedResponse | None]:
        # Adapters read arbitrary JSON; one that trips over it costs its half, not the span.
        try:
            request = read_request(self, attributes)
        except Exception as exc:
            self.failed("llm.parse_request", exc)
            mark(attributes, A.PARSE_ERROR, f"request: {type(exc).__name__} in the adapter")
            request = ParsedRequest()
        try:
            response = read_response(self, attributes, reason, request.stream)
        except Exception as exc:
            self.failed("llm.parse_response", exc)
            mark(attributes, A.PARSE_ERROR, f"response: {type(exc).__name__} in the adapter")
            response = None
        return request, response

    def _redact(self, text: str) -> str:
        """``text`` from the server, with URLs, tokens and this request's credentials redacted."""
        secrets: list[str] = []
        for name in _CREDENTIAL_HEADERS:
            value = self.request_headers.get(name)
            if value:
                secrets.append(value.split(" ", 1)[-1])  # "Bearer sk-..." -> "sk-..."
        for name, value in self.url.query.items():
            if value and _SENSITIVE_QUERY.search(name):
                secrets.append(value)
        return redact_secrets(text, tuple(secrets))


_CREDENTIAL_HEADERS = (
    "Authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "X-Amz-Security-Token",
)


def _provider_by_path(adapter: Adapter, path: str) -> str:
    # One API shape can be served by several providers (Gemini on AI Studio or Vertex AI).
    by_path = getattr(adapter, "provider_for", None)
    return by_path(path) if by_path is not None else adapter.provider


@functools.lru_cache(maxsize=256)
def _provider_by_host(host: str) -> str | None:
    # Keyed on the host alone: adapters are the user's objects and need not be hashable.
    for suffix, name in _PROVIDER_BY_HOST:
        if host.endswith(suffix):
            return name
    return None
