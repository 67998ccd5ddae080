"""The Cohere v2 adapter: ``/v2/chat`` (JSON, SSE and NDJSON streams) and ``/v2/embed``.

Reached through the real ``cohere`` SDK and litellm's ``cohere_chat/`` route (both over aiohttp,
traced by the instrumentor alone), and through plain aiohttp for the framings and bodies the
SDKs never produce. Every call is one span, ended once, with nothing left in the registry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import cohere
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan

from aiohttp_llm_tracing import EndReason
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.mock_llm.cohere import CHAT_ID, EMBED_ID, TEMPLATE_TOKENS
from aiohttp_llm_tracing.testing import TracingFixture

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import attrs, fetch_untraced, jattr  # noqa: E402

pytest_plugins = ["llm_fixtures"]
pytestmark = [
    # Both content vocabularies are checked here; the default writes only Langfuse's.
    pytest.mark.usefixtures("both_content_formats"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


USER = "What is the weather like in Paris today?"
ANSWER = "Mock answer to: " + USER[:40]
IN_TOKENS = len(USER.split())  # the mock bills one token per word...
SEEN_TOKENS = IN_TOKENS + TEMPLATE_TOKENS  # ...and counts its prompt template on top
OUT_TOKENS = len(ANSWER.split())
MESSAGES = [{"role": "user", "content": USER}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
async def co(traced: TracingFixture, server: MockLLMServer) -> AsyncIterator[Any]:
    # Made inside the instrumented test, so its aiohttp session is traced; no retries, so an
    # error is one request and one span.
    client = cohere.AsyncClientV2(
        api_key="test-key", base_url=f"http://127.0.0.1:{server.port}", max_retries=0
    )
    async with client:
        yield client


def only(tracing: TracingFixture) -> ReadableSpan:
    spans = tracing.spans()
    assert len(spans) == 1, [s.name for s in spans]
    tracing.assert_settled()
    return spans[0]


def assert_chat(span: ReadableSpan, model: str, *, stream: bool, input_tokens: int) -> None:
    """The facts every successful text chat carries."""
    a = attrs(span)
    assert span.name == f"chat {model}"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "cohere"
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["langfuse.observation.model.name"] == model
    assert a["gen_ai.response.id"] == CHAT_ID
    assert a["gen_ai.response.finish_reasons"] == ("COMPLETE",)
    assert a["gen_ai.usage.input_tokens"] == input_tokens
    assert a["gen_ai.usage.output_tokens"] == OUT_TOKENS
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": USER}]}
    ]
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "COMPLETE",
        }
    ]
    output = jattr(span, "langfuse.observation.output")
    assert output["content"] == [{"type": "text", "text": ANSWER}]
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert "llm_tracing.parse_error" not in a
    if stream:
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.response.time_to_first_chunk"] > 0
    else:
        assert "gen_ai.request.stream" not in a
        assert "gen_ai.response.time_to_first_chunk" not in a


# -- the cohere SDK -----------------------------------------------------------------------------


async def test_sdk_chat_parameters_and_system(co, traced):
    messages = [{"role": "system", "content": "Answer briefly."}, *MESSAGES]
    resp = await co.chat(
        model="command-a-03-2025",
        messages=messages,
        temperature=0.3,
        max_tokens=200,
        p=0.9,
        k=40,
        seed=7,
        stop_sequences=["END"],
        frequency_penalty=0.1,
        presence_penalty=0.2,
    )
    assert resp.message.content[0].text == ANSWER
    span = only(traced)
    seen = SEEN_TOKENS + 2  # the system message's two words count too
    assert_chat(span, "command-a-03-2025", stream=False, input_tokens=seen)
    a = attrs(span)
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.request.max_tokens"] == 200
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.top_k"] == 40
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.frequency_penalty"] == 0.1
    assert a["gen_ai.request.presence_penalty"] == 0.2
    assert jattr(span, "langfuse.observation.model.parameters") == {
        "temperature": 0.3,
        "max_tokens": 200,
        "top_p": 0.9,
        "top_k": 40,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "seed": 7,
        "stop_sequences": ["END"],
    }
    # The system message is an instruction, not a turn of the conversation.
    assert jattr(span, "gen_ai.system_instructions") == [
        {"type": "text", "content": "Answer briefly."}
    ]
    assert jattr(span, "langfuse.observation.input") == messages
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": seen,
        "output": OUT_TOKENS,
        "total": seen + OUT_TOKENS,
    }


async def test_sdk_chat_stream(co, traced):
    parts = [
        e.delta.message.content.text
        async for e in co.chat_stream(model="command-a-03-2025", messages=MESSAGES)
        if e.type == "content-delta"
    ]
    assert "".join(parts) == ANSWER and len(parts) == 8
    span = only(traced)
    assert_chat(span, "command-a-03-2025", stream=True, input_tokens=SEEN_TOKENS)
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": [{"type": "text", "text": ANSWER}],
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_tool_call(co, traced, stream):
    if stream:
        events = [
            e async for e in co.chat_stream(model="command-a", messages=MESSAGES, tools=TOOLS)
        ]
        assert events[-1].delta.finish_reason == "TOOL_CALL"
    else:
        resp = await co.chat(model="command-a", messages=MESSAGES, tools=TOOLS)
        assert resp.finish_reason == "TOOL_CALL"
    span = only(traced)
    a = attrs(span)
    assert span.name == "chat command-a"
    assert a["gen_ai.response.finish_reasons"] == ("TOOL_CALL",)
    assert a["gen_ai.usage.input_tokens"] == SEEN_TOKENS
    assert a["gen_ai.usage.output_tokens"] > 0
    assert jattr(span, "gen_ai.tool.definitions") == TOOLS
    assert jattr(span, "langfuse.observation.input") == {"messages": MESSAGES, "tools": TOOLS}
    plan = "I will call get_weather to answer this."
    call = {"name": "get_weather", "arguments": json.dumps({"query": USER[:40]})}
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "tool_plan": plan,
        "tool_calls": [{"id": "mock_tool_call_1", "type": "function", "function": call}],
    }
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": plan},
                {
                    "type": "tool_call",
                    "id": "mock_tool_call_1",
                    "name": "get_weather",
                    "arguments": {"query": USER[:40]},
                },
            ],
            "finish_reason": "TOOL_CALL",
        }
    ]
    assert ("gen_ai.response.time_to_first_chunk" in a) is stream


async def test_sdk_tool_result_turn(co, traced):
    call = {"id": "c1", "type": "function"}
    call["function"] = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    messages = [
        *MESSAGES,
        {"role": "assistant", "tool_plan": "I will call get_weather.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "Sunny"}]},
    ]
    resp = await co.chat(model="command-a", messages=messages, tools=TOOLS)
    assert resp.finish_reason == "COMPLETE"
    span = only(traced)
    assert jattr(span, "gen_ai.input.messages")[1:] == [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "I will call get_weather."},
                {
                    "type": "tool_call",
                    "id": "c1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "Sunny"}],
        },
    ]
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("COMPLETE",)
    assert jattr(span, "langfuse.observation.output")["content"][0]["text"].startswith("Mock")


@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_cached_tokens(co, traced, stream):
    if stream:
        [e async for e in co.chat_stream(model="command-a-cached", messages=MESSAGES)]
    else:
        await co.chat(model="command-a-cached", messages=MESSAGES)
    span = only(traced)
    assert_chat(span, "command-a-cached", stream=stream, input_tokens=SEEN_TOKENS)
    cached = SEEN_TOKENS // 2
    assert attrs(span)["gen_ai.usage.cache_read.input_tokens"] == cached
    # Langfuse prices buckets apart: the cached part is split out of the input.
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": SEEN_TOKENS - cached,
        "input_cached_tokens": cached,
        "output": OUT_TOKENS,
        "total": SEEN_TOKENS + OUT_TOKENS,
    }


async def test_sdk_embed(co, traced):
    texts = ["hello world", "distributed tracing"]
    resp = await co.embed(
        model="embed-v4.0",
        texts=texts,
        input_type="search_document",
        embedding_types=["float", "int8"],
    )
    assert len(resp.embeddings.float_) == 2
    span = only(traced)
    a = attrs(span)
    assert span.name == "embeddings embed-v4.0"
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["langfuse.observation.type"] == "embedding"
    assert a["gen_ai.provider.name"] == "cohere"
    assert a["gen_ai.request.model"] == "embed-v4.0"
    assert a["gen_ai.response.id"] == EMBED_ID
    assert a["gen_ai.request.encoding_formats"] == ("float", "int8")
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert a["gen_ai.usage.input_tokens"] == 4  # billed_units: one token per word
    assert jattr(span, "langfuse.observation.input") == texts
    assert jattr(span, "langfuse.observation.output") == {"count": 2, "dimensions": 8}
    assert jattr(span, "langfuse.observation.model.parameters") == {"input_type": "search_document"}
    assert "gen_ai.response.finish_reasons" not in a


async def test_sdk_error(co, traced):
    with pytest.raises(cohere.errors.TooManyRequestsError):
        await co.chat(model="error-429", messages=MESSAGES)
    span = only(traced)
    a = attrs(span)
    message = "mock rate limit: you are past the per minute request limit"
    assert span.name == "chat error-429"
    assert a["http.response.status_code"] == 429
    assert a["gen_ai.request.model"] == "error-429"
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == message
    assert jattr(span, "langfuse.observation.output") == {"error": message}
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert "llm_tracing.parse_error" not in a


# -- litellm's cohere_chat/ route: JSON, and a stream of JSON lines (Accept: application/json) --


async def test_litellm_cohere_chat(traced, server, litellm):
    common = {
        "messages": MESSAGES,
        "api_key": "k",
        "api_base": f"http://127.0.0.1:{server.port}/v2/chat",
    }
    done = await litellm.acompletion(model="cohere_chat/command-a-03-2025", **common)
    stream = await litellm.acompletion(model="cohere_chat/command-a-03-2025", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    assert server.requests[-1]["headers"]["accept"] == "application/json"  # NDJSON stream
    spans = traced.spans()
    assert len(spans) == 2
    traced.assert_settled()
    assert_chat(spans[0], "command-a-03-2025", stream=False, input_tokens=SEEN_TOKENS)
    assert_chat(spans[1], "command-a-03-2025", stream=True, input_tokens=SEEN_TOKENS)


# -- plain aiohttp ------------------------------------------------------------------------------


async def post(
    tracing: Any, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    async with tracing.session() as s, s.post(url, json=body, headers=headers) as resp:
        raw = b"".join([chunk async for chunk in resp.content.iter_chunked(4096)])
        return resp.status, resp.headers.get("Content-Type", ""), raw


@pytest.mark.parametrize("accept", ["text/event-stream", "application/json"])
async def test_raw_stream_framings(server, tracing, accept):
    url = f"http://127.0.0.1:{server.port}/v2/chat?mock_chunks=3"
    body = {"model": "command-r", "messages": MESSAGES, "stream": True}
    _, ctype, raw = await post(tracing, url, body, {"Accept": accept})
    assert ctype.startswith("text/event-stream" if "event" in accept else "application/stream")
    span = tracing.only()
    assert_chat(span, "command-r", stream=True, input_tokens=SEEN_TOKENS)
    # The first content event is the third (message-start and content-start come first).
    assert raw.count(b"content-delta") >= 3


async def test_raw_max_tokens(server, tracing):
    url = f"http://127.0.0.1:{server.port}/v2/chat"
    body = {"model": "command-r", "messages": MESSAGES, "max_tokens": 2}
    await post(tracing, url, body)
    span = tracing.only()
    a = attrs(span)
    assert a["gen_ai.request.max_tokens"] == 2
    assert a["gen_ai.response.finish_reasons"] == ("MAX_TOKENS",)
    assert a["gen_ai.usage.output_tokens"] == 2
    assert jattr(span, "langfuse.observation.output")["content"][0]["text"] == "Mock answer"


# -- bad input: the caller gets the server's bytes, the span ends once and says what is wrong --


@pytest.mark.parametrize("accept", ["text/event-stream", "application/json"])
async def test_truncated_stream(server, tracing, accept):
    url = f"http://127.0.0.1:{server.port}/v2/chat"
    body = {"model": "truncated-sse", "messages": MESSAGES, "stream": True}
    headers = {"Accept": accept}
    _, _, raw = await post(tracing, url, body, headers)
    assert raw == await fetch_untraced(url, body, headers=headers)
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert a["gen_ai.request.model"] == "truncated-sse"
    assert a["gen_ai.response.id"] == CHAT_ID
    assert "gen_ai.response.finish_reasons" not in a  # message-end never came
    assert "gen_ai.usage.input_tokens" not in a
    # message-start, content-start and one whole delta arrived before the cut.
    seen = ANSWER[: len(ANSWER) // 8]
    assert jattr(span, "langfuse.observation.output")["content"] == [{"type": "text", "text": seen}]
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_invalid_json(server, tracing):
    url = f"http://127.0.0.1:{server.port}/v2/chat"
    body = {"model": "invalid-json", "messages": MESSAGES}
    _, _, raw = await post(tracing, url, body)
    assert raw == await fetch_untraced(url, body) == b'{"id": "x", "choices": ['
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert span.name == "chat invalid-json"
    assert "langfuse.observation.output" not in a
    assert jattr(span, "langfuse.observation.input") == MESSAGES


# Valid JSON, wrong types everywhere: nothing may raise, nothing false may be recorded.
WRONG_REPLY = {"id": 5, "message": ["x"], "finish_reason": 3, "usage": "lots"}
WRONG_EVENTS = [
    {"type": "message-start", "id": ["x"], "delta": "no"},
    {"type": "content-delta", "index": "0", "delta": {"message": {"content": 5}}},
    {"type": "tool-call-start", "delta": {"message": {"tool_calls": [1]}}},
    {"type": "message-end", "delta": {"finish_reason": 7, "usage": {"tokens": []}}},
]


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    async def reply(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("stream"):
            lines = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in WRONG_EVENTS)
            return web.Response(text=lines, content_type="text/event-stream")
        if body.get("model") == "billed-only":
            # No usage.tokens: billed_units stand in, counts typed as numbers (5.0).
            usage = {"billed_units": {"input_tokens": 5.0, "output_tokens": 2}}
            message = {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]}
            return web.json_response({"id": "b1", "message": message, "usage": usage})
        return web.json_response(WRONG_REPLY)

    app = web.Application()
    app.router.add_post("/v2/chat", reply)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/v2/chat"))
    await server.close()


async def test_wrong_json_types(odd_server, tracing):
    body = {"model": "m", "messages": [5, {"role": "user", "content": {"x": 1}}], "p": "high"}
    _, _, raw = await post(tracing, odd_server, body)
    assert json.loads(raw) == WRONG_REPLY
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert a["gen_ai.request.model"] == "m"
    assert "gen_ai.request.top_p" not in a
    assert "gen_ai.response.id" not in a
    assert "gen_ai.usage.input_tokens" not in a
    assert "langfuse.observation.output" not in a


async def test_wrong_json_types_in_a_stream(odd_server, tracing):
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    _, _, raw = await post(tracing, odd_server, body)
    assert raw.count(b"event: ") == len(WRONG_EVENTS)
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert "llm_tracing.parse_error" not in a  # a reply was started, it just says nothing
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.usage.input_tokens" not in a
    output = jattr(span, "langfuse.observation.output")
    assert output["role"] == "assistant"
    assert output["tool_calls"][0]["function"]["arguments"] == ""


async def test_billed_units_when_tokens_are_absent(odd_server, tracing):
    await post(tracing, odd_server, {"model": "billed-only", "messages": MESSAGES})
    span = tracing.only()
    a = attrs(span)
    assert a["gen_ai.usage.input_tokens"] == 5
    assert a["gen_ai.usage.output_tokens"] == 2
    assert a["gen_ai.response.id"] == "b1"
    assert "gen_ai.response.finish_reasons" not in a
    assert jattr(span, "langfuse.observation.output")["content"][0]["text"] == "Hi"
