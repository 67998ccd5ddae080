"""What an adapter is: the shape of one LLM API, turned into parsed request and response facts.

An adapter knows one wire format and nothing of aiohttp, spans or the registry. It gets decoded
JSON (or parsed SSE events) once, at the end of the call, and returns plain data; the LLM layer
turns that into attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._sse import SSEEvent

__all__ = ["Adapter", "ParsedRequest", "ParsedResponse", "Usage"]


@dataclass
class Usage:
    """Token counts as the API reported them. ``input`` includes cached input tokens."""

    input: int | None = None
    output: int | None = None
    total: int | None = None
    cache_read: int | None = None
    cache_creation: int | None = None
    reasoning: int | None = None


@dataclass
class ParsedRequest:
    """What the request asked for."""

    model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    """Sampling parameters under the API's own names (``temperature``, ``max_tokens``...)."""
    input: Any = None
    """The input as the API received it (messages, prompt, embedding input): Langfuse's input."""
    messages: list[dict[str, Any]] | None = None
    """The input in the GenAI semantic-conventions message schema. The built-in adapters leave
    it ``None`` when the call's ``content_format`` does not export it (nothing reads it then);
    a custom adapter may always fill it."""
    system_instructions: list[dict[str, Any]] | None = None
    tools: list[Any] | None = None
    stream: bool = False
    provider: str | None = None
    """``gen_ai.provider.name`` when the body tells it (SGLang and TGI share ``/generate``);
    used unless the caller or the host named the provider."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Extra span attributes specific to the operation."""


@dataclass
class ParsedResponse:
    """What came back."""

    id: str | None = None
    model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output: Any = None
    """The output as Langfuse shows it (the assistant message, tool calls merged)."""
    messages: list[dict[str, Any]] | None = None
    """The output in the GenAI semantic-conventions message schema (``None`` when it is not
    exported, as for :attr:`ParsedRequest.messages`)."""
    usage: Usage | None = None
    first_chunk_offset: int | None = None
    """Byte offset of the first streamed event that carried content (time to first token)."""
    error_message: str | None = None
    """Set when the API reported an error, in an error body or as an event inside a stream."""
    error_type: str | None = None
    """The API's own error class (``rate_limit_error``, ``server_error``...), if it gave one."""
    wrong_types: list[str] = field(default_factory=list)
    """Fields that held a JSON value of the wrong type (left out, and named in
    ``llm_tracing.parse_error``)."""
    attributes: dict[str, Any] = field(default_factory=dict)


class Adapter(Protocol):
    """One LLM API shape. Implementations are stateless and shared by all requests."""

    operation: str
    """``gen_ai.operation.name``: ``chat``, ``text_completion``, ``embeddings``..."""
    observation_type: str
    """``langfuse.observation.type``: ``generation`` or ``embedding``."""
    provider: str
    """``gen_ai.provider.name`` when the host does not say otherwise."""

    @property
    def path_suffixes(self) -> tuple[str, ...]:
        """URL path endings this adapter serves (POST only)."""

    def matches(self, path: str) -> bool:
        """Whether a POST to ``path`` is this API (called only when a suffix matched)."""

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        """Facts from the decoded JSON request body (any JSON value; may be malformed)."""

    def parse_response(self, body: Any) -> ParsedResponse:
        """Facts from a decoded JSON response body."""

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        """Facts from a response's stream events, in order, whatever the framing: SSE events,
        NDJSON lines (``event`` empty, ``data`` the line) or AWS eventstream frames (``event``
        the ``:event-type`` header, or ``:exception-type`` for an exception frame; ``data`` the
        payload). A JSON array of chunks arrives whole through :meth:`parse_response` instead.

        Optional, beside these: ``provider_for(path) -> str``, when the provider depends on the
        path (Gemini on AI Studio or Vertex AI), and ``parse_stream_body(body) -> ParsedResponse
        | None``, a fast path over a whole SSE body that must equal ``parse_stream``'s result.
        """
