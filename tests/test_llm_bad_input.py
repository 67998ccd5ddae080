"""Bodies that do not parse, are cut off, are binary, are huge or have an unknown shape.

Whatever comes back, the caller gets exactly the server's bytes, the span ends exactly once, the
registry lets go of it, memory stays bounded, and a marker attribute says what went wrong.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
import tracemalloc
from typing import Any

import aiohttp
import pytest

from aiohttp_llm_tracing import EndReason

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER, attrs, fetch_untraced, jattr, sse_data  # noqa: E402

pytest_plugins = ["llm_fixtures"]

MiB = 1 << 20


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


async def traced_bytes(tracing, url: str, body: Any, **config: Any) -> bytes:
    async with tracing.session(config=tracing.config(**config)) as s:
        async with s.post(url, json=body) as resp:
            return b"".join([chunk async for chunk in resp.content.iter_chunked(4096)])


def assert_one_clean_end(tracing, reason: str = EndReason.BODY_COMPLETE):
    span = tracing.only()  # exactly one span, registry empty, no internal error
    assert attrs(span)["llm_tracing.end_reason"] == reason
    return span


async def test_invalid_json(llm_server, tracing):
    url = f"{llm_server.base_url}/chat/completions"
    body = {"model": "invalid-json", "messages": USER}
    raw = await traced_bytes(tracing, url, body)
    assert raw == await fetch_untraced(url, body) == b'{"id": "x", "choices": ['
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert span.name == "chat invalid-json"
    assert "langfuse.observation.output" not in a
    assert jattr(span, "langfuse.observation.input") == USER  # the request side is intact


async def test_binary_body(llm_server, tracing):
    url = f"{llm_server.base_url}/chat/completions"
    body = {"model": "binary", "messages": USER}
    raw = await traced_bytes(tracing, url, body)
    assert raw == await fetch_untraced(url, body) == bytes(range(256)) * 16
    span = assert_one_clean_end(tracing)
    assert attrs(span)["llm_tracing.parse_error"] == "response: not JSON"
    assert "langfuse.observation.output" not in attrs(span)


async def test_unknown_shape(llm_server, tracing):
    url = f"{llm_server.base_url}/chat/completions"
    body = {"model": "unknown-shape", "messages": USER}
    raw = await traced_bytes(tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    assert json.loads(raw) == {"hello": "world"}
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert "langfuse.observation.output" not in a
    assert "gen_ai.output.messages" not in a
    assert a["langfuse.observation.model.name"] == "unknown-shape"  # from the request


@pytest.mark.parametrize("path", ["/embeddings", "/messages", "/responses", "/completions"])
async def test_unknown_shape_every_api(llm_server, tracing, path):
    body = {"model": "unknown-shape", "messages": USER, "input": "x", "prompt": "x"}
    await traced_bytes(tracing, llm_server.base_url + path, body)
    a = attrs(assert_one_clean_end(tracing))
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert "langfuse.observation.output" not in a


async def test_truncated_sse(llm_server, tracing):
    url = f"{llm_server.base_url}/chat/completions"
    body = {"model": "truncated-sse", "messages": USER, "stream": True}
    raw = await traced_bytes(tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    assert not raw.endswith(b"\n\n")
    whole = sse_data(raw.rsplit(b"\n\n", 1)[0] + b"\n\n")
    seen = "".join(c["choices"][0]["delta"].get("content") or "" for c in whole)
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": seen}
    assert a["gen_ai.response.id"] == "chatcmpl-mock-1"
    assert "gen_ai.response.finish_reasons" not in a
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_non_json_request_body(llm_server, tracing):
    async with tracing.session() as s:
        async with s.post(
            f"{llm_server.base_url}/chat/completions", data=b"\xff\xfe not json"
        ) as r:
            await r.read()
    a = attrs(assert_one_clean_end(tracing))
    # The mock answers a body it cannot read as a chat with model "mock".
    assert a["llm_tracing.parse_error"] == "request: not JSON"
    assert "gen_ai.request.model" not in a
    assert a["gen_ai.response.model"] == "mock"


async def test_request_body_over_the_cap_still_names_the_model(llm_server, tracing):
    # An inlined image makes the request body bigger than the cap; the SDK puts "model" last.
    # (The cap is lowered to 64 KiB here: the mock server refuses bodies over 1 MiB.)
    image = "data:image/png;base64," + "A" * (256 << 10)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}]
    body = {"messages": messages, "model": "gpt-4o", "temperature": 0.2}
    url = f"{llm_server.base_url}/chat/completions"
    await traced_bytes(tracing, url, body, max_body_bytes=64 << 10)
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert span.name == "chat gpt-4o"
    assert a["llm_tracing.body_truncated"] == "request"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert a["gen_ai.request.temperature"] == 0.2
    assert "langfuse.observation.input" not in a  # a cut JSON document is not recorded
    assert "llm_tracing.parse_error" not in a
    assert jattr(span, "langfuse.observation.output")["role"] == "assistant"


async def test_50_mb_body_costs_the_cap_not_the_body(llm_server, tracing):
    size = 50 * MiB
    url = f"{llm_server.base_url}/chat/completions"
    body = {"model": "huge", "messages": USER, "metadata": {"mock_size": size}}

    async def digest(session: aiohttp.ClientSession) -> tuple[str, int]:
        sha, n = hashlib.sha256(), 0
        async with session.post(url, json=body) as resp:
            async for chunk in resp.content.iter_chunked(64 << 10):
                sha.update(chunk)
                n += len(chunk)
        return sha.hexdigest(), n

    async with aiohttp.ClientSession() as plain:
        expected = await digest(plain)
    async with tracing.session() as s:
        gc.collect()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            got = await digest(s)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got == expected and got[1] == size
    # The capture keeps 1 MiB of head and a 64 KiB (at most 128 KiB) tail; parsing at the end
    # adds a little. Nothing near the 50 MB that went through.
    assert peak - base < 8 * MiB
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert a["llm_tracing.body_truncated"] == "response"
    assert "llm_tracing.parse_error" not in a
    # The usage object closes the body: the tail window still has it.
    assert a["gen_ai.usage.input_tokens"] == 1
    assert a["gen_ai.usage.output_tokens"] == size // 4
    assert a["gen_ai.response.id"] == "huge"
    assert "langfuse.observation.output" not in a


async def test_long_stream_past_the_cap_recovers_usage_from_the_tail(llm_server, tracing):
    url = f"{llm_server.base_url}/chat/completions"
    body = {
        "model": "gpt-4o-mini",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"mock_chunks": 3000},
    }
    raw = await traced_bytes(tracing, url, body, max_body_bytes=64 << 10)
    assert len(raw) > (64 << 10) + 2 * (64 << 10)  # past the head and the whole tail window
    assert raw == await fetch_untraced(url, body)
    events = sse_data(raw)
    usage = events[-2]["usage"]
    span = assert_one_clean_end(tracing)
    a = attrs(span)
    assert a["llm_tracing.body_truncated"] == "response"
    assert "llm_tracing.parse_error" not in a
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    # The middle is gone: the output is the answer's start (head) and its end (tail window).
    chunks = [e for e in events if e != "[DONE]" and e["choices"]]
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    content = jattr(span, "langfuse.observation.output")["content"]
    assert 0 < len(content) < len(answer)
    cut = next(i for i in range(len(content) + 1) if not answer.startswith(content[: i + 1]))
    assert cut > 0 and answer.endswith(content[cut:]) and content[cut:]


async def test_truncated_stream_compressed_raw_gives_head_only(llm_server, tracing):
    body = {
        "model": "gzip",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"mock_chunks": 2000},
    }
    async with tracing.session(config=tracing.config(max_body_bytes=16 << 10)) as s:
        async with s.post(
            f"{llm_server.base_url}/chat/completions", json=body, auto_decompress=False
        ) as resp:
            await resp.read()
    a = attrs(assert_one_clean_end(tracing))
    assert a["llm_tracing.body_truncated"] == "response"
    # Compressed bytes past the cap cannot be decoded, so no false "cut off" claim is made.
    assert "llm_tracing.parse_error" not in a
    assert a["gen_ai.response.id"] == "chatcmpl-mock-1"
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_event_stream_with_the_wrong_content_type(tracing):
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    chunk = {"id": "c1", "model": "m1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        raw = await traced_bytes(tracing, str(server.make_url("/v1/chat/completions")), {})
    finally:
        await server.close()
    assert raw == body
    span = assert_one_clean_end(tracing)
    assert span.name == "chat m1"
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": "Hi"}
    assert "llm_tracing.parse_error" not in attrs(span)


async def test_a_large_call_is_finished_off_the_loop_with_its_own_end_time(llm_server, tracing):
    # 600 KB of answer: past the finisher's threshold, so the parse runs on its thread.
    body = {
        "model": "huge",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"mock_size": 600_000},
    }
    async with tracing.session() as s:
        async with s.post(f"{llm_server.base_url}/chat/completions", json=body) as resp:
            raw = await resp.read()
        read_done = time.time_ns()
    assert len(raw) == 600_000
    span = tracing.only()  # waits for the finisher
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == "body_complete"
    assert a["gen_ai.usage.output_tokens"] == 150_000
    assert len(a["langfuse.observation.output"]) < 40_000  # cut at max_attribute_length
    assert span.end_time <= read_done  # the end is when the body ended, not when it was parsed
