"""The OpenAI Responses API (``/v1/responses``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._sse import SSEEvent
from . import _common as c
from .base import ParsedRequest, ParsedResponse

_PARAMETERS = (
    "temperature",
    "max_output_tokens",
    "top_p",
    "seed",
    "service_tier",
    "parallel_tool_calls",
    "truncation",
)


_OTHER_DELTAS = frozenset(
    {
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.audio.transcript.delta",
    }
)


class OpenAIResponses:
    """``POST .../responses``: ``input``/``instructions`` in, ``output`` items out."""

    operation = "chat"
    observation_type = "generation"
    provider = "openai"
    path_suffixes = ("/responses",)

    def matches(self, path: str) -> bool:
        return path.endswith("/responses")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        raw_input = body.get("input")
        items = (
            [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
        )
        messages = c.chat_messages(items) if c.messages_wanted() else None
        system = None
        if isinstance(body.get("instructions"), str):
            system = [{"type": "text", "content": body["instructions"]}]
        parameters = c.pick(body, _PARAMETERS)
        reasoning = c.as_dict(body.get("reasoning"))
        if isinstance(reasoning.get("effort"), str):
            parameters["reasoning_effort"] = reasoning["effort"]
        return ParsedRequest(
            model=c.opt_str(body.get("model")),
            parameters=parameters,
            input=raw_input
            if system is None
            else {"instructions": body["instructions"], "input": raw_input},
            messages=messages,
            system_instructions=system,
            tools=c.as_list(body.get("tools")) or None,
            stream=body.get("stream") is True,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        body = c.as_dict(body)
        error = body.get("error")
        if isinstance(error, dict) and error:
            # An error body, or a response object that failed (it still names id and model).
            failed = c.error_response(body) or ParsedResponse()
            failed.id = c.opt_str(body.get("id"))
            failed.model = c.opt_str(body.get("model"))
            return failed
        outputs: list[dict[str, Any]] = []
        for item in c.as_list(body.get("output")):
            item = c.as_dict(item)
            if item.get("type") == "message":
                text = "".join(
                    p.get("text", "")
                    for p in c.as_list(item.get("content"))
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
                outputs.append({"role": item.get("role", "assistant"), "content": text})
            elif item.get("type") == "function_call":
                outputs.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": item.get("call_id"),
                                "type": "function",
                                "function": {
                                    "name": item.get("name"),
                                    "arguments": item.get("arguments"),
                                },
                            }
                        ],
                    }
                )
        status = c.opt_str(body.get("status"))
        return ParsedResponse(
            id=c.opt_str(body.get("id")),
            model=c.opt_str(body.get("model")),
            finish_reasons=[status] if status else [],
            output=c.single_or_list(outputs),
            messages=[{"role": o["role"], "parts": c.chat_message_parts(o)} for o in outputs]
            if c.messages_wanted()
            else None,
            usage=c.openai_usage(body.get("usage")),
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        deltas: list[str] = []
        first = None
        response_id = model = None
        final: ParsedResponse | None = None
        for event in events:
            data = c.as_dict(c.json_loads(event.data))
            kind = event.event or c.opt_str(data.get("type")) or ""
            if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
                deltas.append(data["delta"])
                first = event.offset if first is None else first
            elif kind in _OTHER_DELTAS:
                # Tool-call arguments and reasoning are output too: the first token arrived.
                first = event.offset if first is None else first
            elif kind in ("response.created", "response.in_progress") and final is None:
                # Known from the first event: kept if the stream is cut off before the end.
                started = c.as_dict(data.get("response"))
                response_id = c.opt_str(started.get("id")) or response_id
                model = c.opt_str(started.get("model")) or model
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                final = self.parse_response(data.get("response"))
            elif kind == "error":
                # A stream-level error event: {"type": "error", "code", "message", "param"}.
                code = data.get("code")
                return ParsedResponse(
                    id=response_id,
                    model=model,
                    error_message=c.opt_str(data.get("message")) or "error",
                    error_type=None if code is None else str(code),
                    output={"error": data},
                    first_chunk_offset=first,
                )
        result = final or ParsedResponse(
            id=response_id,
            model=model,
            output={"role": "assistant", "content": "".join(deltas)} if deltas else None,
        )
        if final is not None and final.output is None and deltas:
            result.output = {"role": "assistant", "content": "".join(deltas)}
        result.first_chunk_offset = first
        return result
