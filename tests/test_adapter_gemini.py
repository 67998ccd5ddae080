"""The Gemini adapter, end to end: the real google-genai SDK (AI Studio and Vertex AI modes) and
litellm's ``gemini/`` provider through the instrumentor, raw aiohttp for the JSON-array stream
and for bodies that are cut off, not JSON, or JSON of the wrong types.

Every test checks model, input, output, usage and finish reason where the call has them, and
that each span ended exactly once with nothing left in the registry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from yarl import URL

from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import attrs, fetch_untraced, jattr  # noqa: E402

pytestmark = [
    # Both content vocabularies are checked here; the default writes only Langfuse's.
    pytest.mark.usefixtures("both_content_formats"),
    # litellm's import and response models trip pydantic's own deprecation warnings.
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


USER = "Explain distributed tracing for LLM calls in one line"
ANSWER = "Mock answer to: " + USER[:40]
PTOK = len(USER.split())  # the mock counts whitespace-separated words
CTOK = len(ANSWER.split())
CONTENTS = [{"role": "user", "parts": [{"text": USER}]}]
SEARCH = {
    "name": "search",
    "description": "Search the docs",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
def genai(server: MockLLMServer) -> Iterator[Any]:
    from google import genai
    from google.genai import types

    base = f"http://127.0.0.1:{server.port}"
    yield genai.Client(api_key="k", http_options=types.HttpOptions(base_url=base))


def spans(tracing: TracingFixture, n: int) -> list[ReadableSpan]:
    found = tracing.spans()
    assert len(found) == n, [s.name for s in found]
    tracing.assert_settled()
    return found


def assert_answer(
    span: ReadableSpan, model: str, *, provider: str = "gcp.gemini", ptok: int = PTOK
) -> None:
    """A plain text answer to USER: model, input, output, usage, finish reason."""
    a = attrs(span)
    assert span.name == f"generate_content {model}"
    assert a["gen_ai.operation.name"] == "generate_content"
    assert a["gen_ai.provider.name"] == provider
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == model
    assert a["gen_ai.response.id"] == "mock-gemini-response-1"
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": USER}]}
    ]
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "STOP",
        }
    ]
    assert jattr(span, "langfuse.observation.output") == {
        "role": "model",
        "parts": [{"text": ANSWER}],
    }
    assert a["gen_ai.response.finish_reasons"] == ("STOP",)
    # Counted once, though every stream chunk repeats a prompt-only usageMetadata.
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (ptok, CTOK)
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": ptok,
        "output": CTOK,
        "total": ptok + CTOK,
    }


# --- google-genai, AI Studio ----------------------------------------------------------------


async def test_genai_json_with_parameters(traced, genai):
    from google.genai import types

    config = types.GenerateContentConfig(
        system_instruction="Be brief",
        temperature=0.2,
        top_p=0.9,
        top_k=20,
        max_output_tokens=50,
        stop_sequences=["END"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.3,
        candidate_count=2,
    )
    try:
        done = await genai.aio.models.generate_content(
            model="gemini-2.0-flash", contents=USER, config=config
        )
    finally:
        await genai.aio.aclose()
    assert done.text == ANSWER
    (span,) = spans(traced, 1)
    assert_answer(span, "gemini-2.0-flash", ptok=PTOK + 2)  # + the system instruction's words
    a = attrs(span)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.top_k"] == 20
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.presence_penalty"] == 0.1
    assert a["gen_ai.request.frequency_penalty"] == 0.3
    assert a["gen_ai.request.choice.count"] == 2
    assert "gen_ai.request.stream" not in a
    assert jattr(span, "gen_ai.system_instructions") == [{"type": "text", "content": "Be brief"}]
    langfuse_input = jattr(span, "langfuse.observation.input")
    assert langfuse_input["contents"] == [{"parts": [{"text": USER}], "role": "user"}]
    assert langfuse_input["systemInstruction"]["parts"] == [{"text": "Be brief"}]
    assert "gen_ai.response.time_to_first_chunk" not in a  # not a stream


async def test_genai_sse_stream(traced, genai, server):
    try:
        chunks = await genai.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents=USER
        )
        pieces = [c.text or "" async for c in chunks]
    finally:
        await genai.aio.aclose()
    assert len(pieces) == 8 and "".join(pieces) == ANSWER  # really streamed, in pieces
    assert server.requests[-1]["query"] == {"alt": "sse"}
    (span,) = spans(traced, 1)
    assert_answer(span, "gemini-2.0-flash")
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert "llm_tracing.parse_error" not in a
    assert jattr(span, "langfuse.observation.input") == CONTENTS


async def test_genai_tool_call_and_result(traced, genai):
    from google.genai import types

    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(**SEARCH)])]
    config = types.GenerateContentConfig(tools=tools)
    call_turn = types.Content(role="user", parts=[types.Part(text=USER)])
    try:
        first = await genai.aio.models.generate_content(
            model="gemini-2.0-flash", contents=[call_turn], config=config
        )
        call = first.function_calls[0]
        reply = types.Part.from_function_response(name=call.name, response={"hits": 3})
        second = await genai.aio.models.generate_content(
            model="gemini-2.0-flash",
            contents=[
                call_turn,
                first.candidates[0].content,
                types.Content(role="user", parts=[reply]),
            ],
            config=config,
        )
    finally:
        await genai.aio.aclose()
    assert (call.name, call.args) == ("search", {"query": USER[:40]})
    assert second.text.startswith("Mock answer to:")
    asked, answered = spans(traced, 2)
    a = attrs(asked)
    assert jattr(asked, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": None,
                    "name": "search",
                    "arguments": {"query": USER[:40]},
                }
            ],
            "finish_reason": "STOP",
        }
    ]
    (tool,) = jattr(asked, "gen_ai.tool.definitions")
    assert (tool["type"], tool["name"], tool["description"]) == (
        "function",
        "search",
        "Search the docs",
    )
    assert (
        jattr(asked, "langfuse.observation.input")["tools"][0]["functionDeclarations"][0]["name"]
        == "search"
    )
    assert a["gen_ai.usage.input_tokens"] == PTOK
    assert a["gen_ai.usage.output_tokens"] == len(json.dumps({"query": USER[:40]}).split())
    assert a["gen_ai.response.finish_reasons"] == ("STOP",)
    # The second request carries the model's call and the tool's result, in the parts schema.
    roles = [(m["role"], m["parts"][0]["type"]) for m in jattr(answered, "gen_ai.input.messages")]
    assert roles == [("user", "text"), ("assistant", "tool_call"), ("user", "tool_call_response")]
    result = jattr(answered, "gen_ai.input.messages")[2]["parts"][0]
    assert (result["name"], result["response"]) == ("search", {"hits": 3})
    assert jattr(answered, "gen_ai.output.messages")[0]["parts"][0]["type"] == "text"


async def test_genai_cached_and_thoughts_tokens(traced, genai):
    from google.genai import types

    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=64))
    try:
        done = await genai.aio.models.generate_content(
            model="gemini-2.5-cached", contents=USER, config=config
        )
        stream = await genai.aio.models.generate_content_stream(
            model="gemini-2.5-cached", contents=USER, config=config
        )
        streamed = [c async for c in stream]
    finally:
        await genai.aio.aclose()
    usage = done.usage_metadata
    cached, thoughts = PTOK // 2, 16
    assert (usage.cached_content_token_count, usage.thoughts_token_count) == (cached, thoughts)
    assert streamed[-1].usage_metadata.total_token_count == usage.total_token_count
    for span in spans(traced, 2):
        a = attrs(span)
        assert a["gen_ai.request.model"] == "gemini-2.5-cached"
        assert jattr(span, "langfuse.observation.model.parameters") == {"thinking_budget": 64}
        # input includes the cached tokens, output the thinking ones.
        assert a["gen_ai.usage.input_tokens"] == PTOK
        assert a["gen_ai.usage.cache_read.input_tokens"] == cached
        assert a["gen_ai.usage.output_tokens"] == CTOK + thoughts
        assert a["gen_ai.usage.reasoning.output_tokens"] == thoughts
        assert jattr(span, "langfuse.observation.usage_details") == {
            "input": PTOK - cached,
            "input_cached_tokens": cached,
            "output": CTOK,
            "output_reasoning_tokens": thoughts,
            "total": usage.total_token_count,
        }
        assert jattr(span, "langfuse.observation.output")["parts"] == [{"text": ANSWER}]
        assert a["gen_ai.response.finish_reasons"] == ("STOP",)


async def test_genai_embed_content(traced, genai, server):
    try:
        batch = await genai.aio.models.embed_content(
            model="text-embedding-004", contents=["first text", "second text"]
        )
    finally:
        await genai.aio.aclose()
    assert len(batch.embeddings) == 2
    # The SDK always batches; a raw :embedContent is the other path.
    url = f"http://127.0.0.1:{server.port}/v1beta/models/text-embedding-004:embedContent"
    body = {"content": {"parts": [{"text": "one"}]}, "outputDimensionality": 4}
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as resp:
        assert len((await resp.json())["embedding"]["values"]) == 4
    for span, count, dims in zip(spans(traced, 2), (2, 1), (8, 4)):
        a = attrs(span)
        assert span.name == "embeddings text-embedding-004"
        assert a["gen_ai.operation.name"] == "embeddings"
        assert a["langfuse.observation.type"] == "embedding"
        assert a["gen_ai.provider.name"] == "gcp.gemini"
        assert a["gen_ai.request.model"] == "text-embedding-004"
        assert a["gen_ai.embeddings.dimension.count"] == dims
        assert jattr(span, "langfuse.observation.output") == {"count": count, "dimensions": dims}
    first, second = traced.spans()
    texts = [c["parts"][0]["text"] for c in jattr(first, "langfuse.observation.input")]
    assert texts == ["first text", "second text"]
    assert jattr(second, "langfuse.observation.input") == body["content"]
    assert jattr(second, "langfuse.observation.model.parameters") == {"dimensions": 4}


async def test_genai_api_error(traced, genai):
    from google.genai import errors

    try:
        with pytest.raises(errors.ClientError) as raised:
            await genai.aio.models.generate_content(model="error-429", contents=USER)
    finally:
        await genai.aio.aclose()
    assert raised.value.code == 429
    (span,) = spans(traced, 1)
    a = attrs(span)
    assert span.name == "generate_content error-429"
    assert a["http.response.status_code"] == 429
    assert a["error.type"] == "429"  # an HTTP failure keeps HTTP's error type
    assert a["langfuse.observation.level"] == "ERROR"
    assert "exhausted" in a["langfuse.observation.status_message"]
    assert jattr(span, "langfuse.observation.output")["error"]["code"] == 429
    assert jattr(span, "gen_ai.input.messages")[0]["parts"][0]["content"] == USER
    assert "gen_ai.usage.input_tokens" not in a and "gen_ai.response.finish_reasons" not in a


async def test_genai_blocked_prompt_and_withheld_answer(traced, genai):
    try:
        blocked = await genai.aio.models.generate_content(model="blocked", contents=USER)
        stopped = await genai.aio.models.generate_content(model="safety-stop", contents=USER)
    finally:
        await genai.aio.aclose()
    assert blocked.prompt_feedback.block_reason == "SAFETY" and not blocked.candidates
    assert stopped.candidates[0].finish_reason == "SAFETY"
    prompt, answer = spans(traced, 2)
    a = attrs(prompt)
    assert a["error.type"] == "SAFETY"
    assert a["langfuse.observation.status_message"] == "Prompt blocked: SAFETY"
    assert a["langfuse.observation.level"] == "ERROR"
    assert jattr(prompt, "langfuse.observation.output")["promptFeedback"]["blockReason"] == "SAFETY"
    assert a["gen_ai.usage.input_tokens"] == PTOK  # the refused prompt still costs
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.output.messages" not in a
    b = attrs(answer)
    assert b["error.type"] == "SAFETY"
    assert b["langfuse.observation.status_message"] == "Response blocked: SAFETY"
    assert b["gen_ai.response.finish_reasons"] == ("SAFETY",)
    assert b["gen_ai.response.model"] == "safety-stop"
    assert "langfuse.observation.output" not in b


async def test_genai_vertex(traced, server):
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project="proj",
        location="us-central1",
        credentials=Credentials(token="t"),
        http_options=types.HttpOptions(base_url=f"http://127.0.0.1:{server.port}"),
    )
    try:
        done = await client.aio.models.generate_content(model="gemini-2.0-flash", contents=USER)
        stream = await client.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents=USER
        )
        text = "".join([c.text or "" async for c in stream])
    finally:
        await client.aio.aclose()
    assert done.text == text == ANSWER
    assert "/projects/proj/locations/us-central1/publishers/google/" in server.requests[-1]["path"]
    for span in spans(traced, 2):
        assert_answer(span, "gemini-2.0-flash", provider="gcp.vertex_ai")


# --- litellm's gemini/ provider -------------------------------------------------------------


async def test_litellm_gemini(traced, server, litellm):
    common = {
        "messages": [{"role": "user", "content": USER}],
        "api_key": "k",
        "api_base": f"http://127.0.0.1:{server.port}",
        "max_tokens": 40,
        "temperature": 0.5,
    }
    done = await litellm.acompletion(model="gemini/gemini-2.0-flash", **common)
    stream = await litellm.acompletion(model="gemini/gemini-2.0-flash", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    json_span, stream_span = spans(traced, 2)
    for span in (json_span, stream_span):
        assert_answer(span, "gemini-2.0-flash")
        # litellm writes generationConfig in snake_case.
        assert attrs(span)["gen_ai.request.max_tokens"] == 40
        assert attrs(span)["gen_ai.request.temperature"] == 0.5
    assert attrs(stream_span)["gen_ai.request.stream"] is True
    assert attrs(stream_span)["gen_ai.response.time_to_first_chunk"] > 0


# --- raw aiohttp: the JSON-array stream and bodies the adapter cannot fully read ------------


async def traced_bytes(tracing: TracingFixture, url: str, body: Any) -> bytes:
    async with aiohttp.ClientSession(trace_configs=[tracing.trace_config]) as s:
        async with s.post(url, json=body) as resp:
            return b"".join([chunk async for chunk in resp.content.iter_chunked(256)])


def gemini_url(server: MockLLMServer, model: str, action: str, query: str = "") -> str:
    return f"http://127.0.0.1:{server.port}/v1beta/models/{model}:{action}{query}"


async def test_json_array_stream(llm_tracing, server):
    url = gemini_url(server, "gemini-2.0-flash", "streamGenerateContent", "?mock_chunks=5")
    body = {"contents": CONTENTS}
    raw = await traced_bytes(llm_tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    chunks = json.loads(raw)
    assert raw.startswith(b"[{") and len(chunks) == 5
    (span,) = spans(llm_tracing, 1)
    assert_answer(span, "gemini-2.0-flash")
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert "llm_tracing.parse_error" not in a


async def test_percent_encoded_model_and_colon(llm_tracing, server):
    # A tuned model id with a character the caller escaped, and the colon escaped too.
    url = f"http://127.0.0.1:{server.port}/v1beta/models/gemini%2D2.0%2Dflash%3AgenerateContent"
    async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as s:
        async with s.post(URL(url, encoded=True), json={"contents": CONTENTS}) as r:
            assert r.status == 200
            await r.read()
    (span,) = spans(llm_tracing, 1)
    assert_answer(span, "gemini-2.0-flash")


@pytest.mark.parametrize("alt_sse", [True, False], ids=["sse", "json-array"])
async def test_truncated_stream(llm_tracing, server, alt_sse):
    query = "?alt=sse&mock_chunks=8" if alt_sse else "?mock_chunks=8"
    url = gemini_url(server, "truncated-sse", "streamGenerateContent", query)
    body = {"contents": CONTENTS}
    raw = await traced_bytes(llm_tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    (span,) = spans(llm_tracing, 1)
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == "body_complete"
    assert a["gen_ai.request.model"] == "truncated-sse"
    assert jattr(span, "gen_ai.input.messages")[0]["parts"][0]["content"] == USER
    assert "gen_ai.response.finish_reasons" not in a  # the final chunk never came
    if alt_sse:
        assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
        whole = [json.loads(e[6:]) for e in raw.split(b"\r\n\r\n")[:-1]]
        seen = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in whole)
        assert len(whole) == 3 and ANSWER.startswith(seen)
        assert jattr(span, "langfuse.observation.output") == {
            "role": "model",
            "parts": [{"text": seen}],
        }
        assert a["gen_ai.usage.input_tokens"] == PTOK  # the prompt-only usage of chunk 3
        assert "gen_ai.usage.output_tokens" not in a
        assert a["gen_ai.response.time_to_first_chunk"] > 0
    else:
        # A cut JSON array is not JSON at all: nothing of the response can be read.
        assert a["llm_tracing.parse_error"] == "response: not JSON"
        assert "langfuse.observation.output" not in a
        assert "gen_ai.usage.input_tokens" not in a


async def test_invalid_json(llm_tracing, server):
    url = gemini_url(server, "invalid-json", "generateContent")
    body = {"contents": CONTENTS}
    raw = await traced_bytes(llm_tracing, url, body)
    assert raw == await fetch_untraced(url, body) == b'{"id": "x", "choices": ['
    (span,) = spans(llm_tracing, 1)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert span.name == "generate_content invalid-json"
    assert "langfuse.observation.output" not in a and "gen_ai.usage.input_tokens" not in a
    assert jattr(span, "langfuse.observation.input") == CONTENTS


WRONG_TYPES: dict[str, Any] = {
    "candidates": {},
    "usageMetadata": "x",
    "responseId": 5,
    "modelVersion": ["m"],
    "promptFeedback": 3,
}
ODD_PARTS: dict[str, Any] = {
    "candidates": [
        7,
        {"content": {"parts": [{"text": 7}, "x", {"text": "ok"}]}, "finishReason": 3},
    ],
    "usageMetadata": {"promptTokenCount": "9", "candidatesTokenCount": 2.5, "totalTokenCount": 4},
    "responseId": "r-1",
}

WRONG_CHUNKS: list[Any] = [WRONG_TYPES, {"candidates": [{"content": {"parts": {"text": "x"}}}]}, 3]
# A stream that starts well, then fails: the status was already 200.
STREAM_ERROR: list[Any] = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Half an"}]}}]}
    | {"usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}, "modelVersion": "m-1"},
    {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
]


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    """Serves WRONG_TYPES and ODD_PARTS as JSON, WRONG_CHUNKS and STREAM_ERROR as SSE."""

    async def reply(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        payload = WRONG_TYPES if model == "wrong" else ODD_PARTS
        if request.match_info["action"] == "generateContent":
            return web.json_response(payload)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = STREAM_ERROR if model == "overloaded" else WRONG_CHUNKS
        for chunk in chunks:
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1beta/models/{model}:{action}", reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1beta/models"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("wrong:generateContent", "response: unrecognised JSON shape"),
        ("wrong:streamGenerateContent?alt=sse", "response: no recognised events"),
    ],
)
async def test_wrong_types_unreadable(llm_tracing, odd_server, path, problem):
    url = f"{odd_server}/{path}"
    body = {"contents": CONTENTS, "generationConfig": {"temperature": "hot", "topK": [1]}}
    raw = await traced_bytes(llm_tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    (span,) = spans(llm_tracing, 1)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == problem
    assert a["gen_ai.request.model"] == "wrong"
    assert "gen_ai.request.temperature" not in a and "gen_ai.request.top_k" not in a
    for key in ("langfuse.observation.output", "gen_ai.usage.input_tokens", "gen_ai.response.id"):
        assert key not in a
    assert "gen_ai.response.finish_reasons" not in a


async def test_wrong_types_partly_readable(llm_tracing, odd_server):
    url = f"{odd_server}/odd:generateContent"
    raw = await traced_bytes(llm_tracing, url, {"contents": CONTENTS})
    assert raw == await fetch_untraced(url, {"contents": CONTENTS})
    (span,) = spans(llm_tracing, 1)
    a = attrs(span)
    assert "llm_tracing.parse_error" not in a  # what could be read was
    assert a["gen_ai.response.id"] == "r-1"
    assert a["gen_ai.request.model"] == "odd"
    assert "gen_ai.response.finish_reasons" not in a  # 3 is no reason
    # Counts of the wrong type are left out, never coerced; the total stands on its own.
    assert "gen_ai.usage.input_tokens" not in a and "gen_ai.usage.output_tokens" not in a
    assert jattr(span, "langfuse.observation.usage_details") == {"total": 4}
    (message,) = jattr(span, "gen_ai.output.messages")
    assert message["parts"] == [{"type": "text"}, {"type": "text", "content": "ok"}]
    assert message["finish_reason"] is None


async def test_error_inside_a_stream(llm_tracing, odd_server):
    url = f"{odd_server}/overloaded:streamGenerateContent?alt=sse"
    raw = await traced_bytes(llm_tracing, url, {"contents": CONTENTS})
    assert raw == await fetch_untraced(url, {"contents": CONTENTS})
    (span,) = spans(llm_tracing, 1)
    a = attrs(span)
    assert a["http.response.status_code"] == 200
    assert a["error.type"] == "UNAVAILABLE"
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == "The model is overloaded."
    assert span.status.description == "The model is overloaded."
    assert jattr(span, "langfuse.observation.output")["error"]["code"] == 503
    assert a["gen_ai.response.model"] == "m-1"
    assert a["gen_ai.usage.input_tokens"] == 5  # what the stream reported before failing
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert "gen_ai.response.finish_reasons" not in a


async def test_genai_media_parts_keep_their_mime_type(traced, genai):
    from google.genai import types

    contents = [
        types.Part.from_bytes(data=b"\x89PNG not really", mime_type="image/png"),
        types.Part.from_uri(file_uri="gs://bucket/report.pdf", mime_type="application/pdf"),
        USER,
    ]
    try:
        done = await genai.aio.models.generate_content(model="gemini-2.0-flash", contents=contents)
    finally:
        await genai.aio.aclose()
    assert done.text == ANSWER
    (span,) = spans(traced, 1)
    (message,) = jattr(span, "gen_ai.input.messages")
    blob, uri, text = message["parts"]
    assert (blob["type"], blob["modality"], blob["mime_type"]) == ("blob", "image", "image/png")
    assert isinstance(blob["content"], str)  # the base64 as sent; media elision is the LLM layer's
    # No modality for a PDF: the conventions know image, video and audio only.
    assert uri == {"type": "uri", "mime_type": "application/pdf", "uri": "gs://bucket/report.pdf"}
    assert text == {"type": "text", "content": USER}
    assert jattr(span, "gen_ai.output.messages")[0]["parts"] == [
        {"type": "text", "content": ANSWER}
    ]
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("STOP",)
    assert attrs(span)["gen_ai.usage.input_tokens"] == PTOK + 2 * 258  # the mock bills images
