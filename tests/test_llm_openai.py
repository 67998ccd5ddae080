"""OpenAI chat and embeddings through plain aiohttp and the real openai SDK: one complete span."""

from __future__ import annotations

from datetime import datetime

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from aiohttp_llm_tracing import EndReason

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import (  # noqa: E402
    ANSWER,
    API_KEY,
    TOOLS,
    USER,
    assert_secret_absent,
    attrs,
    jattr,
    openai_client,
)

pytest_plugins = ["llm_fixtures"]


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


MESSAGES = [{"role": "system", "content": "Be brief."}, *USER]
PARAMS = {
    "temperature": 0.25,
    "max_tokens": 64,
    "top_p": 0.9,
    "frequency_penalty": 0.1,
    "presence_penalty": -0.5,
    "stop": ["END", "STOP"],
    "seed": 42,
    "n": 2,
}


async def _chat_plain(llm_server, tracing) -> dict:
    async with tracing.session() as s:
        async with s.post(
            f"{llm_server.base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, **PARAMS},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            return await resp.json()


async def _chat_sdk(llm_server, tracing) -> dict:
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, **PARAMS
        )
        return completion.model_dump()


@pytest.mark.parametrize("via", [_chat_plain, _chat_sdk], ids=["aiohttp", "openai-sdk"])
async def test_chat_json_is_one_complete_generation(llm_server, tracing, via):
    body = await via(llm_server, tracing)
    assert body["choices"][0]["message"]["content"] == ANSWER

    span = tracing.only()
    a = attrs(span)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    assert span.status.status_code == StatusCode.UNSET
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["http.request.method"] == "POST"
    assert a["http.response.status_code"] == 200
    assert a["url.full"] == f"{llm_server.base_url}/chat/completions"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.25
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.frequency_penalty"] == 0.1
    assert a["gen_ai.request.presence_penalty"] == -0.5
    assert a["gen_ai.request.stop_sequences"] == ("END", "STOP")
    assert a["gen_ai.request.seed"] == 42
    assert a["gen_ai.request.choice.count"] == 2
    assert "gen_ai.request.stream" not in a
    assert a["gen_ai.response.id"] == "chatcmpl-mock-1"
    assert a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    usage = body["usage"]
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]

    assert a["langfuse.observation.type"] == "generation"
    assert a["langfuse.observation.model.name"] == "gpt-4o-mini"
    assert jattr(span, "langfuse.observation.model.parameters") == PARAMS
    assert jattr(span, "langfuse.observation.input") == MESSAGES
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": ANSWER}
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": usage["prompt_tokens"],
        "output": usage["completion_tokens"],
        "total": usage["total_tokens"],
    }
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": USER[0]["content"]}]},
    ]
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "stop",
        }
    ]
    assert "llm_tracing.parse_error" not in a
    assert "llm_tracing.body_truncated" not in a
    assert_secret_absent(span)
    # The key did reach the server: it was only kept out of the span.
    assert llm_server.requests[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"


async def test_chat_json_tool_call_through_sdk(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o", messages=USER, tools=TOOLS
        )
    call = completion.choices[0].message.tool_calls[0]
    span = tracing.only()
    assert span.name == "chat gpt-4o"
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert jattr(span, "langfuse.observation.input") == {"messages": USER, "tools": TOOLS}
    assert jattr(span, "gen_ai.tool.definitions") == TOOLS
    output = jattr(span, "langfuse.observation.output")
    assert output["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "search", "arguments": call.function.arguments},
        }
    ]
    parts = jattr(span, "gen_ai.output.messages")[0]["parts"]
    assert parts == [
        {
            "type": "tool_call",
            "id": call.id,
            "name": "search",
            "arguments": {"query": USER[0]["content"][:40]},
        }
    ]


# -- streams through the SDK --------------------------------------------------------------------


