"""The Anthropic Messages API (``/v1/messages``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._sse import SSEEvent
from . import _common as c
from .base import ParsedRequest, ParsedResponse, Usage

_PARAMETERS = ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences")


class AnthropicMessages:
    """``POST .../v1/messages``: content blocks, ``tool_use``, and Anthropic's event stream."""

    operation = "chat"
    observation_type = "generation"
    provider = "anthropic"
    path_suffixes = ("/v1/messages",)

    def matches(self, path: str) -> bool:
        return path.endswith("/v1/messages")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        messages = c.as_list(body.get("messages"))
        system = body.get("system")
        system_parts: list[dict[str, str | None]] | None = None
        if isinstance(system, str):
            system_parts = [{"type": "text", "content": system}]
        elif isinstance(system, list):
            system_parts = [{"type": "text", "content": c.text_of([p])} for p in system]
        return ParsedRequest(
            model=c.opt_str(body.get("model")),
            parameters=c.pick(body, _PARAMETERS),
            input=messages if system is None else {"system": system, "messages": messages},
            messages=[
                {"role": m.get("role"), "parts": _parts(m.get("content"))}
                for m in messages
                if isinstance(m, dict)
            ]
            if c.messages_wanted()
            else None,
            system_instructions=system_parts,
            tools=c.as_list(body.get("tools")) or None,
            stream=body.get("stream") is True,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        body = c.as_dict(body)
        # Anthropic says {"type": "error", "error": {...}}; gateways and compatible servers
        # often answer in OpenAI's shape, {"error": {...}}, with no "type".
        if body.get("type") == "error" or body.get("error"):
            return c.error_response(body) or ParsedResponse()
        blocks = body.get("content")
        stop = c.opt_str(body.get("stop_reason"))
        answered = isinstance(blocks, list)
        return ParsedResponse(
            id=c.opt_str(body.get("id")),
            model=c.opt_str(body.get("model")),
            finish_reasons=[stop] if stop else [],
            output={"role": "assistant", "content": blocks} if answered else None,
            messages=[{"role": "assistant", "parts": _parts(blocks), "finish_reason": stop}]
            if answered and c.messages_wanted()
            else None,
            usage=_usage(c.as_dict(body.get("usage"))),
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        message: dict[str, Any] = {}
        blocks: dict[int, dict[str, Any]] = {}
        # Deltas are collected and joined once: appending to a string per delta is quadratic.
        pieces: dict[tuple[int, str], list[str]] = {}
        usage: dict[str, Any] = {}
        first = None
        for event in events:
            data = c.as_dict(c.json_loads(event.data))
            kind = event.event or c.opt_str(data.get("type")) or ""
            if kind == "message_start":
                message = c.as_dict(data.get("message"))
                usage.update(c.as_dict(message.get("usage")))
            elif kind == "content_block_start":
                blocks[_index(data)] = dict(c.as_dict(data.get("content_block")))
            elif kind == "content_block_delta":
                index = _index(data)
                delta = c.as_dict(data.get("delta"))
                blocks.setdefault(index, {"type": "text", "text": ""})
                field_key = _DELTAS.get(c.opt_str(delta.get("type")) or "")
                if field_key is not None:
                    field, key = field_key
                    pieces.setdefault((index, field), []).append(str(delta.get(key, "")))
                    first = event.offset if first is None else first
            elif kind == "message_delta":
                delta = c.as_dict(data.get("delta"))
                if delta.get("stop_reason"):
                    message["stop_reason"] = delta["stop_reason"]
                usage.update(c.as_dict(data.get("usage")))
            elif kind == "error":
                error = c.error_response(data) or ParsedResponse(error_message="error")
                error.id = c.opt_str(message.get("id"))
                error.model = c.opt_str(message.get("model"))
                error.first_chunk_offset = first
                return error
        for (index, field), parts in pieces.items():
            joined = "".join(parts)
            block = blocks[index]
            if field == "input":
                parsed = c.json_loads(joined)
                block["input"] = parsed if parsed is not None else joined
            else:
                block[field] = str(block.get(field) or "") + joined
        result = self.parse_response(
            {
                "id": message.get("id"),
                "model": message.get("model"),
                "content": [blocks[i] for i in sorted(blocks)],
                "stop_reason": message.get("stop_reason"),
                "usage": usage,
            }
        )
        result.first_chunk_offset = first
        return result


# delta type -> (block field it builds, delta key that carries the piece)
_DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("input", "partial_json"),
}


def _index(data: dict[str, Any]) -> int:
    index = data.get("index", 0)
    return index if isinstance(index, int) else 0


def _usage(usage: dict[str, Any]) -> Usage | None:
    if not usage:
        return None
    read = c.opt_int(usage.get("cache_read_input_tokens"))
    creation = c.opt_int(usage.get("cache_creation_input_tokens"))
    fresh = c.opt_int(usage.get("input_tokens"))
    output = c.opt_int(usage.get("output_tokens"))
    # Anthropic's input_tokens excludes cached tokens; the GenAI conventions count them in.
    total_input = None if fresh is None else fresh + (read or 0) + (creation or 0)
    total = None if total_input is None or output is None else total_input + output
    return Usage(
        input=total_input,
        output=output,
        total=total,
        cache_read=read or None,
        cache_creation=creation or None,
    )


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in c.as_list(content):
        block = c.as_dict(block)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text")})
        elif kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": block.get("input"),
                }
            )
        elif kind == "tool_result":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.get("tool_use_id"),
                    "response": block.get("content"),
                }
            )
        else:
            parts.append({"type": str(kind)})
    return parts
