"""The pytest plugin: ``llm_tracing`` and the aioresponses support.

aioresponses replaces ``ClientSession._request``, so without help a mocked request fires no
trace signal and yields no span. These tests check that through ``llm_tracing_aioresponses`` a
mocked request produces the span a real one would, on every end path.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from aiohttp_llm_tracing import trace_attributes
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture, traced_aioresponses

BASE = "https://api.openai.com/v1"
CHAT_URL = f"{BASE}/chat/completions"
CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}
CHAT_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


def _sse(*events: Any) -> bytes:
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


STREAM_BODY = _sse(
    {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
    {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "lo"}}]},
    {
        "id": "c1",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    },
    {
        "id": "c1",
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    },
    "[DONE]",
)


def _only(llm_tracing: TracingFixture) -> Any:
    spans = llm_tracing.spans()
    assert len(spans) == 1, [s.name for s in spans]
    stats = llm_tracing.registry.stats()
    assert stats.in_flight == 0
    assert stats.started == stats.ended_total == 1 and stats.internal_errors == 0
    return spans[0]


def _session(llm_tracing: TracingFixture, **kwargs: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config], **kwargs)


async def test_plain_aioresponses_yields_no_span(llm_tracing: TracingFixture) -> None:
    # The problem being solved: aioresponses bypasses every trace signal.
    with aioresponses() as mocked:
        mocked.post(CHAT_URL, payload=CHAT_COMPLETION)
        async with _session(llm_tracing) as s, s.post(CHAT_URL, json=CHAT_REQUEST) as r:
            await r.json()
    assert llm_tracing.spans() == []


async def test_mocked_chat_becomes_a_generation_span(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    async with _session(llm_tracing) as s:
        with trace_attributes(session_id="s-1", user_id="u-1"):
            async with s.post(CHAT_URL, json=CHAT_REQUEST) as r:
                assert (await r.json())["choices"][0]["message"]["content"] == "Hello!"
    span = _only(llm_tracing)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == trace.SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.usage.input_tokens"] == 9
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert json.loads(attrs["langfuse.observation.usage_details"])["total"] == 12
    assert "Hello!" in attrs["langfuse.observation.output"]
    assert "Hi there" in attrs["langfuse.observation.input"]
    assert attrs["http.response.status_code"] == 200
    assert attrs["llm_tracing.end_reason"] == "body_complete"
    assert attrs["session.id"] == "s-1"
    assert attrs["user.id"] == "u-1"
    assert span.status.status_code == StatusCode.UNSET


async def test_mocked_stream_records_usage_and_first_chunk(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post(CHAT_URL, body=STREAM_BODY, content_type="text/event-stream")
    request = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    async with _session(llm_tracing) as s, s.post(CHAT_URL, json=request) as r:
        async for _ in r.content:
            pass
    attrs = _only(llm_tracing).attributes
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.usage.input_tokens"] == 4
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.time_to_first_chunk"] >= 0
    assert attrs["llm_tracing.end_reason"] == "body_complete"


async def test_plain_get_ends_with_the_response(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.get("https://example.com/search?q=x", payload={"hits": []})
    async with _session(llm_tracing) as s:
        async with s.get("https://example.com/search", params={"q": "x"}) as r:
            await r.json()
    span = _only(llm_tracing)
    assert span.name == "GET"
    assert span.attributes["url.full"] == "https://example.com/search?q=x"
    assert span.attributes["llm_tracing.end_reason"] == "response"


async def test_base_url_and_trace_request_ctx(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    async with _session(llm_tracing, base_url="https://api.openai.com") as s:
        ctx = {"session_id": "from-request"}
        async with s.post("/v1/chat/completions", json=CHAT_REQUEST, trace_request_ctx=ctx) as r:
            await r.read()
    span = _only(llm_tracing)
    assert span.attributes["url.full"] == CHAT_URL
    assert span.attributes["session.id"] == "from-request"
    assert span.name == "chat gpt-4o-mini"


async def test_error_status_is_an_error_span(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    error = {"error": {"message": "Mock server error", "type": "server_error"}}
    llm_tracing_aioresponses.post(CHAT_URL, status=500, payload=error)
    async with _session(llm_tracing) as s, s.post(CHAT_URL, json=CHAT_REQUEST) as r:
        await r.read()
    span = _only(llm_tracing)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "500"
    assert span.attributes["langfuse.observation.status_message"] == "Mock server error"


async def test_raise_for_status_ends_as_exception(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post(CHAT_URL, status=429, payload={"error": {"message": "slow"}})
    async with _session(llm_tracing, raise_for_status=True) as s:
        with pytest.raises(aiohttp.ClientResponseError):
            await s.post(CHAT_URL, json=CHAT_REQUEST)
    span = _only(llm_tracing)
    assert span.attributes["llm_tracing.end_reason"] == "exception"
    assert span.attributes["error.type"] == "429"
    assert span.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("unmatched", [False, True])
async def test_connection_errors_end_as_exception(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any, unmatched: bool
) -> None:
    if not unmatched:
        llm_tracing_aioresponses.post(CHAT_URL, exception=aiohttp.ClientConnectionError("down"))
    async with _session(llm_tracing) as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            await s.post(CHAT_URL, json=CHAT_REQUEST)
    span = _only(llm_tracing)
    assert span.attributes["llm_tracing.end_reason"] == "exception"
    assert span.attributes["error.type"] == "ClientConnectionError"


async def test_response_released_unread_ends_as_released(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    async with _session(llm_tracing) as s, s.post(CHAT_URL, json=CHAT_REQUEST) as r:
        assert r.status == 200
    assert _only(llm_tracing).attributes["llm_tracing.end_reason"] == "released"


async def test_cancelled_mocked_call_is_not_an_error(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    reached, never = asyncio.Event(), asyncio.Event()

    async def hang(url: Any, **kwargs: Any) -> CallbackResult:
        reached.set()
        await never.wait()
        raise AssertionError("unreachable")

    llm_tracing_aioresponses.post(CHAT_URL, callback=hang)
    async with _session(llm_tracing) as s:
        task = asyncio.ensure_future(s.post(CHAT_URL, json=CHAT_REQUEST))
        await reached.wait()
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled()
    span = _only(llm_tracing)
    assert span.attributes["llm_tracing.end_reason"] == "cancelled"
    assert span.status.status_code == StatusCode.UNSET


async def test_redirects_are_span_events(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.get(
        "https://example.com/old", status=302, headers={"Location": "https://example.com/new"}
    )
    llm_tracing_aioresponses.get("https://example.com/new", payload={"ok": True})
    async with _session(llm_tracing) as s, s.get("https://example.com/old") as r:
        await r.json()
    span = _only(llm_tracing)
    assert [e.name for e in span.events] == ["http.redirect"]
    assert span.events[0].attributes["http.response.status_code"] == 302


async def test_recorded_calls_are_unchanged_and_headers_are_propagated(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    seen: dict[str, Any] = {}
    tracer = llm_tracing.provider.get_tracer("test")

    async def capture_start(
        session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.update(params.headers)

    probe = aiohttp.TraceConfig()
    probe.on_request_start.append(capture_start)
    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config, probe]) as s:
        with tracer.start_as_current_span("agent"):
            async with s.post(CHAT_URL, json=CHAT_REQUEST) as r:
                await r.read()
    # Existing assertions on the mock keep working: tracing headers are not recorded.
    llm_tracing_aioresponses.assert_called_once_with(CHAT_URL, method="POST", json=CHAT_REQUEST)
    # The chat span's end is done on the loop's next turn, so either may be exported first.
    agent, chat = sorted(llm_tracing.spans(), key=lambda s: s.name != "agent")
    assert chat.parent is not None and chat.parent.span_id == agent.context.span_id
    # ...but every trace config saw them, as on a real request.
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", seen["traceparent"])
    assert seen["X-Request-ID"] == chat.attributes["llm_tracing.request_id"]


async def test_passthrough_is_traced_once(llm_tracing: TracingFixture) -> None:
    async with MockLLMServer() as server:
        with traced_aioresponses(passthrough=[f"http://127.0.0.1:{server.port}"]):
            async with _session(llm_tracing) as s:
                async with s.post(f"{server.base_url}/chat/completions", json=CHAT_REQUEST) as r:
                    await r.json()
    span = _only(llm_tracing)
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes["gen_ai.usage.output_tokens"] > 0


async def test_form_and_bytes_bodies(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    llm_tracing_aioresponses.post("https://example.com/form", payload={})
    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    async with _session(llm_tracing) as s:
        async with s.post("https://example.com/form", data={"a": "1"}) as r:
            await r.read()
        async with s.post(CHAT_URL, data=json.dumps(CHAT_REQUEST).encode()) as r:
            await r.read()
    form, chat = llm_tracing.spans()
    assert form.name == "POST"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"


async def test_openai_sdk_over_aiohttp_with_aioresponses(
    llm_tracing: TracingFixture, llm_tracing_aioresponses: Any
) -> None:
    from aiohttp_llm_tracing._demo import openai_client

    llm_tracing_aioresponses.post(CHAT_URL, payload=CHAT_COMPLETION)
    client = openai_client(BASE, llm_tracing.trace_config, api_key="sk-test")
    try:
        completion = await client.chat.completions.create(**CHAT_REQUEST)
    finally:
        await client.close()
    assert completion.choices[0].message.content == "Hello!"
    span = _only(llm_tracing)
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes["gen_ai.usage.input_tokens"] == 9


def test_unread_response_ends_when_the_mock_stops() -> None:
    fixture = TracingFixture()
    with traced_aioresponses() as mocked:
        mocked.post(CHAT_URL, payload=CHAT_COMPLETION)

        async def leave_open() -> aiohttp.ClientResponse:
            # A body neither read nor released: still in flight when the mock stops.
            async with aiohttp.ClientSession(trace_configs=[fixture.trace_config]) as s:
                return await s.post(CHAT_URL, json=CHAT_REQUEST)

        asyncio.run(leave_open())
        assert fixture.registry.stats().in_flight == 1
    # Stopping the mock closes its responses, which ends the span as a real close() would.
    (span,) = fixture.spans()
    assert span.attributes["llm_tracing.end_reason"] == "released"
    fixture.close()
    assert fixture.registry.stats().in_flight == 0


async def test_process_fixture_sees_the_app_s_own_configs_and_sdk_sessions(
    llm_tracing_process: TracingFixture,
) -> None:
    # An app that builds its own trace config (the global provider, its own registry) and an
    # SDK that builds its own session: one fixture sees both.
    from openai import AsyncOpenAI, DefaultAioHttpClient

    from aiohttp_llm_tracing import create_trace_config

    own = create_trace_config(sweep_interval=None)
    async with MockLLMServer() as server:
        async with aiohttp.ClientSession(trace_configs=[own]) as s:
            async with s.get(f"http://127.0.0.1:{server.port}/plain") as resp:
                await resp.read()
        async with AsyncOpenAI(
            base_url=server.base_url, api_key="k", http_client=DefaultAioHttpClient()
        ) as client:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
    names = sorted(span.name for span in llm_tracing_process.spans())
    assert names == ["GET", "chat gpt-4o-mini"]
    assert own.registry.stats().ended_total == 1
    assert llm_tracing_process.registry.stats().ended_total == 1
