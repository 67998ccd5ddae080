"""Tests for the embedded mock LLM server (plain aiohttp client plus the real openai SDK)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import struct
import time
import urllib.request
import zlib
from typing import Any

import aiohttp
import pytest

from aiohttp_llm_tracing.mock_llm import MockLLMServer, create_app, run_in_thread

USER = [{"role": "user", "content": "Explain distributed tracing for LLM calls in one line"}]
ANSWER = "Mock answer to: " + USER[0]["content"][:40]
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]


@pytest.fixture
async def server() -> Any:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as sess:
        yield sess


def sse(raw: bytes) -> list[Any]:
    """Parse SSE ``data:`` payloads; ``[DONE]`` is kept as a string."""
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    blocks = [b for b in raw.decode().split("\n\n") if b.strip()]
    pairs = [dict(line.split(": ", 1) for line in b.splitlines()) for b in blocks]
    return [(p["event"], json.loads(p["data"])) for p in pairs]


async def post(session: aiohttp.ClientSession, url: str, **body: Any) -> aiohttp.ClientResponse:
    resp = await session.post(url, json=body)
    await resp.read()
    return resp


async def test_chat_non_stream(server: Any, session: aiohttp.ClientSession) -> None:
    resp = await post(session, f"{server.base_url}/chat/completions", model="m1", messages=USER)
    data = await resp.json()
    assert resp.status == 200
    assert data["id"] == "chatcmpl-mock-1" and data["created"] == 1700000000
    assert data["object"] == "chat.completion" and data["model"] == "m1"
    assert data["system_fingerprint"] == "fp_mock"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ANSWER, "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["prompt_tokens"] == 9 and usage["completion_tokens"] == len(ANSWER.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


async def test_chat_tool_call(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/chat/completions"
    data = await (await post(session, url, model="m", messages=USER, tools=TOOLS)).json()
    msg = data["choices"][0]["message"]
    assert data["choices"][0]["finish_reason"] == "tool_calls" and msg["content"] is None
    call = msg["tool_calls"][0]
    assert call["id"] == "call_mock_1" and call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"query": USER[0]["content"][:40]}

    # Streamed: id/name once, then argument fragments only, all at index 0.
    body = {"model": "m", "messages": USER, "tools": TOOLS, "stream": True}
    chunks = sse(await (await session.post(url, json=body)).read())
    assert chunks[-1] == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    first = deltas[0]["tool_calls"][0]
    assert first["index"] == 0 and first["id"] == "call_mock_1" and first["type"] == "function"
    assert first["function"] == {"name": "search", "arguments": ""}
    frags = [d["tool_calls"][0] for d in deltas[1:]]
    assert all(set(f) == {"index", "function"} and f["index"] == 0 for f in frags)
    assert "".join(f["function"]["arguments"] for f in frags) == call["function"]["arguments"]

    # A tool result as the last message means the model should answer in text.
    tool_msg = {"role": "tool", "tool_call_id": "call_mock_1", "content": "42"}
    msgs = [*USER, {"role": "assistant", "tool_calls": [call]}, tool_msg]
    data = await (await post(session, url, model="m", messages=msgs, tools=TOOLS)).json()
    assert data["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("n_chunks", [None, 3])
async def test_chat_stream(server: Any, session: aiohttp.ClientSession, n_chunks: Any) -> None:
    body: dict[str, Any] = {"model": "m", "messages": USER, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if n_chunks:
        body["metadata"] = {"mock_chunks": str(n_chunks)}  # the SDK sends strings
    resp = await session.post(f"{server.base_url}/chat/completions", json=body)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    chunks = sse(await resp.read())
    assert chunks[-1] == "[DONE]"
    first, *content, final, usage = chunks[:-1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == (n_chunks or 8)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == ANSWER
    assert final["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(ANSWER.split())

    # Without include_usage there is no usage chunk.
    body.pop("stream_options")
    chunks = sse(
        await (await session.post(f"{server.base_url}/chat/completions", json=body)).read()
    )
    assert "usage" not in chunks[-2] and chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_chunk_delay_and_override(session: aiohttp.ClientSession) -> None:
    async with MockLLMServer(chunk_delay=0.03) as srv:
        body = {"model": "m", "messages": USER, "stream": True, "metadata": {"mock_chunks": 4}}
        url = f"{srv.base_url}/chat/completions"
        start = time.monotonic()
        await (await session.post(url, json=body)).read()
        assert time.monotonic() - start >= 5 * 0.03  # 7 events, 6 gaps; allow slack
        body["metadata"]["mock_delay"] = 0
        start = time.monotonic()
        await (await session.post(url, json=body)).read()
        assert time.monotonic() - start < 0.1


async def test_azure_route(server: Any, session: aiohttp.ClientSession) -> None:
    url = server.base_url.removesuffix("/v1") + "/openai/deployments/my-gpt/chat/completions"
    resp = await session.post(url, params={"api-version": "2024-06-01"}, json={"messages": USER})
    assert (await resp.json())["model"] == "my-gpt"
    assert server.requests[-1]["path"] == "/openai/deployments/my-gpt/chat/completions"


async def test_legacy_completions(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/completions"
    data = await (await post(session, url, model="m", prompt="Say hi")).json()
    assert data["object"] == "text_completion" and data["choices"][0]["finish_reason"] == "stop"
    assert data["choices"][0]["text"] == "Mock answer to: Say hi"
    assert data["usage"]["prompt_tokens"] == 2
    body = {"model": "m", "prompt": "Say hi", "stream": True}
    chunks = sse(await (await session.post(url, json=body)).read())
    assert chunks[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == "Mock answer to: Say hi"


async def test_embeddings(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/embeddings"
    one = await (await post(session, url, model="e", input="hello world")).json()
    assert len(one["data"]) == 1 and len(one["data"][0]["embedding"]) == 8
    assert one["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    many = await (await post(session, url, model="e", input=["hello world", "b"])).json()
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["data"][0]["embedding"] == one["data"][0]["embedding"]  # deterministic
    b64 = await (
        await post(session, url, model="e", input="hello world", encoding_format="base64")
    ).json()
    decoded = struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))
    assert list(decoded) == one["data"][0]["embedding"]


async def test_responses_api(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/responses"
    data = await (await post(session, url, model="r", input="Hello there")).json()
    assert data["id"] == "resp_mock_1" and data["object"] == "response"
    assert data["status"] == "completed"
    assert data["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "Mock answer to: Hello there",
        "annotations": [],
    }
    assert data["usage"]["total_tokens"] == data["usage"]["input_tokens"] + 5
    body = {"model": "r", "input": [{"role": "user", "content": "Hello there"}], "stream": True}
    events = sse_events(await (await session.post(url, json=body)).read())
    assert [e for e, d in events] == [d["type"] for e, d in events]
    assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
    deltas = [d["delta"] for e, d in events if e == "response.output_text.delta"]
    assert "".join(deltas) == "Mock answer to: Hello there"
    assert events[-1][1]["response"]["usage"] == data["usage"]


async def test_anthropic_messages(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/messages"
    body: dict[str, Any] = {"model": "claude", "max_tokens": 10, "messages": USER}
    data = await (await post(session, url, **body)).json()
    assert data["id"] == "msg_mock_1" and data["type"] == "message"
    assert data["content"] == [{"type": "text", "text": ANSWER}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"] == {"input_tokens": 9, "output_tokens": len(ANSWER.split())}
    events = sse_events(await (await session.post(url, json={**body, "stream": True})).read())
    kinds = [e for e, _ in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 9
    texts = [d["delta"]["text"] for e, d in events if e == "content_block_delta"]
    assert "".join(texts) == ANSWER
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == data["usage"]["output_tokens"]


@pytest.mark.parametrize("status", [400, 429, 500])
async def test_error_models(server: Any, session: aiohttp.ClientSession, status: int) -> None:
    for path in ("chat/completions", "embeddings", "responses", "messages"):
        resp = await post(session, f"{server.base_url}/{path}", model=f"error-{status}")
        assert resp.status == status
        err = (await resp.json())["error"]
        assert err["message"] and err["type"] and "code" in err


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
@pytest.mark.parametrize("stream", [False, True])
async def test_compressed(
    server: Any, session: aiohttp.ClientSession, coding: str, stream: bool
) -> None:
    url = f"{server.base_url}/chat/completions"
    body = {"model": coding, "messages": USER, "stream": stream}
    resp = await session.post(url, json=body, auto_decompress=False)
    raw = await resp.read()
    assert resp.headers["Content-Encoding"] == coding
    if coding == "gzip":
        assert gzip.decompress(raw)
    elif coding == "deflate":
        assert zlib.decompress(raw)
    # aiohttp's own decompression must yield exactly the plain response, modulo the model.
    decoded = await (await session.post(url, json=body)).read()
    plain = await (await session.post(url, json={**body, "model": "plain"})).read()
    assert decoded.replace(coding.encode(), b"plain") == plain


async def test_gzip_stream_arrives_in_several_writes(server: Any) -> None:
    body = {"model": "gzip", "messages": USER, "stream": True}
    async with aiohttp.ClientSession(auto_decompress=False) as sess:
        resp = await sess.post(f"{server.base_url}/chat/completions", json=body)
        pieces = [chunk async for chunk, _ in resp.content.iter_chunks()]
    assert len(pieces) > 2
    assert sse(gzip.decompress(b"".join(pieces)))[-1] == "[DONE]"


async def test_bad_bodies(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/chat/completions"
    resp = await post(session, url, model="invalid-json")
    assert resp.status == 200 and resp.content_type == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(await resp.read())
    resp = await post(session, url, model="binary")
    raw = await resp.read()
    assert resp.content_type == "application/json" and raw == bytes(range(256)) * 16
    with pytest.raises(UnicodeDecodeError):
        raw.decode()
    assert await (await post(session, url, model="unknown-shape")).json() == {"hello": "world"}


async def test_truncated_sse(server: Any, session: aiohttp.ClientSession) -> None:
    body = {"model": "truncated-sse", "messages": USER, "stream": True}
    raw = await (await session.post(f"{server.base_url}/chat/completions", json=body)).read()
    assert b"[DONE]" not in raw
    lines = [line for line in raw.decode().split("\n") if line]
    assert len(lines) == 4 and all(json.loads(line[6:]) for line in lines[:3])
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[3][6:])


async def test_huge(server: Any, session: aiohttp.ClientSession) -> None:
    size = 1_000_003
    body = {"model": "huge", "metadata": {"mock_size": size}}
    resp = await session.post(f"{server.base_url}/chat/completions", json=body)
    assert resp.content_length == size
    raw = await resp.read()
    assert len(raw) == size
    data = json.loads(raw)
    assert data["id"] == "huge" and set(data["choices"][0]["message"]["content"]) == {"x"}


async def test_slow_headers(server: Any, session: aiohttp.ClientSession) -> None:
    url = f"{server.base_url}/chat/completions"
    body = {"model": "slow-headers", "messages": USER, "metadata": {"mock_delay": 0.2}}
    start = time.monotonic()
    assert (await (await session.post(url, json=body)).json())["choices"]
    assert time.monotonic() - start >= 0.2
    with pytest.raises(asyncio.TimeoutError):
        await session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=0.05))


async def test_never_ending_stops_on_disconnect(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with MockLLMServer() as srv:
        baseline = asyncio.all_tasks()
        async with aiohttp.ClientSession() as sess:
            body = {"model": "never-ending", "messages": USER, "stream": True}
            resp = await sess.post(f"{srv.base_url}/chat/completions", json=body)
            lines = []
            async for line in resp.content:
                if line.strip():
                    lines.append(line)
                if len(lines) == 5:
                    break
            resp.close()
        # The handler notices the client left at its next tick and exits: wait for exactly
        # that, bounded, instead of sleeping past the tick.
        left = asyncio.all_tasks() - baseline - {asyncio.current_task()}
        if left:
            _, pending = await asyncio.wait(left, timeout=5)
            assert not pending
        assert asyncio.all_tasks() - baseline == set()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_shutdown_with_active_stream(caplog: pytest.LogCaptureFixture) -> None:
    # The server stopping under a live client must neither hang nor log tracebacks.
    async with aiohttp.ClientSession() as sess:
        async with MockLLMServer() as srv:
            body = {"model": "never-ending", "messages": USER, "stream": True}
            resp = await sess.post(f"{srv.base_url}/chat/completions", json=body)
            await resp.content.readline()
        start = time.monotonic()
        with pytest.raises(aiohttp.ClientError):
            await resp.read()
        assert time.monotonic() - start < 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_plain_routes(server: Any, session: aiohttp.ClientSession) -> None:
    root = server.base_url.removesuffix("/v1")
    assert await (await session.get(f"{root}/plain")).json() == {"ok": True}
    assert (await session.get(f"{root}/status/503")).status == 503
    assert (await session.get(f"{root}/status/204")).status == 204
    resp = await session.get(f"{root}/redirect/3")
    assert len(resp.history) == 3 and await resp.json() == {"ok": True}
    resp = await session.get(f"{root}/stream", params={"chunks": 4, "delay": 0.01})
    assert await resp.text() == "line 0\nline 1\nline 2\nline 3\n"
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    start = time.monotonic()
    assert (await session.get(f"{root}/slow", params={"delay": 0.1})).status == 200
    assert time.monotonic() - start >= 0.1
    resp = await session.get(f"{root}/big", params={"size": 200_000})
    assert len(await resp.read()) == 200_000 and resp.content_length == 200_000
    echo = await (await session.get(f"{root}/echo-headers", headers={"X-Probe": "1"})).json()
    assert echo["x-probe"] == "1"


async def test_requests_are_recorded(server: Any, session: aiohttp.ClientSession) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"traceparent": tp, "X-Request-Id": "req-1"}
    body = {"model": "m", "messages": USER}
    await (
        await session.post(f"{server.base_url}/chat/completions", json=body, headers=headers)
    ).read()
    await (await session.get(server.base_url.removesuffix("/v1") + "/plain")).read()
    chat, plain = server.requests
    assert chat["path"] == "/v1/chat/completions" and chat["method"] == "POST"
    assert chat["headers"]["traceparent"] == tp and chat["headers"]["x-request-id"] == "req-1"
    assert chat["json"] == body
    assert plain["method"] == "GET" and plain["json"] is None


def test_create_app_is_plain_application() -> None:
    from aiohttp import web

    assert isinstance(create_app(chunk_delay=0.5), web.Application)


def test_threaded_server() -> None:
    with run_in_thread() as srv:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        req = urllib.request.Request(
            f"{srv.base_url}/chat/completions",
            data=json.dumps({"model": "m", "messages": USER}).encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": "sync-1"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.load(resp)["choices"][0]["message"]["content"] == ANSWER
        assert srv.requests[0]["headers"]["x-request-id"] == "sync-1"
    assert not srv._thread.is_alive()
    srv.stop()  # idempotent


async def test_fixed_port_in_use_raises(server: Any) -> None:
    with pytest.raises(OSError):
        async with MockLLMServer(port=server.port):
            pass


async def test_openai_sdk(server: Any) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(
        base_url=server.base_url, api_key="x", http_client=openai.DefaultAioHttpClient()
    )
    async with client:
        chat = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert chat.choices[0].message.content == ANSWER and chat.usage is not None

        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
            if chunk.usage:
                usage = chunk.usage
        assert "".join(parts) == chat.choices[0].message.content
        assert usage is not None and usage.total_tokens == chat.usage.total_tokens

        emb = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
        assert [len(d.embedding) for d in emb.data] == [8, 8]
        assert emb.usage.prompt_tokens == 3
        assert server.requests[-1]["json"]["encoding_format"] == "base64"  # SDK default

        resp = await client.responses.create(model="gpt-4o-mini", input="Hello there")
        assert resp.output_text == "Mock answer to: Hello there"

        with pytest.raises(openai.RateLimitError):
            await client.with_options(max_retries=1).chat.completions.create(
                model="error-429", messages=USER
            )
    assert server.requests[0]["headers"]["authorization"] == "Bearer x"
    assert [r["json"]["model"] for r in server.requests[-2:]] == ["error-429", "error-429"]


async def test_the_mock_keeps_only_its_last_requests():
    from aiohttp_llm_tracing import mock_llm

    async with mock_llm.MockLLMServer() as srv, aiohttp.ClientSession() as s:
        for i in range(mock_llm._wire.KEEP_REQUESTS + 5):
            async with s.get(f"http://127.0.0.1:{srv.port}/plain?i={i}") as resp:
                await resp.read()
        assert len(srv.requests) == mock_llm._wire.KEEP_REQUESTS
        assert srv.requests[-1]["query"] == {"i": str(mock_llm._wire.KEEP_REQUESTS + 4)}
