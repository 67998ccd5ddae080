"""The mock's Cohere v2 shapes, driven by the real ``cohere`` SDK (and litellm's cohere route)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import cohere
import httpx
import httpx_aiohttp
import pytest

from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.mock_llm.cohere import TEMPLATE_TOKENS

USER = [{"role": "user", "content": "What is the weather like in Paris today?"}]
ANSWER = "Mock answer to: What is the weather like in Paris today?"
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
async def srv() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as server:
        yield server


@pytest.fixture
async def co(srv: MockLLMServer) -> AsyncIterator[cohere.AsyncClientV2]:
    # max_retries=0: error tests must see exactly one request, not the SDK's default 2 retries.
    client = cohere.AsyncClientV2(
        api_key="test-key", base_url=f"http://127.0.0.1:{srv.port}", max_retries=0
    )
    async with client:  # __aexit__ closes the httpx client, and with it the aiohttp session
        yield client


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def test_chat_text(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    resp = await co.chat(model="command-a-03-2025", messages=USER)
    assert resp.id and resp.finish_reason == "COMPLETE"
    assert resp.message.role == "assistant" and resp.message.tool_calls is None
    assert [c.text for c in resp.message.content or []] == [ANSWER]
    usage = resp.usage
    assert usage is not None and usage.billed_units is not None and usage.tokens is not None
    assert usage.billed_units.input_tokens == 8  # "What is ... today?": eight words
    assert usage.billed_units.output_tokens == len(ANSWER.split())
    assert usage.tokens.input_tokens == 8 + TEMPLATE_TOKENS
    assert usage.tokens.output_tokens == usage.billed_units.output_tokens
    assert usage.cached_tokens is None
    (req,) = srv.requests
    assert (req["method"], req["path"]) == ("POST", "/v2/chat")
    assert req["headers"]["authorization"] == "Bearer test-key"
    assert req["json"]["model"] == "command-a-03-2025"
    assert req["json"]["messages"] == USER
    assert not req["json"].get("stream")


async def test_chat_cached_tokens_and_max_tokens(co: cohere.AsyncClientV2) -> None:
    resp = await co.chat(model="command-a-cached", messages=USER, max_tokens=2)
    assert resp.finish_reason == "MAX_TOKENS"
    assert [c.text for c in resp.message.content or []] == ["Mock answer"]
    assert resp.usage is not None and resp.usage.tokens is not None
    assert resp.usage.cached_tokens == (8 + TEMPLATE_TOKENS) // 2
    assert resp.usage.tokens.output_tokens == 2


async def test_chat_tool_call(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    resp = await co.chat(model="command-a-03-2025", messages=USER, tools=TOOLS)
    assert resp.finish_reason == "TOOL_CALL"
    assert resp.message.content is None
    assert resp.message.tool_plan == "I will call get_weather to answer this."
    (call,) = resp.message.tool_calls or []
    assert call.id and call.type == "function" and call.function is not None
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"query": USER[0]["content"][:40]}
    assert srv.requests[-1]["json"]["tools"][0]["function"]["name"] == "get_weather"


async def test_tool_result_turn_answers_in_text(co: cohere.AsyncClientV2) -> None:
    # The user is no longer last, so the model answers instead of calling the tool again.
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        *USER,
        {"role": "assistant", "tool_plan": "I will call get_weather.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
    ]
    resp = await co.chat(model="command-a-03-2025", messages=messages, tools=TOOLS)
    assert resp.finish_reason == "COMPLETE"
    assert [c.text for c in resp.message.content or []] == [ANSWER]


async def test_chat_stream_text(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    whole = await co.chat(model="command-a-03-2025", messages=USER)
    events = await collect(co.chat_stream(model="command-a-03-2025", messages=USER))
    kinds = [e.type for e in events]
    assert kinds == [
        "message-start",
        "content-start",
        *["content-delta"] * 8,
        "content-end",
        "message-end",
    ]
    assert events[0].id == whole.id and events[0].delta.message.role == "assistant"
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta")
    assert [text] == [c.text for c in whole.message.content or []]
    end = events[-1].delta
    assert end.finish_reason == "COMPLETE"
    assert end.usage == whole.usage
    req = srv.requests[-1]
    assert req["json"]["stream"] is True and req["path"] == "/v2/chat"


async def test_chat_stream_sse_framing(srv: MockLLMServer) -> None:
    # Cohere names every SSE event after its type; the SDK reads the type inside ``data``.
    url = f"http://127.0.0.1:{srv.port}/v2/chat?mock_chunks=2"
    body = {"model": "command-a", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.content_type == "text/event-stream"
        raw = (await resp.read()).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert len(blocks) == 6
    for block in blocks:
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        assert json.loads(data[6:])["type"] == event[7:]


async def test_chat_stream_ndjson_for_accept_json(srv: MockLLMServer) -> None:
    # Accept: application/json (litellm's) gets one bare JSON event per line instead of SSE.
    url = f"http://127.0.0.1:{srv.port}/v2/chat?mock_chunks=2"
    body = {"model": "command-a", "messages": USER, "stream": True}
    headers = {"Accept": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, headers=headers) as resp:
            assert resp.content_type == "application/stream+json"
            lines = (await resp.read()).decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == [
        "message-start",
        "content-start",
        "content-delta",
        "content-delta",
        "content-end",
        "message-end",
    ]
    assert "".join(e["delta"]["message"]["content"]["text"] for e in events[2:4]) == ANSWER


async def test_chat_stream_mock_chunks(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    opts: Any = {"additional_query_parameters": {"mock_chunks": 3}}
    events = await collect(co.chat_stream(model="command-a", messages=USER, request_options=opts))
    deltas = [e.delta.message.content.text for e in events if e.type == "content-delta"]
    assert len(deltas) == 3 and "".join(deltas) == ANSWER
    assert srv.requests[-1]["query"] == {"mock_chunks": "3"}


async def test_chat_stream_tool_call(co: cohere.AsyncClientV2) -> None:
    whole = await co.chat(model="command-a", messages=USER, tools=TOOLS)
    events = await collect(co.chat_stream(model="command-a", messages=USER, tools=TOOLS))
    kinds = [e.type for e in events]
    assert kinds[0] == "message-start" and kinds[-2:] == ["tool-call-end", "message-end"]
    assert "content-delta" not in kinds
    plan = "".join(e.delta.message.tool_plan for e in events if e.type == "tool-plan-delta")
    assert plan == whole.message.tool_plan
    (start,) = [e for e in events if e.type == "tool-call-start"]
    call = start.delta.message.tool_calls
    assert (call.id, call.function.name) == (whole.message.tool_calls[0].id, "get_weather")
    args = "".join(
        e.delta.message.tool_calls.function.arguments for e in events if e.type == "tool-call-delta"
    )
    assert args == whole.message.tool_calls[0].function.arguments
    assert events[-1].delta.finish_reason == "TOOL_CALL"
    assert events[-1].delta.usage == whole.usage


async def test_embed(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    texts = ["hello world", "a b c"]
    resp = await co.embed(
        model="embed-v4.0",
        texts=texts,
        input_type="search_document",
        embedding_types=["float", "int8", "base64"],
        output_dimension=16,
    )
    emb = resp.embeddings
    assert emb.float_ is not None and emb.int8 is not None and emb.base64 is not None
    assert [len(v) for v in emb.float_] == [16, 16] and [len(v) for v in emb.int8] == [16, 16]
    assert emb.uint8 is None and emb.binary is None
    assert all(-1 <= x < 1 for v in emb.float_ for x in v)
    assert resp.texts == texts
    assert resp.meta is not None and resp.meta.billed_units is not None
    assert resp.meta.billed_units.input_tokens == 5
    assert resp.meta.api_version is not None and resp.meta.api_version.version == "2"
    again = await co.embed(model="embed-v4.0", texts=texts[:1], input_type="search_query")
    assert again.embeddings.float_ == [emb.float_[0][:8]]  # deterministic; default 8 dims
    assert again.embeddings.int8 is None  # embedding_types defaults to float only
    assert srv.requests[0]["path"] == "/v2/embed"
    assert srv.requests[0]["json"]["embedding_types"] == ["float", "int8", "base64"]


async def test_rerank(co: cohere.AsyncClientV2, srv: MockLLMServer) -> None:
    docs = ["green pear", "red apple pie", "an apple"]
    resp = await co.rerank(model="rerank-v3.5", query="red apple", documents=docs, top_n=2)
    assert [(r.index, r.relevance_score) for r in resp.results] == [(1, 1.0), (2, 0.5)]
    assert resp.meta is not None and resp.meta.billed_units is not None
    assert resp.meta.billed_units.search_units == 1
    assert srv.requests[-1]["path"] == "/v2/rerank"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, cohere.BadRequestError),
        (429, cohere.TooManyRequestsError),
        (500, cohere.InternalServerError),
    ],
)
async def test_error_models(
    co: cohere.AsyncClientV2, srv: MockLLMServer, status: int, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        await co.chat(model=f"error-{status}", messages=USER)
    assert info.value.status_code == status  # type: ignore[attr-defined]
    body = info.value.body  # type: ignore[attr-defined]
    assert set(body) == {"id", "message"} and body["message"]
    with pytest.raises(error):
        await collect(co.chat_stream(model=f"error-{status}", messages=USER))
    with pytest.raises(error) as info:
        await co.embed(model=f"error-{status}", texts=["x"], input_type="search_query")
    assert set(info.value.body) == {"id", "message"}  # type: ignore[attr-defined]
    assert len(srv.requests) == 3  # no retries


async def test_invalid_json_raises_api_error(co: cohere.AsyncClientV2) -> None:
    with pytest.raises(cohere.core.ApiError) as info:
        await co.chat(model="invalid-json", messages=USER)
    assert info.value.status_code == 200


async def test_truncated_and_never_ending_streams(co: cohere.AsyncClientV2) -> None:
    # truncated-sse: three whole events, then half of the fourth and EOF; no message-end.
    events = await collect(co.chat_stream(model="truncated-sse", messages=USER))
    assert [e.type for e in events][:3] == ["message-start", "content-start", "content-delta"]
    assert "message-end" not in [e.type for e in events]
    # never-ending: the first delta forever; the caller decides when to stop.
    stream = co.chat_stream(model="never-ending", messages=USER)
    seen = []
    async for event in stream:
        seen.append(event.type)
        if len(seen) == 6:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert seen == ["message-start", "content-start", *["content-delta"] * 4]


async def test_slow_headers_hit_the_client_timeout(co: cohere.AsyncClientV2) -> None:
    # The SDK's additional_body_parameters carry the shared helpers' metadata.mock_delay.
    opts: Any = {"timeout": 0.2, "additional_body_parameters": {"metadata": {"mock_delay": 30}}}
    with pytest.raises(httpx.TimeoutException):
        await co.chat(model="slow-headers", messages=USER, request_options=opts)


async def test_cohere_sdk_sends_over_a_lazily_built_aiohttp_session(
    co: cohere.AsyncClientV2,
) -> None:
    # cohere 7.3.1 picks httpx_aiohttp.HttpxAiohttpClient whenever httpx_aiohttp imports
    # (base_client._make_default_async_client); its AiohttpTransport makes a plain
    # ClientSession(connector=TCPConnector(...)) on the first request, with no trace_configs.
    httpx_client = co._client_wrapper.httpx_client.httpx_client
    assert type(httpx_client) is httpx_aiohttp.HttpxAiohttpClient
    transport = httpx_client._transport
    assert type(transport) is httpx_aiohttp.AiohttpTransport
    assert transport.client is None  # nothing built yet
    await co.chat(model="command-a", messages=USER)
    session = transport.client
    assert isinstance(session, aiohttp.ClientSession)
    assert session._trace_configs == []


async def test_litellm_cohere_chat_json_and_stream(litellm: Any, srv: MockLLMServer) -> None:
    # litellm's cohere_chat/ route defaults to v2 and POSTs to api_base as given, so the base
    # must name the full /v2/chat path.
    api_base = f"http://127.0.0.1:{srv.port}/v2/chat"
    common = {"messages": USER, "api_key": "k", "api_base": api_base}
    resp = await litellm.acompletion(model="cohere_chat/command-r", **common)
    assert resp.choices[0].message.content == ANSWER
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (
        8 + TEMPLATE_TOKENS,  # litellm reports usage.tokens, not billed_units
        len(ANSWER.split()),
    )
    req = srv.requests[-1]
    assert req["path"] == "/v2/chat" and req["json"]["model"] == "command-r"
    assert req["headers"]["authorization"] == "Bearer k"

    # litellm asks for Accept: application/json and parses one bare JSON event per line, so
    # the mock streams NDJSON to it (SSE would make litellm fail on the ``event:`` lines).
    stream = await litellm.acompletion(model="cohere_chat/command-r", stream=True, **common)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"
    req = srv.requests[-1]
    assert req["json"]["stream"] is True
    assert req["headers"]["accept"] == "application/json"


async def test_litellm_cohere_tool_call_and_error(litellm: Any, srv: MockLLMServer) -> None:
    api_base = f"http://127.0.0.1:{srv.port}/v2/chat"
    common = {"messages": USER, "api_key": "k", "api_base": api_base}
    resp = await litellm.acompletion(model="cohere_chat/command-r", tools=TOOLS, **common)
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert resp.choices[0].finish_reason == "tool_calls"
    with pytest.raises(litellm.RateLimitError) as info:
        await litellm.acompletion(model="cohere_chat/error-429", **common)
    assert info.value.status_code == 429
    assert "mock rate limit" in str(info.value)


async def test_litellm_http_client_is_its_own_aiohttp_transport(
    litellm: Any, srv: MockLLMServer
) -> None:
    # litellm does not use httpx_aiohttp: AsyncHTTPHandler wraps httpx.AsyncClient around its
    # own LiteLLMAiohttpTransport, whose session factory adds litellm's pool-wait TraceConfig.
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport
    from litellm.llms.custom_httpx.http_handler import get_async_httpx_client

    api_base = f"http://127.0.0.1:{srv.port}/v2/chat"
    await litellm.acompletion(
        model="cohere_chat/command-r", messages=USER, api_key="k", api_base=api_base
    )
    handler = get_async_httpx_client(llm_provider="cohere_chat", params={"ssl_verify": None})
    transport = handler.client._transport
    assert isinstance(transport, LiteLLMAiohttpTransport)
    assert isinstance(transport.client, aiohttp.ClientSession)
    assert len(transport.client._trace_configs) == 1
