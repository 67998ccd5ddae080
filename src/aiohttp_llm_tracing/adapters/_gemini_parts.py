"""Gemini's content in the GenAI semantic-conventions message schema, and its field reader.

Gemini's REST API writes its keys in camelCase and its proto JSON in snake_case (SDKs send
either): :func:`field` reads both.
"""

from __future__ import annotations

from typing import Any

from . import _common as c

__all__ = ["field", "parts", "role", "system_parts", "tool_definitions"]


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a camelCase ``name``, else its snake_case spelling (proto JSON)."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get("".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name))


def role(role: Any) -> str:
    """The conventions' role: Gemini calls the assistant "model"; a missing role is the user."""
    return "assistant" if role == "model" else (role if isinstance(role, str) else "user")


def system_parts(system: Any) -> list[dict[str, Any]] | None:
    """``systemInstruction`` (a Content, or a plain string some callers send) as parts."""
    if isinstance(system, str):
        return [{"type": "text", "content": system}]
    if isinstance(system, dict):
        return parts(field(system, "parts")) or None
    return None


def tool_definitions(tools: list[Any]) -> list[Any] | None:
    """Function declarations as function tools; built-in tools (googleSearch...) by name."""
    out: list[Any] = []
    for tool in tools:
        tool = c.as_dict(tool)
        for key, value in tool.items():
            if key in ("functionDeclarations", "function_declarations"):
                out.extend(
                    {"type": "function", **d} for d in c.as_list(value) if isinstance(d, dict)
                )
            else:
                out.append({"type": key})
    return out or None


def parts(items: Any) -> list[dict[str, Any]]:
    """Gemini parts in the semantic-conventions parts schema."""
    return [_part(p) for p in c.as_list(items) if isinstance(p, dict) and p]


def _part(part: dict[str, Any]) -> dict[str, Any]:
    text = part.get("text")
    if isinstance(text, str):
        return {"type": "reasoning" if part.get("thought") is True else "text", "content": text}
    # Gemini links a result to its call by name; the id is optional and often absent.
    if isinstance(call := field(part, "functionCall"), dict):
        return {"type": "tool_call", **_named(call), "arguments": call.get("args")}
    if isinstance(result := field(part, "functionResponse"), dict):
        return {"type": "tool_call_response", **_named(result), "response": result.get("response")}
    if isinstance(blob := field(part, "inlineData"), dict):
        return {**_media("blob", field(blob, "mimeType")), "content": blob.get("data")}
    if isinstance(file := field(part, "fileData"), dict):
        return {**_media("uri", field(file, "mimeType")), "uri": field(file, "fileUri")}
    return {"type": next(iter(part))}  # executableCode, codeExecutionResult...


def _named(call: dict[str, Any]) -> dict[str, Any]:
    return {"id": c.opt_str(call.get("id")), "name": c.opt_str(call.get("name"))}


def _media(kind: str, mime: Any) -> dict[str, Any]:
    part = {"type": kind, "mime_type": mime}
    # The conventions' modalities are image, video and audio; a PDF has none.
    modality = mime.split("/", 1)[0] if isinstance(mime, str) else None
    if modality in ("image", "video", "audio"):
        part["modality"] = modality
    return part
