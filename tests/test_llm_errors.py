"""Failed generations: HTTP error bodies, and error events inside a stream that began with 200."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.trace import StatusCode

from aiohttp_llm_tracing import EndReason

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER, attrs, jattr, openai_client  # noqa: E402

pytest_plugins = ["llm_fixtures"]


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


ERROR_MESSAGES = {400: "Mock bad request", 429: "Mock rate limit reached", 500: "Mock server error"}


async def post(tracing, url: str, body: dict) -> bytes:
    async with tracing.session() as s, s.post(url, json=body) as resp:
        return await resp.read()


@pytest.mark.parametrize("status", [400, 429, 500])
@pytest.mark.parametrize(
    "path", ["/chat/completions", "/completions", "/embeddings", "/responses", "/messages"]
)
async def test_error_bodies(llm_server, tracing, status, path):
    body = {"model": f"error-{status}", "messages": USER, "input": "x", "prompt": "x"}
    raw = await post(tracing, llm_server.base_url + path, body)
    assert json.loads(raw)["error"]["message"] == ERROR_MESSAGES[status]
    span = tracing.only()
    a = attrs(span)
    assert span.status.status_code == StatusCode.ERROR
    assert a["error.type"] == str(status)
    assert a["http.response.status_code"] == status
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == ERROR_MESSAGES[status]
    assert jattr(span, "langfuse.observation.output") == json.loads(raw)
    assert span.name.endswith(f" error-{status}")
    assert a["gen_ai.request.model"] == f"error-{status}"
    # A failed call has no answer: no made-up output messages, usage or finish reasons.
    assert "gen_ai.output.messages" not in a
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a


async def test_streamed_request_answered_with_an_error_body(llm_server, tracing):
    body = {"model": "error-500", "messages": USER, "stream": True}
    await post(tracing, f"{llm_server.base_url}/chat/completions", body)
    a = attrs(tracing.only())
    assert a["gen_ai.request.stream"] is True
    assert a["langfuse.observation.status_message"] == ERROR_MESSAGES[500]
    assert "gen_ai.response.time_to_first_chunk" not in a


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_errors_through_the_sdk(llm_server, tracing, status, error):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        with pytest.raises(error):
            await client.chat.completions.create(model=f"error-{status}", messages=USER)
    span = tracing.only()
    a = attrs(span)
    assert span.status.status_code == StatusCode.ERROR
    assert a["error.type"] == str(status)
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == ERROR_MESSAGES[status]


# -- errors inside a stream: the status is 200, the body says the call failed -----------------

CHAT_CHUNK = {
    "id": "chatcmpl-9",
    "model": "gpt-4o",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
}
STREAMS = {
    "/v1/chat/completions": [
        f"data: {json.dumps(CHAT_CHUNK)}\n\n",
        'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n',
    ],
    "/v1/messages": [
        "event: message_start\n"
        'data: {"type": "message_start", "message": {"id": "msg_9", "model": "claude-x",'
        ' "usage": {"input_tokens": 3, "output_tokens": 1}}}\n\n',
        "event: error\n"
        'data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
        "\n\n",
    ],
    "/v1/responses": [
        "event: response.created\n"
        'data: {"type": "response.created", "response": {"id": "resp_9", "model": "gpt-4.1",'
        ' "status": "in_progress", "output": []}}\n\n',
        "event: response.failed\n"
        'data: {"type": "response.failed", "response": {"id": "resp_9", "model": "gpt-4.1",'
        ' "status": "failed", "error": {"code": "server_error", "message": "Boom"}}}\n\n',
    ],
    "/v1/x/responses": [
        "event: response.created\n"
        'data: {"type": "response.created", "response": {"id": "resp_8", "model": "gpt-4.1"}}\n\n',
        "event: error\n"
        'data: {"type": "error", "code": "ERR_RATE", "message": "Slow down", "param": null}\n\n',
    ],
}
EXPECTED = {
    "/v1/chat/completions": ("server_error", "The server had an error", "chat gpt-4o"),
    "/v1/messages": ("overloaded_error", "Overloaded", "chat claude-x"),
    "/v1/responses": ("server_error", "Boom", "chat gpt-4.1"),
    "/v1/x/responses": ("ERR_RATE", "Slow down", "chat gpt-4.1"),
}


@pytest.fixture
async def stream_server() -> AsyncIterator[TestServer]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in STREAMS[request.path]:
            await resp.write(event.encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    for path in STREAMS:
        app.router.add_post(path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.mark.parametrize("path", list(STREAMS))
async def test_error_event_inside_a_stream(stream_server, tracing, path):
    async with tracing.session() as s:
        async with s.post(stream_server.make_url(path), json={"stream": True}) as resp:
            assert resp.status == 200
            raw = b"".join([line async for line in resp.content])
    assert raw == "".join(STREAMS[path]).encode()
    error_type, message, name = EXPECTED[path]
    span = tracing.only()
    a = attrs(span)
    assert span.name == name
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == message
    assert a["http.response.status_code"] == 200
    assert a["error.type"] == error_type
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == message
    assert "error" in jattr(span, "langfuse.observation.output")


async def test_plain_text_error_page(tracing):
    # Over an aiohttp server's default 1 MiB request limit: it answers 413 in plain text.
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app)
    await server.start_server()
    body = {"messages": [{"role": "user", "content": "x" * (1 << 20)}], "model": "gpt-4o"}
    try:
        raw = await post(tracing, str(server.make_url("/v1/chat/completions")), body)
    finally:
        await server.close()
    span = tracing.only()
    a = attrs(span)
    assert span.status.status_code == StatusCode.ERROR
    assert a["error.type"] == "413"
    assert a["langfuse.observation.status_message"] == raw.decode()
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert a["llm_tracing.body_truncated"] == "request"
    assert span.name == "chat gpt-4o"  # found past the cap, at the end of the request body


async def test_sdk_retries_are_one_span_per_attempt(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        with pytest.raises(openai.RateLimitError):
            await client.with_options(max_retries=2).chat.completions.create(
                model="error-429", messages=USER
            )
    spans = tracing.spans()
    assert len(spans) == 3 == len(llm_server.requests)
    assert len({s.attributes["llm_tracing.request_id"] for s in spans}) == 3
    for span in spans:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == "429"
    tracing.assert_settled()
