"""Ollama: /api/chat, /api/generate (JSON and NDJSON streams) and /api/embed.

Ollama streams unless the request says ``"stream": false``: one JSON object per line
(``application/x-ndjson``), the last with ``done: true``, ``done_reason``, the token counts
(``prompt_eval_count``, ``eval_count``) and durations in nanoseconds. Sampling parameters sit
in ``options`` under llama.cpp's names (``num_predict`` is the output cap). Errors are
``{"error": "..."}``, as a body or as a line of a stream that began with 200.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _attributes as A
from .._sse import SSEEvent
from . import _common as c
from .base import Adapter, ParsedRequest, ParsedResponse, Usage

__all__ = ["ADAPTERS", "OllamaChat", "OllamaEmbed", "OllamaGenerate"]

# Ollama's option name -> the name the LLM layer maps onto gen_ai.request.*.
_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "num_predict": "max_tokens",
    "seed": "seed",
    "stop": "stop",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repeat_penalty": "repeat_penalty",
    "min_p": "min_p",
    "num_ctx": "num_ctx",
}
_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
DURATION_PREFIX = "llm_tracing.ollama."
"""Ollama's timings become ``llm_tracing.ollama.<name>_ns`` attributes (nanoseconds)."""


class _Ollama:
    """What the three endpoints share: options, streaming default, errors, the final counts."""

    operation = "chat"
    observation_type = "generation"
    provider = "ollama"
    path_suffixes: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        return path.endswith(self.path_suffixes)

    def _request(self, body: dict[str, Any], **fields: Any) -> ParsedRequest:
        options = c.as_dict(body.get("options"))
        picked = c.pick(options, tuple(_OPTIONS))
        return ParsedRequest(
            model=c.opt_str(body.get("model")),
            parameters={_OPTIONS[name]: value for name, value in picked.items()},
            # Ollama streams by default: only an explicit false turns it off.
            stream=body.get("stream") is not False,
            **fields,
        )

    def _done(self, body: dict[str, Any], result: ParsedResponse) -> ParsedResponse:
        """Model, finish reason, usage and timings of a reply or of a stream's last line."""
        result.model = c.opt_str(body.get("model")) or result.model
        reason = c.opt_str(body.get("done_reason"))
        if reason:
            result.finish_reasons = [reason]
        result.usage = _usage(body) or result.usage
        for name in _DURATIONS:
            value = c.opt_int(body.get(name))
            if value is not None:
                result.attributes[f"{DURATION_PREFIX}{name}_ns"] = value
        return result

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        acc: dict[str, list[Any]] = {}
        last: dict[str, Any] = {}
        first = None
        model = None
        for event in events:
            chunk = c.json_loads(event.data)
            if not isinstance(chunk, dict):
                continue
            error = c.error_response(chunk)
            if error is not None:
                # An error line after a 200 start (the model crashed, ran out of memory).
                error.model = model
                error.first_chunk_offset = first
                return error
            model = model or c.opt_str(chunk.get("model"))
            if self._fold(chunk, acc) and first is None:
                first = event.offset
            if chunk.get("done") is True:
                last = chunk
        if model is None and not acc:
            return ParsedResponse()
        result = self._assemble(acc, last)
        result.model = result.model or model  # a stream cut off before its last line
        result.first_chunk_offset = first
        return result

    def _fold(self, chunk: dict[str, Any], acc: dict[str, list[Any]]) -> bool:
        """Add one chunk's pieces to ``acc``; whether it carried content."""
        raise NotImplementedError

    def _assemble(self, acc: dict[str, list[Any]], last: dict[str, Any]) -> ParsedResponse:
        """The reply the folded pieces and the last (``done``) line make up."""
        raise NotImplementedError


