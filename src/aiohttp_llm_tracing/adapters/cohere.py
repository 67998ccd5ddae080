"""Cohere v2: chat (JSON, SSE and NDJSON streams) and embed.

``/v2/chat`` answers ``{"id", "finish_reason", "message": {...}, "usage": {...}}``; its stream
is typed events (``message-start``, ``content-delta``, ``tool-plan-delta``, ``tool-call-*``,
``message-end``...), as SSE for the SDK or one JSON object per line for clients that accept
only JSON (litellm). Either way each event's ``type`` is inside its data too, so one parser
serves both framings. Errors are ``{"id", "message": "..."}``: ``message`` is a string there
and an object in a reply, which is how the two are told apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _attributes as A
from .._sse import SSEEvent
from . import _common as c
from .base import Adapter, ParsedRequest, ParsedResponse, Usage

__all__ = ["ADAPTERS", "CohereChat", "CohereEmbed"]

# Cohere's parameter name -> the name the LLM layer maps onto gen_ai.request.*.
_PARAMETERS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "p": "top_p",
    "k": "top_k",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "seed": "seed",
    "stop_sequences": "stop_sequences",
    "safety_mode": "safety_mode",
    "tool_choice": "tool_choice",
}


class CohereChat:
    """``POST .../v2/chat``: text, thinking, tool plans and tool calls; JSON or streamed."""

    operation = "chat"
    observation_type = "generation"
    provider = "cohere"
    path_suffixes: tuple[str, ...] = ("/v2/chat",)

    def matches(self, path: str) -> bool:
        return path.endswith("/v2/chat")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        messages = c.as_list(body.get("messages"))
        tools = c.as_list(body.get("tools")) or None
        system, converted = c.split_system(
            messages, lambda m: _parts(m.get("content")), _message_parts
        )
        picked = c.pick(body, tuple(_PARAMETERS))
        parameters = {_PARAMETERS[name]: value for name, value in picked.items()}
        return ParsedRequest(
            model=c.opt_str(body.get("model")),
            parameters=parameters,
            input={"messages": messages, "tools": tools} if tools else messages,
            messages=converted,
            system_instructions=system or None,
            tools=tools,
            stream=body.get("stream") is True,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = _error(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        message = body.get("message")
        finish = c.opt_str(body.get("finish_reason"))
        answered = isinstance(message, dict)
        return ParsedResponse(
            id=c.opt_str(body.get("id")),
            finish_reasons=[finish] if finish else [],
            output=message if answered else None,
            messages=[
                {
                    "role": "assistant",
                    "parts": _message_parts(c.as_dict(message)),
                    "finish_reason": finish,
                }
            ]
            if answered and c.messages_wanted()
            else None,
            usage=_usage(body.get("usage")),
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        acc = _StreamAccumulator()
        for event in events:
            error = acc.add(event)
            if error is not None:
                return error
        return acc.result(self)


class _StreamAccumulator:
    """Folds Cohere's typed stream events into the reply ``/v2/chat`` would have returned."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.finish: str | None = None
        self.usage: Any = None
        self.first: int | None = None
        self.started = False
        # Pieces are joined once at the end: appending to a string per delta is quadratic.
        self.content: dict[int, dict[str, Any]] = {}
        self.pieces: dict[tuple[int, str], list[str]] = {}
        self.plan: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.args: dict[int, list[str]] = {}

    def add(self, event: SSEEvent) -> ParsedResponse | None:
        """Fold one event; an error response when the stream reported a failure."""
        data = c.as_dict(c.json_loads(event.data))
        kind = c.opt_str(data.get("type")) or event.event
        delta = c.as_dict(data.get("delta"))
        message = c.as_dict(delta.get("message"))
        index = c.opt_int(data.get("index")) or 0
        if kind == "message-start":
            self.started = True
            self.id = c.opt_str(data.get("id")) or self.id
        elif kind == "content-start":
            block = c.as_dict(message.get("content"))
            self.content[index] = {"type": c.opt_str(block.get("type")) or "text"}
        elif kind == "content-delta":
            block = c.as_dict(message.get("content"))
            for key in ("text", "thinking"):
                piece = block.get(key)
                if isinstance(piece, str) and piece:
                    self.content.setdefault(index, {"type": key})
                    self.pieces.setdefault((index, key), []).append(piece)
                    self._carried(event)
        elif kind == "tool-plan-delta":
            piece = message.get("tool_plan")
            if isinstance(piece, str) and piece:
                self.plan.append(piece)
                self._carried(event)
        elif kind == "tool-call-start":
            # A single object here, not a list, as in the reply.
            call = c.as_dict(message.get("tool_calls"))
            function = c.as_dict(call.get("function"))
            self.calls[index] = {
                "id": call.get("id"),
                "type": call.get("type") or "function",
                "function": {"name": function.get("name")},
            }
            args = function.get("arguments")
            self.args[index] = [args] if isinstance(args, str) and args else []
            self._carried(event)
        elif kind == "tool-call-delta":
            function = c.as_dict(c.as_dict(message.get("tool_calls")).get("function"))
            args = function.get("arguments")
            if isinstance(args, str):
                self.args.setdefault(index, []).append(args)
                self.calls.setdefault(index, {"id": None, "type": "function", "function": {}})
        elif kind == "message-end":
            self.finish = c.opt_str(delta.get("finish_reason"))
            self.usage = delta.get("usage")
            failure = c.opt_str(delta.get("error"))
            if failure:
                return self._failed(failure, None)
        elif kind not in _QUIET:
            # An error object in the stream (no known type, a string message) ends the call.
            error = _error(data)
            if error is not None:
                return self._failed(error.error_message or "error", error.error_type)
        return None

    def _carried(self, event: SSEEvent) -> None:
        if self.first is None:
            self.first = event.offset

    def _failed(self, message: str, kind: str | None) -> ParsedResponse:
        return ParsedResponse(
            id=self.id,
            finish_reasons=[self.finish] if self.finish else [],
            usage=_usage(self.usage),
            first_chunk_offset=self.first,
            error_message=message,
            error_type=kind,
            output={"error": message},
        )

    def result(self, adapter: CohereChat) -> ParsedResponse:
        if not (self.started or self.content or self.plan or self.calls or self.finish):
            return ParsedResponse(first_chunk_offset=self.first)
        message: dict[str, Any] = {"role": "assistant"}
        blocks = []
        for index in sorted(self.content):
            block = dict(self.content[index])
            key = "thinking" if block["type"] == "thinking" else "text"
            block[key] = "".join(self.pieces.get((index, key), []))
            blocks.append(block)
        if blocks:
            message["content"] = blocks
        if self.plan:
            message["tool_plan"] = "".join(self.plan)
        if self.calls:
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": "".join(self.args[i])}}
                for i, call in sorted(self.calls.items())
            ]
        body = {"id": self.id, "finish_reason": self.finish, "message": message}
        result = adapter.parse_response({**body, "usage": self.usage})
        result.first_chunk_offset = self.first
        return result


