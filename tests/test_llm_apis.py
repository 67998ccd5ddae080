"""Every API shape through plain aiohttp POSTs: legacy completions, Responses, Anthropic Messages.

Each call must come out as one generation with the right name, model, output, usage and, for
streams, time to first chunk.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from aiohttp_llm_tracing import EndReason

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER, attrs, jattr, sse_data  # noqa: E402

pytest_plugins = ["llm_fixtures"]


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


async def post(tracing, url: str, body: dict[str, Any]) -> bytes:
    async with tracing.session() as s, s.post(url, json=body) as resp:
        raw = b""
        async for chunk in resp.content.iter_any():
            raw += chunk
        return raw


def assert_stream_timing(span) -> None:
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    ttfc = a["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9 + 0.01
    first = datetime.fromisoformat(a["langfuse.observation.completion_start_time"])
    first_ns = int(first.timestamp() * 1e6) * 1000
    assert span.start_time - 1000 <= first_ns <= span.end_time


# -- legacy completions -------------------------------------------------------------------------


async def test_completions_json(llm_server, tracing):
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5, "n": 1}
    raw = await post(tracing, f"{llm_server.base_url}/completions", body)
    data = json.loads(raw)
    span = tracing.only()
    a = attrs(span)
    assert span.name == "text_completion gpt-3.5-turbo-instruct"
    assert span.kind == SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == body["model"]
    assert a["gen_ai.request.max_tokens"] == 5
    assert "gen_ai.request.choice.count" not in a  # n=1 is the default, not recorded
    assert a["gen_ai.response.id"] == "cmpl-mock-1"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    # Strings are recorded as they are (as the Langfuse SDK does); structures as JSON.
    assert a["langfuse.observation.input"] == "Say hi"
    assert a["langfuse.observation.output"] == data["choices"][0]["text"]
    assert a["gen_ai.usage.input_tokens"] == data["usage"]["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == data["usage"]["completion_tokens"]


async def test_completions_stream(llm_server, tracing):
    body = {
        "model": "davinci",
        "prompt": "Say hi",
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"mock_chunks": 4},
    }
    raw = await post(tracing, f"{llm_server.base_url}/completions", body)
    chunks = [c for c in sse_data(raw) if c != "[DONE]"]
    text = "".join(ch["text"] for c in chunks for ch in c["choices"])
    span = tracing.only()
    a = attrs(span)
    assert span.name == "text_completion davinci"
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["langfuse.observation.output"] == text == "Mock answer to: Say hi"
    assert a["gen_ai.usage.output_tokens"] == chunks[-1]["usage"]["completion_tokens"]
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert_stream_timing(span)


# -- the Responses API --------------------------------------------------------------------------


async def test_responses_json(llm_server, tracing):
    body = {
        "model": "gpt-4.1",
        "input": "Say hi",
        "instructions": "Be nice.",
        "max_output_tokens": 20,
        "temperature": 0.3,
        "reasoning": {"effort": "low"},
    }
    raw = await post(tracing, f"{llm_server.base_url}/responses", body)
    data = json.loads(raw)
    span = tracing.only()
    a = attrs(span)
    assert span.name == "chat gpt-4.1"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4.1"
    assert a["gen_ai.request.max_tokens"] == 20
    assert a["gen_ai.request.temperature"] == 0.3
    assert jattr(span, "langfuse.observation.model.parameters") == {
        "max_output_tokens": 20,
        "temperature": 0.3,
        "reasoning_effort": "low",
    }
    assert jattr(span, "langfuse.observation.input") == {
        "instructions": "Be nice.",
        "input": "Say hi",
    }
    assert jattr(span, "gen_ai.system_instructions") == [{"type": "text", "content": "Be nice."}]
    assert a["gen_ai.response.id"] == "resp_mock_1"
    answer = data["output"][0]["content"][0]["text"]
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": answer}
    assert a["gen_ai.usage.input_tokens"] == data["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == data["usage"]["output_tokens"]
    assert (
        jattr(span, "langfuse.observation.usage_details")["total"]
        == (data["usage"]["total_tokens"])
    )


async def test_responses_stream(llm_server, tracing):
    body = {"model": "gpt-4.1", "input": USER, "stream": True, "metadata": {"mock_chunks": 5}}
    raw = await post(tracing, f"{llm_server.base_url}/responses", body)
    events = sse_data(raw)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    final = events[-1]["response"]
    span = tracing.only()
    a = attrs(span)
    assert span.name == "chat gpt-4.1"
    assert len(deltas) == 5
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": "".join(deltas),
    }
    assert jattr(span, "langfuse.observation.input") == USER
    assert a["gen_ai.response.id"] == "resp_mock_1"
    assert a["gen_ai.usage.input_tokens"] == final["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == final["usage"]["output_tokens"]
    assert_stream_timing(span)


# -- Anthropic Messages ------------------------------------------------------------------------


async def test_anthropic_json(llm_server, tracing):
    body = {
        "model": "claude-sonnet-4",
        "system": "Be nice.",
        "messages": USER,
        "max_tokens": 100,
        "top_k": 5,
        "stop_sequences": ["\n\nHuman:"],
    }
    raw = await post(tracing, f"{llm_server.base_url}/messages", body)
    data = json.loads(raw)
    span = tracing.only()
    a = attrs(span)
    assert span.name == "chat claude-sonnet-4"
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.max_tokens"] == 100
    assert a["gen_ai.request.top_k"] == 5
    assert a["gen_ai.request.stop_sequences"] == ("\n\nHuman:",)
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert a["gen_ai.response.id"] == "msg_mock_1"
    assert jattr(span, "langfuse.observation.input") == {"system": "Be nice.", "messages": USER}
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": data["content"],
    }
    assert a["gen_ai.usage.input_tokens"] == data["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == data["usage"]["output_tokens"]


async def test_anthropic_stream(llm_server, tracing):
    body = {
        "model": "claude-sonnet-4",
        "messages": USER,
        "max_tokens": 100,
        "stream": True,
        "metadata": {"mock_chunks": 3},
    }
    raw = await post(tracing, f"{llm_server.base_url}/messages", body)
    events = sse_data(raw)
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    output_tokens = next(e for e in events if e["type"] == "message_delta")["usage"]
    span = tracing.only()
    a = attrs(span)
    assert span.name == "chat claude-sonnet-4"
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
    }
    assert a["gen_ai.usage.output_tokens"] == output_tokens["output_tokens"]
    assert a["gen_ai.usage.input_tokens"] == events[0]["message"]["usage"]["input_tokens"]
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert_stream_timing(span)


async def test_a_custom_adapter_need_not_be_hashable(llm_server, tracing):
    from dataclasses import dataclass

    from aiohttp_llm_tracing.adapters.openai_chat import OpenAIChat

    @dataclass  # eq=True and no frozen: instances are unhashable
    class MyChat:
        inner: OpenAIChat
        operation: str = "chat"
        observation_type: str = "generation"
        provider: str = "my-llm"
        path_suffixes: tuple[str, ...] = ("/chat/completions",)

        def matches(self, path):
            return self.inner.matches(path)

        def parse_request(self, body, path):
            return self.inner.parse_request(body, path)

        def parse_response(self, body):
            return self.inner.parse_response(body)

        def parse_stream(self, events):
            return self.inner.parse_stream(events)

    config = tracing.config(adapters=[MyChat(OpenAIChat())])
    async with tracing.session(config=config) as s:
        body = {"model": "gpt-4o-mini", "messages": USER}
        async with s.post(f"{llm_server.base_url}/chat/completions", json=body) as resp:
            await resp.read()
    span = tracing.only()
    assert span.name == "chat gpt-4o-mini"
    assert attrs(span)["gen_ai.provider.name"] == "my-llm"


@pytest.mark.parametrize("code", [307, 308, 303])
async def test_a_redirected_chat_call_is_parsed_from_one_copy_of_its_body(
    llm_server, tracing, code
):
    # 307/308 send the body again and 303 turns the call into a GET without one: either way the
    # request is parsed from a single copy of the body the caller sent.
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    target = f"{llm_server.base_url}/chat/completions"

    async def moved(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=code, headers={"Location": target})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", moved)
    old = TestServer(app, host="127.0.0.1")
    await old.start_server()
    try:
        body = {"model": "gpt-4o-mini", "temperature": 0.3, "messages": USER}
        async with tracing.session() as s:
            async with s.post(old.make_url("/v1/chat/completions"), json=body) as resp:
                await resp.read()
    finally:
        await old.close()
    span = tracing.only()
    a = attrs(span)
    assert "request" not in a.get("llm_tracing.parse_error", "")
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.3
    assert jattr(span, "langfuse.observation.input") == USER
    assert [e.name for e in span.events] == ["http.redirect"]
