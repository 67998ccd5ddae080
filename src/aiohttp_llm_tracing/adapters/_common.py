"""Helpers shared by the adapters: safe field access and message-schema conversion."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from .._json import INVALID, dumps, loads
from .base import ParsedResponse, Usage

MESSAGES_WANTED: ContextVar[bool] = ContextVar("aiohttp_llm_tracing_messages", default=True)
"""Whether the GenAI message schema (``ParsedRequest/ParsedResponse.messages``) will be read.

The LLM layer sets it for the length of one call's parse: with the default
``content_format="langfuse"`` nothing exports those messages, and building them is about a
tenth of a JSON chat call's parse. An adapter may then leave ``messages`` as ``None``; called
outside a trace (tests, tools), adapters build everything."""


def messages_wanted() -> bool:
    """See :data:`MESSAGES_WANTED`."""
    return MESSAGES_WANTED.get()


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pick(body: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The sampling parameters present in ``body`` (scalars and string lists only)."""
    out: dict[str, Any] = {}
    if body.keys().isdisjoint(names):
        return out  # many requests set none: one set operation instead of a lookup per name
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            out[name] = value
    return out


def json_loads(data: str) -> Any:
    """``data`` parsed, or ``None`` when it is not JSON."""
    value = loads(data)
    return None if value is INVALID else value


def text_of(content: Any) -> str | None:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and "text" in p]
        return "".join(t for t in texts if isinstance(t, str)) if texts else None
    return None


def chat_message_parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI chat message as semantic-conventions parts (text, tool calls, tool results)."""
    parts: list[dict[str, Any]] = []
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        )
        return parts
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                parts.append({"type": "text", "content": part.get("text")})
            elif isinstance(part, dict):
                parts.append({"type": str(part.get("type", "unknown"))})
    for call in as_list(message.get("tool_calls")):
        function = as_dict(as_dict(call).get("function"))
        parts.append(
            {
                "type": "tool_call",
                "id": as_dict(call).get("id"),
                "name": function.get("name"),
                "arguments": _maybe_json(function.get("arguments")),
            }
        )
    return parts


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    return [
        {"role": m.get("role"), "parts": chat_message_parts(m)}
        for m in as_list(messages)
        if isinstance(m, dict)
    ]


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        parsed = json_loads(value)
        return value if parsed is None else parsed
    return value


def openai_usage(value: Any) -> Usage | None:
    """Chat/completions/embeddings ``usage`` (prompt/completion names) or Responses API names."""
    usage = as_dict(value)
    if not usage:
        return None
    prompt_details = as_dict(
        usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    )
    completion_details = as_dict(
        usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    )
    input_tokens = opt_int(usage.get("prompt_tokens"))
    if input_tokens is None:
        input_tokens = opt_int(usage.get("input_tokens"))
    output_tokens = opt_int(usage.get("completion_tokens"))
    if output_tokens is None:
        output_tokens = opt_int(usage.get("output_tokens"))
    return Usage(
        input=input_tokens,
        output=output_tokens,
        total=opt_int(usage.get("total_tokens")),
        cache_read=opt_int(prompt_details.get("cached_tokens")) or None,
        reasoning=opt_int(completion_details.get("reasoning_tokens")) or None,
    )


def error_response(body: Any) -> ParsedResponse | None:
    """An OpenAI- or Anthropic-style error body, if that is what this is."""
    error = as_dict(body).get("error")
    if isinstance(error, dict):
        message = opt_str(error.get("message")) or dumps(error)[:500]
        kind = error.get("type") or error.get("code")
        return ParsedResponse(
            error_message=message,
            error_type=None if kind is None else str(kind),
            output={"error": error},
        )
    if isinstance(error, str) and error:
        return ParsedResponse(error_message=error, output={"error": error})
    return None


def single_or_list(outputs: list[Any]) -> Any:
    """One output as itself, several as a list, none as ``None``."""
    if not outputs:
        return None
    return outputs[0] if len(outputs) == 1 else outputs


def azure_deployment(path: str) -> str | None:
    """The deployment name in an Azure OpenAI path (``/openai/deployments/{name}/...``).

    Azure request bodies carry no model; the deployment stands in for it.
    """
    parts = path.split("/")
    if "deployments" in parts:
        i = parts.index("deployments")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def split_system(
    messages: list[Any],
    system_parts: Callable[[dict[str, Any]], list[dict[str, Any]]],
    message_parts: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """``(system instruction parts, other messages in the parts schema)``: APIs that take
    instructions as ``system`` messages (Cohere, Ollama) next to the conventions, which keep
    them apart. The other messages are ``None``, not converted, when the call does not export
    them (:data:`MESSAGES_WANTED`)."""
    wanted = messages_wanted()
    system: list[dict[str, Any]] = []
    converted: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "system":
            system += system_parts(message)
        elif wanted:
            converted.append({"role": message.get("role"), "parts": message_parts(message)})
    return system, converted if wanted else None