# Stream events that carry nothing the span records.
_QUIET = frozenset(
    {"content-end", "tool-call-end", "citation-start", "citation-end", "debug", "stream-start"}
)


class CohereEmbed:
    """``POST .../v2/embed``: texts, images or mixed inputs in; vectors per embedding type out.

    The output recorded is the vector count and size, not the vectors.
    """

    operation = "embeddings"
    observation_type = "embedding"
    provider = "cohere"
    path_suffixes: tuple[str, ...] = ("/v2/embed",)

    def matches(self, path: str) -> bool:
        return path.endswith("/v2/embed")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        attributes: dict[str, Any] = {}
        kinds = [k for k in c.as_list(body.get("embedding_types")) if isinstance(k, str)]
        if kinds:
            attributes[A.GEN_AI_REQUEST_ENCODING_FORMATS] = kinds
        inputs = {k: body[k] for k in ("texts", "images", "inputs") if body.get(k) is not None}
        parameters = c.pick(body, ("input_type", "output_dimension", "truncate", "max_tokens"))
        return ParsedRequest(
            model=c.opt_str(body.get("model")),
            parameters=parameters,
            # One kind of input (the usual case) as itself; several by name.
            input=next(iter(inputs.values())) if len(inputs) == 1 else inputs or None,
            attributes=attributes,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = _error(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        vectors, dimensions = _vectors(body.get("embeddings"))
        meta = c.as_dict(body.get("meta"))
        usage = _usage({"tokens": meta.get("tokens"), "billed_units": meta.get("billed_units")})
        attributes = {}
        if dimensions is not None:
            attributes[A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
        return ParsedResponse(
            id=c.opt_str(body.get("id")),
            output={"count": len(vectors), "dimensions": dimensions} if vectors else None,
            usage=usage,
            attributes=attributes,
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return ParsedResponse()


# Embedding type -> dimensions per value: the binary types pack eight to a byte.
_PER_VALUE = {"float": 1, "int8": 1, "uint8": 1, "binary": 8, "ubinary": 8}


def _vectors(embeddings: Any) -> tuple[list[Any], int | None]:
    """The vectors of one embedding type, and their dimension count if it can be told.

    ``embeddings_by_type`` is ``{"float": [[...]], "int8": [[...]]}``; the older
    ``embeddings_floats`` is a bare list of float vectors.
    """
    by_type = {"float": embeddings} if isinstance(embeddings, list) else c.as_dict(embeddings)
    # Types whose size is known first: base64 does not tell it without decoding.
    for kind, vectors in sorted(by_type.items(), key=lambda item: item[0] not in _PER_VALUE):
        if isinstance(vectors, list) and vectors:
            first = vectors[0]
            per = _PER_VALUE.get(kind)
            dimensions = len(first) * per if per and isinstance(first, list) else None
            return vectors, dimensions
    return [], None


def _error(body: Any) -> ParsedResponse | None:
    """Cohere's ``{"message": "..."}`` error (or an OpenAI-style one from a gateway)."""
    body = c.as_dict(body)
    message = body.get("message")
    if isinstance(message, str) and message:
        return ParsedResponse(error_message=message, output={"error": message})
    return c.error_response(body)


def _count(value: Any) -> int | None:
    """A token count: Cohere's schema types them as numbers, so ``5.0`` counts as well as 5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return c.opt_int(value)


def _usage(value: Any) -> Usage | None:
    """``tokens`` (what the model processed) first, ``billed_units`` when it is absent."""
    usage = c.as_dict(value)
    tokens = c.as_dict(usage.get("tokens"))
    billed = c.as_dict(usage.get("billed_units"))
    source = tokens if tokens.get("input_tokens") is not None else billed
    input_tokens = _count(source.get("input_tokens"))
    output_tokens = _count(source.get("output_tokens"))
    if output_tokens is None:
        output_tokens = _count(tokens.get("output_tokens"))
        if output_tokens is None:
            output_tokens = _count(billed.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    total = None if input_tokens is None or output_tokens is None else input_tokens + output_tokens
    # cached_tokens are prompt tokens served from the cache: a part of input_tokens.
    return Usage(
        input=input_tokens,
        output=output_tokens,
        total=total,
        cache_read=_count(usage.get("cached_tokens")) or None,
    )


def _parts(content: Any) -> list[dict[str, Any]]:
    """A Cohere ``content`` (a string or a list of typed blocks) as conventions parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in c.as_list(content):
        block = c.as_dict(block)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block.get("thinking")})
        else:
            parts.append({"type": str(kind or "unknown")})
    return parts


def _message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Cohere message: content, the tool plan, tool calls, or a tool's result."""
    if message.get("role") == "tool":
        content = message.get("content")
        text = c.text_of(content)
        return [
            {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": text if text is not None else content,
            }
        ]
    parts: list[dict[str, Any]] = []
    plan = message.get("tool_plan")
    if isinstance(plan, str) and plan:
        # The model's reasoning before it calls tools ("I will search for ...").
        parts.append({"type": "reasoning", "content": plan})
    parts += _parts(message.get("content"))
    for call in c.as_list(message.get("tool_calls")):
        call = c.as_dict(call)
        function = c.as_dict(call.get("function"))
        arguments = function.get("arguments")
        parsed = c.json_loads(arguments) if isinstance(arguments, str) else None
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": parsed if parsed is not None else arguments,
            }
        )
    return parts


ADAPTERS: tuple[Adapter, ...] = (CohereChat(), CohereEmbed())
"""This module's adapters, in matching order."""
