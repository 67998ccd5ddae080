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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from yarl import URL

from . import _attributes as A
from ._capture import BodyCapture
from ._context import TraceAttributes
from ._decode import Decoded, decode
from ._framing import CUT_OFF, frame, stream_kind
from ._json import INVALID, dumps, loads
from ._media import elide_media
from ._reasons import EndReason
from ._sse import parse_sse
from ._truncated import top_level_fields
from .adapters import DEFAULT_ADAPTERS, Adapter, ParsedRequest, ParsedResponse

if TYPE_CHECKING:
    from aiohttp import ClientResponse

    from ._inflight import HttpSpan

__all__ = ["DEFAULT_MAX_ATTRIBUTE_LENGTH", "DEFAULT_MAX_BODY_BYTES", "LLMCall", "LLMOptions"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Bytes of each body kept for parsing (plus a 64 KiB tail of longer response bodies)."""
DEFAULT_MAX_ATTRIBUTE_LENGTH = 32 << 10
"""Characters per recorded content attribute before it is cut with a visible marker."""
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_REQUEST_TAIL = 4096

_PARAMETER_ATTRIBUTES = {
    "temperature": A.GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": A.GEN_AI_REQUEST_TOP_P,
    "top_k": A.GEN_AI_REQUEST_TOP_K,
    "frequency_penalty": A.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": A.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": A.GEN_AI_REQUEST_SEED,
}
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
    ) -> LLMOptions:
        """Explicit arguments first, then the environment, then the defaults."""
        if capture_content is None:
            env = os.environ.get(CAPTURE_ENV, "").strip().lower()
            capture_content = env not in ("false", "0", "no", "no_content", "off")
        adapters = tuple(adapters) if adapters is not None else DEFAULT_ADAPTERS
        return cls(
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
        "redirected_body",
        "request_body",
        "response_body",
        "start_attributes",
        "started_ns",
        "stream_kind",
        "trace_attrs",
    )

    def __init__(
        self, options: LLMOptions, adapter: Adapter, url: URL, trace_attrs: TraceAttributes
    ) -> None:
        self.options = options
        self.adapter = adapter
        self.path = url.raw_path
        self.trace_attrs = trace_attrs
        self.provider = (
            options.provider_name
            or _provider_by_host(url.raw_host or "")
            or _provider_by_path(adapter, self.path)
        )
        # A short tail: a big request's model may be its last field.
        self.request_body = BodyCapture(options.max_body_bytes, tail_limit=_REQUEST_TAIL)
        self.redirected_body: BodyCapture | None = None
        self.response_body: BodyCapture | None = None
        self.content_encoding: str | None = None
        self.stream_kind: str | None = None
        self.failures: list[tuple[str, Exception]] = []
        self.started_ns = time.time_ns()
        self.start_attributes = {
            A.GEN_AI_OPERATION_NAME: adapter.operation,
            A.GEN_AI_PROVIDER_NAME: self.provider,
            A.LANGFUSE_OBSERVATION_TYPE: adapter.observation_type,
        }

    @property
    def initial_name(self) -> str:
        """The span name until the model is known."""
        return self.trace_attrs.name or self.adapter.operation

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
        headers = response.headers
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
        # Adapters read arbitrary JSON; one that trips over it costs its half, not the span.
        try:
            request = self._parse_request(attributes)
        except Exception as exc:
            self.failures.append(("llm.parse_request", exc))
            _mark(attributes, A.PARSE_ERROR, f"request: {type(exc).__name__} in the adapter")
            request = ParsedRequest()
        try:
            response = self._parse_response(attributes, reason)
        except Exception as exc:
            self.failures.append(("llm.parse_response", exc))
            _mark(attributes, A.PARSE_ERROR, f"response: {type(exc).__name__} in the adapter")
            response = None
        model = (response.model if response else None) or request.model
        if self.trace_attrs.name is None:
            operation = self.adapter.operation
            entry.span.update_name(f"{operation} {request.model or model}" if model else operation)
        self._request_attributes(attributes, request)
        message = None
        if response is not None:
            self._response_attributes(attributes, response, model)
            if response.error_message:
                # Also when the HTTP exchange succeeded but the API reported a failure in the body.
                message = _cut(response.error_message, self.options.max_attribute_length)
        elif entry.status_code >= 400:
            # An error page that is not an API error body (a proxy's HTML, plain text): its
            # first line is the best description there is.
            snippet = self._error_snippet()
            if snippet:
                attributes[A.LANGFUSE_OBSERVATION_STATUS_MESSAGE] = snippet
                attributes[A.LANGFUSE_OBSERVATION_LEVEL] = "ERROR"
        for site, exc in dict(reversed(self.failures)).items():  # once per site, the first
            entry.internal_error(site, exc)
        return message

    def _error_snippet(self) -> str | None:
        body = self.response_body
        if body is None or not body.head:
            return None
        head = decode(bytes(body.head[:4096]), self.content_encoding, 4096).data
        text = head.decode("utf-8", "replace").strip()
        if not text or "\ufffd" in text[:64]:
            return None  # binary
        return _cut(text.splitlines()[0], 500)

    def _parse_request(self, attributes: dict[str, Any]) -> ParsedRequest:
        body = self.request_body
        if not body.total and self.redirected_body is not None:
            body = self.redirected_body
        if not body.head:
            return ParsedRequest()
        if body.truncated:
            # Too big to parse (images inlined as base64, long documents): keep what can be
            # found at either end, which names the model even when it comes last.
            _mark(attributes, A.BODY_TRUNCATED, "request")
            fields = top_level_fields(bytes(body.head), bytes(body.tail))
            request = self.adapter.parse_request(fields, self.path)
            request.input = request.messages = request.system_instructions = None
            request.tools = None
            return request
        data = loads(bytes(body.head))
        if data is INVALID:
            _mark(attributes, A.PARSE_ERROR, "request: not JSON")
            return ParsedRequest()
        return self.adapter.parse_request(data, self.path)

    def _parse_response(self, attributes: dict[str, Any], reason: str) -> ParsedResponse | None:
        body = self.response_body
        if body is None or body.total == 0:
            return None
        marks = body.marks
        cuts = [offset for offset, _ in marks[1:]]
        if marks and body.marks_complete:
            cuts.append(len(body.head))
        decoded = decode(bytes(body.head), self.content_encoding, self.options.max_body_bytes, cuts)
        head = decoded.data
        # Compressed bytes past the cap cannot be decoded without the bytes before them, so the
        # tail window only helps when the caller read the body decoded (aiohttp's default).
        tail = bytes(body.tail) if body.truncated and not decoded.encoded else b""
        if body.truncated:
            _mark(attributes, A.BODY_TRUNCATED, "response")
        kind = self.stream_kind
        # Some servers label their event streams text/plain or application/json.
        if kind is None and head[:64].lstrip().startswith(_SSE_STARTS):
            kind = "sse"
        if kind is None and not body.truncated:
            # Generated images and audio come back as base64 too: placeholders, not blobs.
            data = loads(elide_media(head))
            if data is INVALID and b"}\n{" in head:
                kind = "ndjson"  # JSON lines served as application/json
        if kind is not None:
            return self._parse_stream(attributes, reason, kind, head, tail, decoded, marks)
        if body.truncated:
            # Cut JSON does not parse; id, model and usage are at its ends.
            response = self.adapter.parse_response(top_level_fields(head, tail))
            response.output = response.messages = None
            response.attributes = {}
            return response
        if data is INVALID:
            _mark(attributes, A.PARSE_ERROR, "response: not JSON")
            return None
        response = self.adapter.parse_response(data)
        if _is_empty(response):
            _mark(attributes, A.PARSE_ERROR, "response: unrecognised JSON shape")
        elif isinstance(data, list) and response.first_chunk_offset is None:
            # A JSON array of chunks (Gemini's stream without alt=sse): the first element is
            # the first chunk.
            response.first_chunk_offset = max(0, head.find(b"{"))
            self._first_chunk(attributes, response, decoded, marks)
        return response

    def _parse_stream(
        self,
        attributes: dict[str, Any],
        reason: str,
        kind: str,
        head: bytes,
        tail: bytes,
        decoded: Decoded,
        marks: list[tuple[int, int]],
    ) -> ParsedResponse:
        body = self.response_body
        assert body is not None
        response = None
        if kind == "sse" and not body.truncated:
            fast = getattr(self.adapter, "parse_stream_body", None)
            response = fast(head) if fast is not None else None
        problem = None
        if response is None:
            # The tail window recovers the closing events (usage, finish reason).
            framed = frame(kind, head, tail=tail, tail_offset=body.total - len(tail))
            problem = framed.problem
            response = self.adapter.parse_stream(framed.events)
        self._first_chunk(attributes, response, decoded, marks)
        if kind == "sse":
            last = tail or (b"" if body.truncated else head)  # unknown if cut and compressed
            problem = CUT_OFF if _cut_mid_event(last) else None
        if problem == CUT_OFF and reason != EndReason.BODY_COMPLETE:
            problem = None  # the caller stopped reading early: an unfinished event is expected
        if problem is not None:
            # Read to its end, yet the last event never finished (the server cut it off), or a
            # frame that does not decode.
            _mark(attributes, A.PARSE_ERROR, f"response: {problem}")
        elif _is_empty(response):
            _mark(attributes, A.PARSE_ERROR, "response: no recognised events")
        return response

    def _first_chunk(
        self,
        attributes: dict[str, Any],
        response: ParsedResponse,
        decoded: Decoded,
        marks: list[tuple[int, int]],
    ) -> None:
        offset = response.first_chunk_offset
        body = self.response_body
        if offset is None or body is None:
            return
        if decoded.encoded:
            # Offsets are in decoded bytes: the first read whose bytes decoded past the offset.
            arrived = next(
                (marks[i][1] for i, size in enumerate(decoded.sizes) if size > offset), None
            )
        else:
            arrived = body.arrival_ns(offset)
        if arrived is None:
            return
        attributes[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (arrived - self.started_ns) / 1e9
        attributes[A.LANGFUSE_OBSERVATION_COMPLETION_START_TIME] = datetime.fromtimestamp(
            arrived / 1e9, tz=timezone.utc
        ).isoformat()

    def _request_attributes(self, attributes: dict[str, Any], request: ParsedRequest) -> None:
        if request.model:
            attributes[A.GEN_AI_REQUEST_MODEL] = request.model
        parameters = request.parameters
        for name, value in parameters.items():
            key = _PARAMETER_ATTRIBUTES.get(name)
            if key is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[key] = value
        stop = parameters.get("stop", parameters.get("stop_sequences"))
        if stop is not None:
            attributes[A.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else stop
        if isinstance(parameters.get("n"), int) and parameters["n"] != 1:
            attributes[A.GEN_AI_REQUEST_CHOICE_COUNT] = parameters["n"]
        if request.stream:
            attributes[A.GEN_AI_REQUEST_STREAM] = True
        if parameters:
            attributes[A.LANGFUSE_OBSERVATION_MODEL_PARAMETERS] = dumps(parameters)
        attributes.update(request.attributes)
        if self.options.capture_content:
            self._content(attributes, A.LANGFUSE_OBSERVATION_INPUT, request.input)
            # The semantic-conventions attributes are left out when empty.
            for key, value in (
                (A.GEN_AI_INPUT_MESSAGES, request.messages),
                (A.GEN_AI_SYSTEM_INSTRUCTIONS, request.system_instructions),
                (A.GEN_AI_TOOL_DEFINITIONS, request.tools),
            ):
                if value:
                    self._content(attributes, key, value)

    def _response_attributes(
        self, attributes: dict[str, Any], response: ParsedResponse, model: str | None
    ) -> None:
        if response.id:
            attributes[A.GEN_AI_RESPONSE_ID] = response.id
        if response.model:
            attributes[A.GEN_AI_RESPONSE_MODEL] = response.model
        if model:
            attributes[A.LANGFUSE_OBSERVATION_MODEL] = model
        if response.finish_reasons:
            attributes[A.GEN_AI_RESPONSE_FINISH_REASONS] = response.finish_reasons
        usage = response.usage
        if usage is not None:
            _usage_attributes(attributes, usage)
        attributes.update(response.attributes)
        if response.error_message:
            attributes[A.LANGFUSE_OBSERVATION_STATUS_MESSAGE] = _cut(
                response.error_message, self.options.max_attribute_length
            )
            # An error body, or an error event inside a stream that began with 200: either way
            # the generation failed.
            attributes[A.LANGFUSE_OBSERVATION_LEVEL] = "ERROR"
            if A.ERROR_TYPE not in attributes:
                attributes[A.ERROR_TYPE] = response.error_type or "error"
        if self.options.capture_content:
            self._content(attributes, A.LANGFUSE_OBSERVATION_OUTPUT, response.output)
            if response.messages:
                self._content(attributes, A.GEN_AI_OUTPUT_MESSAGES, response.messages)

    def _content(self, attributes: dict[str, Any], key: str, value: Any) -> None:
        if value is None:
            return
        mask = self.options.mask
        if mask is not None:
            try:
                value = mask(value)
            except Exception as exc:
                # Fail closed: content the mask could not clean is not recorded at all.
                self.failures.append(("llm.mask", exc))
                return
            if value is None:
                return
        attributes[key] = _cut(
            value if isinstance(value, str) else dumps(value), self.options.max_attribute_length
        )


def _usage_attributes(attributes: dict[str, Any], usage: Any) -> None:
    if usage.input is not None:
        attributes[A.GEN_AI_USAGE_INPUT_TOKENS] = usage.input
    if usage.output is not None:
        attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output
    if usage.cache_read:
        attributes[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read
    if usage.cache_creation:
        attributes[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_creation
    if usage.reasoning:
        attributes[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning
    # Langfuse prices each bucket separately, so cached and reasoning tokens are split out of
    # input and output rather than counted twice (as its own OpenAI usage mapping does).
    details: dict[str, int] = {}
    # Langfuse rejects negative counts; an inconsistent usage object must not produce one.
    if usage.input is not None:
        cached = (usage.cache_read or 0) + (usage.cache_creation or 0)
        details["input"] = max(0, usage.input - cached)
    if usage.output is not None:
        details["output"] = max(0, usage.output - (usage.reasoning or 0))
    if usage.cache_read:
        details["input_cached_tokens"] = usage.cache_read
    if usage.cache_creation:
        details["input_cache_creation"] = usage.cache_creation
    if usage.reasoning:
        details["output_reasoning_tokens"] = usage.reasoning
    total = usage.total
    if total is None and usage.input is not None and usage.output is not None:
        total = usage.input + usage.output
    if total is not None:
        details["total"] = total
    if details:
        attributes[A.LANGFUSE_OBSERVATION_USAGE_DETAILS] = dumps(details)


_SSE_STARTS = (b"data:", b"event:", b"id:", b":")


def _is_empty(response: ParsedResponse) -> bool:
    """Nothing an adapter knows was found: the body is not the shape it expects."""
    return not (
        response.id
        or response.model
        or response.output is not None
        or response.usage is not None
        or response.finish_reasons
        or response.error_message
    )


def _cut_mid_event(body: bytes) -> bool:
    """Whether the stream's last event is unfinished: no blank line after it and its data does
    not parse (a server that only forgot the final blank line is not flagged)."""
    if not body.strip() or body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")):
        return False
    # Only the last event matters, however long it is: from the last blank line on. (With no
    # blank line in a tail window, it starts mid-event and yields nothing: not flagged.)
    start = max(
        (i + len(sep) for sep in (b"\n\n", b"\r\r", b"\r\n\r\n") if (i := body.rfind(sep)) != -1),
        default=0,
    )
    events = parse_sse(body[start:])
    if not events:
        return False
    data = events[-1].data
    return data != "[DONE]" and data != "" and loads(data) is INVALID


def _mark(attributes: dict[str, Any], key: str, value: str) -> None:
    """Set a marker attribute, keeping an earlier value (request and response both cut)."""
    previous = attributes.get(key)
    attributes[key] = value if previous is None else f"{previous}, {value}"


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated {len(text) - limit} chars]"


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