class OllamaChat(_Ollama):
    """``POST .../api/chat``: messages in, one assistant message (maybe tool calls) out."""

    path_suffixes: tuple[str, ...] = ("/api/chat",)

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        messages = c.as_list(body.get("messages"))
        tools = c.as_list(body.get("tools")) or None
        system, converted = c.split_system(messages, _message_parts, _message_parts)
        return self._request(
            body,
            input={"messages": messages, "tools": tools} if tools else messages,
            messages=converted,
            system_instructions=system or None,
            tools=tools,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        message = body.get("message")
        result = ParsedResponse()
        if isinstance(message, dict):
            result.output = message
            if c.messages_wanted():
                reason = c.opt_str(body.get("done_reason"))
                parts = _message_parts(message)
                result.messages = [{"role": "assistant", "parts": parts, "finish_reason": reason}]
        return self._done(body, result)

    def _fold(self, chunk: dict[str, Any], acc: dict[str, list[Any]]) -> bool:
        message = c.as_dict(chunk.get("message"))
        carried = False
        for key in ("content", "thinking"):
            piece = message.get(key)
            if isinstance(piece, str) and piece:
                acc.setdefault(key, []).append(piece)
                carried = True
        # Ollama sends each tool call whole, in the chunk where the model finished it.
        calls = [call for call in c.as_list(message.get("tool_calls")) if isinstance(call, dict)]
        if calls:
            acc.setdefault("tool_calls", []).extend(calls)
            carried = True
        role = c.opt_str(message.get("role"))
        if role and "role" not in acc:
            acc["role"] = [role]
        return carried

    def _assemble(self, acc: dict[str, list[Any]], last: dict[str, Any]) -> ParsedResponse:
        message: dict[str, Any] = {
            "role": acc.get("role", ["assistant"])[0],
            "content": "".join(acc.get("content", [])),
        }
        if acc.get("thinking"):
            message["thinking"] = "".join(acc["thinking"])
        if acc.get("tool_calls"):
            message["tool_calls"] = acc["tool_calls"]
        return self.parse_response({**last, "message": message})


class OllamaGenerate(_Ollama):
    """``POST .../api/generate``: a raw prompt (and ``system``) in, ``response`` text out.

    Matched on the whole ``/api/generate`` ending, so TGI's and SGLang's ``/generate`` (tried
    after this) keep theirs.
    """

    operation = "text_completion"
    path_suffixes: tuple[str, ...] = ("/api/generate",)

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        prompt = body.get("prompt")
        system = c.opt_str(body.get("system"))
        return self._request(
            body,
            input={"system": system, "prompt": prompt} if system else prompt,
            messages=[{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
            if isinstance(prompt, str) and prompt and c.messages_wanted()
            else None,
            system_instructions=[{"type": "text", "content": system}] if system else None,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        text = c.opt_str(body.get("response"))
        result = ParsedResponse()
        if text is not None:
            reason = c.opt_str(body.get("done_reason"))
            parts: list[dict[str, Any]] = []
            thinking = c.opt_str(body.get("thinking"))
            if thinking:
                parts.append({"type": "reasoning", "content": thinking})
            parts.append({"type": "text", "content": text})
            result.output = text
            if c.messages_wanted():
                result.messages = [{"role": "assistant", "parts": parts, "finish_reason": reason}]
        return self._done(body, result)

    def _fold(self, chunk: dict[str, Any], acc: dict[str, list[Any]]) -> bool:
        carried = False
        for key in ("response", "thinking"):
            piece = chunk.get(key)
            if isinstance(piece, str):
                acc.setdefault(key, []).append(piece)
                carried = carried or bool(piece)
        return carried

    def _assemble(self, acc: dict[str, list[Any]], last: dict[str, Any]) -> ParsedResponse:
        body = {**last, "response": "".join(acc.get("response", []))}
        if acc.get("thinking"):
            body["thinking"] = "".join(acc["thinking"])
        return self.parse_response(body)


class OllamaEmbed(_Ollama):
    """``POST .../api/embed``: the output recorded is the vector count and size."""

    operation = "embeddings"
    observation_type = "embedding"
    path_suffixes: tuple[str, ...] = ("/api/embed",)

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        request = self._request(body, input=body.get("input"))
        request.stream = False  # /api/embed never streams
        dimensions = c.opt_int(body.get("dimensions"))
        if dimensions is not None:
            request.parameters["dimensions"] = dimensions
        return request

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        vectors = c.as_list(body.get("embeddings"))
        first = vectors[0] if vectors else None
        dimensions = len(first) if isinstance(first, list) else None
        result = ParsedResponse()
        if vectors:
            result.output = {"count": len(vectors), "dimensions": dimensions}
        if dimensions is not None:
            result.attributes[A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
        return self._done(body, result)

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return ParsedResponse()  # /api/embed answers one JSON object


def _usage(body: dict[str, Any]) -> Usage | None:
    # prompt_eval_count is left out when the whole prompt came from Ollama's cache.
    input_tokens = c.opt_int(body.get("prompt_eval_count"))
    output_tokens = c.opt_int(body.get("eval_count"))
    if input_tokens is None and output_tokens is None:
        return None
    total = None if input_tokens is None or output_tokens is None else input_tokens + output_tokens
    return Usage(input=input_tokens, output=output_tokens, total=total)


def _message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Ollama message: text, thinking, tool calls (arguments are objects) or a result."""
    content = message.get("content")
    if message.get("role") == "tool":
        part = {"type": "tool_call_response", "id": message.get("tool_call_id")}
        part["response"] = content
        # Ollama matches results to calls by the tool's name; OpenAI-minded clients add an id.
        if isinstance(message.get("tool_name"), str):
            part["name"] = message["tool_name"]
        return [part]
    parts: list[dict[str, Any]] = []
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking:
        parts.append({"type": "reasoning", "content": thinking})
    if isinstance(content, str) and content:
        parts.append({"type": "text", "content": content})
    for call in c.as_list(message.get("tool_calls")):
        call = c.as_dict(call)
        function = c.as_dict(call.get("function"))
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return parts


ADAPTERS: tuple[Adapter, ...] = (OllamaChat(), OllamaGenerate(), OllamaEmbed())
"""This module's adapters, in matching order."""
