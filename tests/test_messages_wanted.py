"""The GenAI message schema is built only when it is exported (``content_format`` "gen_ai" or
"both"); with the default "langfuse" every adapter skips it, and nothing else changes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from multidict import CIMultiDict
from opentelemetry.sdk.trace import TracerProvider
from yarl import URL

from aiohttp_llm_tracing._context import TraceAttributes
from aiohttp_llm_tracing._inflight import HttpSpan
from aiohttp_llm_tracing._llm import LLMOptions, match_llm_call
from aiohttp_llm_tracing._llm_bodies import read_request, read_response
from aiohttp_llm_tracing._sse import parse_sse
from aiohttp_llm_tracing.adapters import OpenAIChat, OpenAIResponses
from aiohttp_llm_tracing.adapters._common import MESSAGES_WANTED, messages_wanted
from fuzz_shapes import SHAPES, Shape
from fuzz_strategies import CONTENT_TYPES, frame
from fuzz_strategies import dumps as fuzz_dumps

CHAT_REQUEST = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Capital of France?"},
    ],
}
CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
CHAT_STREAM = (
    b"".join(
        b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        for chunk in (
            {"id": "c-1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            {
                "id": "c-1",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}],
            },
            {
                "id": "c-1",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "is."}, "finish_reason": None}],
            },
            {
                "id": "c-1",
                "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
    )
    + b"data: [DONE]\n\n"
)
RESPONSES_REQUEST = {"model": "gpt-4.1", "input": "Capital of France?", "instructions": "Be terse."}
RESPONSES_RESPONSE = {
    "id": "resp_1",
    "model": "gpt-4.1",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris."}],
        }
    ],
    "usage": {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11},
}


def _parses() -> list[Any]:
    chat, responses = OpenAIChat(), OpenAIResponses()
    return [
        chat.parse_request(CHAT_REQUEST, "/v1/chat/completions"),
        chat.parse_response(CHAT_RESPONSE),
        chat.parse_stream(list(parse_sse(CHAT_STREAM))),
        chat.parse_stream_body(CHAT_STREAM),
        responses.parse_request(RESPONSES_REQUEST, "/v1/responses"),
        responses.parse_response(RESPONSES_RESPONSE),
    ]


def test_without_messages_wanted_only_the_messages_are_left_out() -> None:
    assert messages_wanted()  # outside a traced call adapters build everything
    full = _parses()
    token = MESSAGES_WANTED.set(False)
    try:
        lean = _parses()
    finally:
        MESSAGES_WANTED.reset(token)
    assert all(parsed.messages for parsed in full)
    for a, b in zip(full, lean):
        assert b.messages is None
        assert dataclasses.replace(a, messages=None) == b


@pytest.mark.parametrize(
    ("content_format", "wanted"), [("langfuse", False), ("gen_ai", True), ("both", True)]
)
def test_the_call_sets_it_from_the_content_format_for_its_parse_only(
    content_format: str, wanted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    adapter = OpenAIChat()
    original = adapter.parse_request

    def spy(body: Any, path: str) -> Any:
        seen.append(messages_wanted())
        return original(body, path)

    monkeypatch.setattr(adapter, "parse_request", spy)
    options = LLMOptions(content_format=content_format, adapters=(adapter,))  # type: ignore[arg-type]
    call = match_llm_call(options, "POST", URL("http://h/v1/chat/completions"), TraceAttributes())
    assert call is not None
    call.feed_request(json.dumps(CHAT_REQUEST).encode())

    class Response:
        headers = CIMultiDict({"Content-Type": "application/json"})

    call.on_response(Response)  # type: ignore[arg-type]
    assert call.response_body is not None
    call.response_body.feed(json.dumps(CHAT_RESPONSE).encode())
    span = TracerProvider().get_tracer("t").start_span("chat")
    attributes: dict[str, Any] = {}
    call.finish(attributes, HttpSpan(span, "id", None, call), "body_complete")  # type: ignore[arg-type]
    assert seen == [wanted]
    assert messages_wanted()  # reset once the parse is over
    assert ("gen_ai.input.messages" in attributes) is wanted
    assert ("gen_ai.output.messages" in attributes) is wanted
    assert ("langfuse.observation.output" in attributes) is (content_format != "gen_ai")


def _parse_shape(shape: Shape, wanted: bool) -> tuple[Any, Any]:
    """The shape's request and response, read the way a traced call reads them."""
    value = shape.build(["Par", "is."], 7)
    if shape.framing == "json":
        wire = fuzz_dumps(value)
    else:
        wire = frame(shape.framing, [(name, fuzz_dumps(obj)) for name, obj in value])
    url = URL("http://127.0.0.1:8000" + shape.path)
    call = match_llm_call(LLMOptions(), "POST", url, TraceAttributes())
    assert call is not None, shape.name
    call.feed_request(json.dumps(shape.request).encode())

    class Response:
        headers = CIMultiDict({"Content-Type": CONTENT_TYPES[shape.framing]})

    call.on_response(Response)  # type: ignore[arg-type]
    assert call.response_body is not None
    call.response_body.feed(wire)
    token = MESSAGES_WANTED.set(wanted)
    try:
        request = read_request(call, {})
        response = read_response(call, {}, "body_complete", request.stream)
    finally:
        MESSAGES_WANTED.reset(token)
    return request, response


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_adapter_leaves_out_the_messages_alone(shape: Shape) -> None:
    # Every API shape the adapters read: without the flag, `messages` is None and every other
    # field (what the default Langfuse format exports) is what it was.
    full = _parse_shape(shape, wanted=True)
    lean = _parse_shape(shape, wanted=False)
    if "embed" not in shape.name:  # embeddings have no messages either way
        assert full[0].messages and full[1].messages
    for a, b in zip(full, lean):
        assert b is not None and a is not None
        assert b.messages is None
        assert dataclasses.replace(a, messages=None) == b