async def test_sdk_stream_read_to_end(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            metadata={"mock_chunks": "6"},
        )
        deltas: list[str] = []
        final_usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                final_usage = chunk.usage
        # openai 3.x reads the body to EOF, so the read that hit EOF ends the span.
        assert len(tracing.spans()) == 1

    span = tracing.only()
    a = attrs(span)
    assert len(deltas) == 6
    assert span.name == "chat gpt-4o-mini"
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["gen_ai.request.stream"] is True
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": "".join(deltas),
    }
    assert a["gen_ai.usage.input_tokens"] == final_usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == final_usage.completion_tokens
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": final_usage.prompt_tokens,
        "output": final_usage.completion_tokens,
        "total": final_usage.total_tokens,
    }
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.id"] == "chatcmpl-mock-1"
    ttfc = a["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttfc < (span.end_time - span.start_time) / 1e9 + 0.01
    started = datetime.fromisoformat(a["langfuse.observation.completion_start_time"])
    assert started.utcoffset() is not None
    first_ns = int(started.timestamp() * 1e6) * 1000
    assert span.start_time - 1000 <= first_ns <= span.end_time
    assert_secret_absent(span)


async def test_sdk_stream_abandoned_with_break(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            metadata={"mock_chunks": "100", "mock_delay": "0.01"},
        )
        seen = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += chunk.choices[0].delta.content
                break
        assert tracing.spans() == []  # still reading: nothing has ended the span yet
        await stream.close()

    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == EndReason.RELEASED
    assert span.status.status_code == StatusCode.UNSET
    output = jattr(span, "langfuse.observation.output")["content"]
    # Partial: at least what the caller saw (the SDK may have buffered a little more), never all.
    assert output.startswith(seen) and len(seen) <= len(output) < len(ANSWER)
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_sdk_stream_tool_call_deltas_are_merged(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=USER,
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
            metadata={"mock_chunks": "5"},
        )
        fragments: list[str] = []
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    fragments.append(call.function.arguments or "")

    span = tracing.only()
    output = jattr(span, "langfuse.observation.output")
    assert output == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_mock_1",
                "type": "function",
                "function": {"name": "search", "arguments": "".join(fragments)},
            }
        ],
    }
    assert len([f for f in fragments if f]) == 5
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attrs(span)["gen_ai.response.time_to_first_chunk"] > 0


async def test_sdk_embedding_base64(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        result = await client.embeddings.create(
            model="text-embedding-3-small", input=["alpha beta", "gamma"]
        )
    assert len(result.data[0].embedding) == 8

    span = tracing.only()
    a = attrs(span)
    assert span.name == "embeddings text-embedding-3-small"
    assert span.kind == SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["langfuse.observation.type"] == "embedding"
    assert a["gen_ai.request.model"] == "text-embedding-3-small"
    assert a["gen_ai.request.encoding_formats"] == ("base64",)
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert a["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens == 3
    assert "gen_ai.usage.output_tokens" not in a
    assert jattr(span, "langfuse.observation.usage_details") == {"input": 3, "total": 3}
    assert jattr(span, "langfuse.observation.input") == ["alpha beta", "gamma"]
    assert jattr(span, "langfuse.observation.output") == {"count": 2, "dimensions": 8}
    assert_secret_absent(span)


async def test_embedding_float_list_through_aiohttp(llm_server, tracing):
    async with tracing.session() as s:
        async with s.post(
            f"{llm_server.base_url}/embeddings",
            json={"model": "emb", "input": "hello", "encoding_format": "float"},
        ) as resp:
            data = await resp.json()
    vector = data["data"][0]["embedding"]
    span = tracing.only()
    assert attrs(span)["gen_ai.embeddings.dimension.count"] == len(vector)
    assert attrs(span)["gen_ai.request.encoding_formats"] == ("float",)


async def test_sdk_calls_share_one_session_and_each_get_a_span(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        await client.embeddings.create(model="emb", input="x")
    names = [s.name for s in tracing.spans()]
    assert names == ["chat gpt-4o-mini"] * 3 + ["embeddings emb"]
    assert len({s.context.span_id for s in tracing.spans()}) == 4
    tracing.assert_settled()


async def test_release_without_reading_an_llm_body(llm_server, tracing):
    async with tracing.session() as s:
        resp = await s.post(
            f"{llm_server.base_url}/chat/completions", json={"model": "m", "messages": USER}
        )
        assert resp.status == 200
        resp.release()
    span = tracing.only()
    # Nothing was read, so there is no output, but the request side is all there.
    assert attrs(span)["llm_tracing.end_reason"] == EndReason.RELEASED
    assert attrs(span)["gen_ai.request.model"] == "m"
    assert span.name == "chat m"


async def test_plain_requests_stay_plain(llm_server, tracing):
    base = llm_server.base_url.removesuffix("/v1")
    async with tracing.session() as s:
        async with s.get(f"{base}/plain") as resp:
            await resp.read()
        # A GET to an LLM path is not an LLM call either.
        async with s.get(f"{llm_server.base_url}/chat/completions") as resp:
            await resp.read()
    spans = tracing.spans()
    assert [s.name for s in spans] == ["GET", "GET"]
    for span in spans:
        assert not any(k.startswith(("gen_ai.", "langfuse.")) for k in attrs(span))
    tracing.assert_settled()


async def test_llm_false_disables_the_llm_layer(llm_server, tracing):
    async with tracing.session(config=tracing.config(llm=False)) as s:
        async with s.post(
            f"{llm_server.base_url}/chat/completions", json={"model": "m", "messages": USER}
        ) as resp:
            await resp.read()
    span = tracing.only()
    assert span.name == "POST"
    assert "gen_ai.operation.name" not in attrs(span)
