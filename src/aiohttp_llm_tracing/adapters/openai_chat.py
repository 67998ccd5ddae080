"""OpenAI-compatible chat completions (``/v1/chat/completions``, Azure deployment paths too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._exportable import exportable_str
from .._json import loads
from .._sse import SSEEvent
from . import _common as c
from ._chat_stream import parse_chat_stream_fast
from .base import ParsedRequest, ParsedResponse

PARAMETERS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
    "n",
    "reasoning_effort",
    "service_tier",
    "response_format",
)


def chat_parameters(body: dict[str, Any]) -> dict[str, Any]:
    """A chat request's sampling parameters, ``response_format`` by its type."""
    parameters = c.pick(body, PARAMETERS)
    if isinstance(body.get("response_format"), dict):
        parameters["response_format"] = body["response_format"].get("type")
    return parameters


class OpenAIChat:
    """``POST .../chat/completions``: JSON and SSE (``stream=true``), tool calls included."""

    operation = "chat"
    observation_type = "generation"
    provider = "openai"
    path_suffixes = ("/chat/completions",)

    def matches(self, path: str) -> bool:
        return path.endswith("/chat/completions")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        messages = c.as_list(body.get("messages"))
        tools = c.as_list(body.get("tools")) or None
        langfuse_input: Any = messages
        if tools:
            langfuse_input = {"messages": messages, "tools": tools}
        return ParsedRequest(
            model=c.opt_str(body.get("model")) or c.azure_deployment(path),
            parameters=chat_parameters(body),
            input=langfuse_input,
            messages=c.chat_messages(messages) if c.messages_wanted() else None,
            tools=tools,
            stream=body.get("stream") is True,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        choices = [ch for ch in c.as_list(body.get("choices")) if isinstance(ch, dict)]
        outputs = [output_message(c.as_dict(ch.get("message"))) for ch in choices]
        reasons = [c.opt_str(ch.get("finish_reason")) for ch in choices]
        return ParsedResponse(
            id=c.opt_str(body.get("id")),
            model=c.opt_str(body.get("model")),
            finish_reasons=[r for r in reasons if r],
            output=c.single_or_list(outputs),
            messages=[
                {"role": "assistant", "parts": c.chat_message_parts(m), "finish_reason": r}
                for m, r in zip(outputs, reasons)
            ]
            if c.messages_wanted()
            else None,
            usage=c.openai_usage(body.get("usage")),
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        acc = StreamAccumulator()
        for event in events:
            if acc.add_event(event):
                break
        return acc.result()

    def parse_stream_body(self, body: bytes) -> ParsedResponse | None:
        """The same as ``parse_stream(parse_sse(body))``, without decoding every chunk.

        ``None`` when the body is not in the shape the fast path knows; the caller then takes
        the general path.
        """
        return parse_chat_stream_fast(body, StreamAccumulator)


class StreamAccumulator:
    """Folds chat-completion chunks into the final message(s), in order."""

    __slots__ = ("choices", "error", "result_")

    def __init__(self) -> None:
        self.result_ = ParsedResponse()
        self.choices: dict[int, dict[str, Any]] = {}
        self.error: ParsedResponse | None = None

    def add_texts(self, texts: list[str], offset: int | None) -> None:
        """Plain text deltas of choice 0 (from the fast path)."""
        acc = self.choices.setdefault(0, {"text": []})
        acc["text"].extend(texts)
        if offset is not None and self.result_.first_chunk_offset is None:
            self.result_.first_chunk_offset = offset

    def add_event(self, event: SSEEvent) -> bool:
        """Fold one event; ``True`` once an error event ended the stream."""
        # Runs for every chunk of a stream the fast path does not take: helpers inlined.
        data = event.data
        if data == "[DONE]":
            return False
        chunk = loads(data)
        if not isinstance(chunk, dict):
            return False
        result = self.result_
        if chunk.get("error"):
            # An error event mid-stream (the status was already 200): the call failed.
            error = c.error_response(chunk)
            if error is not None:
                error.id, error.model = result.id, result.model
                error.first_chunk_offset = result.first_chunk_offset
                self.error = error
                return True
        if not result.id:
            result.id = c.opt_str(chunk.get("id"))
        if not result.model:
            result.model = c.opt_str(chunk.get("model"))
        usage = chunk.get("usage")
        if usage:
            result.usage = c.openai_usage(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int):
                index = 0
            acc = self.choices.get(index)
            if acc is None:
                acc = self.choices[index] = {"text": []}
            delta = choice.get("delta")
            if (
                isinstance(delta, dict)
                and _merge_delta(acc, delta, result.wrong_types)
                and result.first_chunk_offset is None
            ):
                result.first_chunk_offset = event.offset
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                acc["finish_reason"] = reason
            elif reason is not None:
                _wrong(result.wrong_types, "finish_reason")
        return False

    def result(self) -> ParsedResponse:
        if self.error is not None:
            return self.error
        result = self.result_
        outputs = []
        messages: list[dict[str, Any]] | None = [] if c.messages_wanted() else None
        for _, acc in sorted(self.choices.items()):
            message = _accumulated_message(acc)
            outputs.append(message)
            if messages is not None:
                messages.append(
                    {
                        "role": "assistant",
                        "parts": c.chat_message_parts(message),
                        "finish_reason": acc.get("finish_reason"),
                    }
                )
            if acc.get("finish_reason"):
                result.finish_reasons.append(str(acc["finish_reason"]))
        result.output = c.single_or_list(outputs)
        result.messages = messages
        return result


def _wrong(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def _merge_delta(acc: dict[str, Any], delta: dict[str, Any], wrong: list[str]) -> bool:
    """Fold one delta into the choice; True if it carried content (text or a tool call).

    A field of the wrong JSON type is left out and named in ``wrong``: one odd field must not
    cost the rest of the stream.
    """
    carried = False
    role = delta.get("role")
    if isinstance(role, str) and role:
        acc["role"] = role
    elif role is not None:
        _wrong(wrong, "delta.role")
    content = delta.get("content")
    if isinstance(content, str) and content:
        acc["text"].append(content)
        carried = True
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        acc.setdefault("refusal", []).append(refusal)
        carried = True
    tool_calls = delta.get("tool_calls")
    if not isinstance(tool_calls, list):
        return carried
    for call in tool_calls:
        call = c.as_dict(call)
        index = call.get("index", 0)
        index = index if isinstance(index, int) else 0
        calls = acc.setdefault("tool_calls", {})
        slot = calls.setdefault(index, {"id": None, "type": "function", "name": "", "args": []})
        for key in ("id", "type"):
            value = call.get(key)
            if isinstance(value, str) and value:
                slot[key] = value
            elif value is not None:
                _wrong(wrong, f"tool_calls.{key}")
        function = c.as_dict(call.get("function"))
        name, arguments = function.get("name"), function.get("arguments")
        if isinstance(name, str):
            slot["name"] += name
        elif name is not None:
            _wrong(wrong, "tool_calls.function.name")
        if isinstance(arguments, str):
            slot["args"].append(arguments)
        elif arguments is not None:
            _wrong(wrong, "tool_calls.function.arguments")
        carried = True
    return carried


def _accumulated_message(acc: dict[str, Any]) -> dict[str, Any]:
    # A surrogate pair split across two chunks arrives as two lone halves; joined here, so the
    # fast path (which decodes the run at once) and the general one agree.
    text = exportable_str("".join(acc["text"]))
    message: dict[str, Any] = {"role": acc.get("role", "assistant"), "content": text or None}
    if acc.get("refusal"):
        message["refusal"] = "".join(acc["refusal"])
    if acc.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": slot["id"],
                "type": slot["type"],
                "function": {"name": slot["name"], "arguments": "".join(slot["args"])},
            }
            for _, slot in sorted(acc["tool_calls"].items())
        ]
    return message


def output_message(message: dict[str, Any]) -> dict[str, Any]:
    """One choice's message as recorded: role and content, plus what else it carries."""
    out = {"role": message.get("role", "assistant"), "content": message.get("content")}
    for key in ("tool_calls", "function_call", "refusal", "audio"):
        if message.get(key):
            out[key] = message[key]
    return out
