"""The mock's Gemini wire shape, driven by the real google-genai SDK, litellm and plain aiohttp."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors, types

from aiohttp_llm_tracing.mock_llm import MockLLMServer

PROMPT = "Explain distributed tracing for LLM calls in one line"
ANSWER = "Mock answer to: " + PROMPT[:40]
PTOK, CTOK = len(PROMPT.split()), len(ANSWER.split())
MODEL = "gemini-2.0-flash"
SEARCH = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="search",
            description="Search the web",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"query": types.Schema(type=types.Type.STRING)}
            ),
        )
    ]
)
VERTEX = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/"


@pytest.fixture
async def srv() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as server:
        yield server


def base(srv: MockLLMServer) -> str:
    return f"http://127.0.0.1:{srv.port}"


@pytest.fixture
async def client(srv: MockLLMServer) -> AsyncIterator[genai.Client]:
    # No retry_options: google-genai then makes exactly one attempt, so errors surface at once.
    gclient = genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=base(srv)))
    yield gclient
    await gclient.aio.aclose()


@pytest.fixture
async def vertex(srv: MockLLMServer) -> AsyncIterator[genai.Client]:
    # A ready-made OAuth token: AnonymousCredentials has none, and refreshing needs the network.
    creds = google.oauth2.credentials.Credentials(token="vertex-token")
    opts = types.HttpOptions(base_url=base(srv))
    gclient = genai.Client(
        vertexai=True, project="p", location="us-central1", credentials=creds, http_options=opts
    )
    yield gclient
    await gclient.aio.aclose()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as sess:
        yield sess


def body(text: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


# --- google-genai, AI Studio -------------------------------------------------------------


async def test_generate_text(srv: MockLLMServer, client: genai.Client) -> None:
    resp = await client.aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert resp.text == ANSWER
    cand = resp.candidates[0]
    assert cand.finish_reason == types.FinishReason.STOP and cand.index == 0
    assert cand.content.role == "model"
    assert resp.model_version == MODEL and resp.response_id == "mock-gemini-response-1"
    usage = resp.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count) == (PTOK, CTOK)
    assert usage.total_token_count == PTOK + CTOK
    assert usage.cached_content_token_count is None and usage.thoughts_token_count is None
    (req,) = srv.requests
    assert req["method"] == "POST" and req["path"].endswith(f"/models/{MODEL}:generateContent")
    assert req["headers"]["x-goog-api-key"] == "test-key"
    assert req["json"]["contents"][0]["parts"] == [{"text": PROMPT}]


async def test_system_instruction_counts_as_prompt(client: genai.Client) -> None:
    config = types.GenerateContentConfig(system_instruction="Be terse and exact")
    resp = await client.aio.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert resp.usage_metadata.prompt_token_count == PTOK + 4


async def test_tool_call_then_function_response(srv: MockLLMServer, client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[SEARCH],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    resp = await client.aio.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    (call,) = resp.function_calls
    assert call.name == "search" and call.args == {"query": PROMPT[:40]}
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    decls = srv.requests[-1]["json"]["tools"][0]["functionDeclarations"]
    assert decls[0]["name"] == "search"

    # The tool result comes back as a user turn; the mock must answer it, not call again.
    history = [
        types.Content(role="user", parts=[types.Part.from_text(text=PROMPT)]),
        resp.candidates[0].content,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="search", response={"hits": 3})],
        ),
    ]
    final = await client.aio.models.generate_content(model=MODEL, contents=history, config=config)
    assert final.text == ANSWER and not final.function_calls
    sent = srv.requests[-1]["json"]["contents"]
    assert [c["role"] for c in sent] == ["user", "model", "user"]
    assert sent[1]["parts"][0]["functionCall"]["name"] == "search"
    assert sent[2]["parts"][0]["functionResponse"]["response"] == {"hits": 3}


async def test_cached_and_thoughts_tokens(srv: MockLLMServer, client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        cached_content="cachedContents/mock-1",
        thinking_config=types.ThinkingConfig(thinking_budget=128),
    )
    resp = await client.aio.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    usage = resp.usage_metadata
    assert usage.cached_content_token_count == PTOK // 2
    assert usage.thoughts_token_count == 16
    assert usage.total_token_count == PTOK + CTOK + 16
    sent = srv.requests[-1]["json"]
    assert sent["cachedContent"] == "cachedContents/mock-1"
    # google-genai sends the inner key snake_cased; the API (and the mock) accept both spellings.
    assert sent["generationConfig"]["thinkingConfig"] == {"thinking_budget": 128}

    # A model named "*cached*" stands for implicit caching; a zero budget means no thinking.
    off = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0))
    resp = await client.aio.models.generate_content(
        model="gemini-cached", contents=PROMPT, config=off
    )
    assert resp.usage_metadata.cached_content_token_count == PTOK // 2
    assert resp.usage_metadata.thoughts_token_count is None


async def test_max_output_tokens(client: genai.Client) -> None:
    config = types.GenerateContentConfig(max_output_tokens=3)
    resp = await client.aio.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    assert resp.text == "Mock answer to:"
    assert resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert resp.usage_metadata.candidates_token_count == 3


async def test_inline_data_is_read(srv: MockLLMServer, client: genai.Client) -> None:
    image = types.Part.from_bytes(data=b"\x89PNG fake", mime_type="image/png")
    resp = await client.aio.models.generate_content(model=MODEL, contents=[image, PROMPT])
    assert resp.text == ANSWER
    assert resp.usage_metadata.prompt_token_count == PTOK + 258
    parts = srv.requests[-1]["json"]["contents"][0]["parts"]
    # google-genai snake_cases the inner keys ("mime_type"), which proto JSON also accepts.
    assert "image/png" in parts[0]["inlineData"].values()


async def test_stream(srv: MockLLMServer, client: genai.Client) -> None:
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents=PROMPT)
    chunks = [c async for c in stream]
    assert len(chunks) == 8
    assert "".join(c.text or "" for c in chunks) == ANSWER
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count == CTOK
    assert last.usage_metadata.total_token_count == PTOK + CTOK
    # Earlier chunks carry Gemini's prompt-only usage and no finish reason.
    assert chunks[0].candidates[0].finish_reason is None
    assert chunks[0].usage_metadata.prompt_token_count == PTOK
    assert chunks[0].usage_metadata.candidates_token_count is None
    req = srv.requests[-1]
    assert req["path"].endswith(f"/models/{MODEL}:streamGenerateContent")
    assert req["query"] == {"alt": "sse"}


async def test_stream_chunk_count_from_body_metadata(srv: MockLLMServer) -> None:
    opts = types.HttpOptions(base_url=base(srv), extra_body={"metadata": {"mock_chunks": 3}})
    gclient = genai.Client(api_key="k", http_options=opts)
    stream = await gclient.aio.models.generate_content_stream(model=MODEL, contents=PROMPT)
    chunks = [c async for c in stream]
    await gclient.aio.aclose()
    assert len(chunks) == 3 and "".join(c.text for c in chunks) == ANSWER


async def test_stream_tool_call_is_one_chunk(client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[SEARCH])
    stream = await client.aio.models.generate_content_stream(
        model=MODEL, contents=PROMPT, config=config
    )
    (chunk,) = [c async for c in stream]
    assert chunk.function_calls[0].name == "search"
    assert chunk.usage_metadata.total_token_count > PTOK


async def test_embed_content(srv: MockLLMServer, client: genai.Client) -> None:
    resp = await client.aio.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    first, second = resp.embeddings
    assert len(first.values) == 8 and first.values != second.values
    again = await client.aio.models.embed_content(model="text-embedding-004", contents="a")
    assert again.embeddings[0].values == first.values  # deterministic
    config = types.EmbedContentConfig(output_dimensionality=40)
    wide = await client.aio.models.embed_content(
        model="text-embedding-004", contents="a", config=config
    )
    assert len(wide.embeddings[0].values) == 40
    assert srv.requests[0]["path"].endswith("/models/text-embedding-004:batchEmbedContents")
    assert len(srv.requests[0]["json"]["requests"]) == 2


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (400, "INVALID_ARGUMENT", errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", errors.ClientError),
        (500, "INTERNAL", errors.ServerError),
    ],
)
async def test_error_models(
    srv: MockLLMServer, client: genai.Client, code: int, status: str, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as info:
        await client.aio.models.generate_content(model=f"error-{code}", contents=PROMPT)
    assert isinstance(info.value, errors.APIError)
    assert info.value.code == code and info.value.status == status
    assert info.value.message.startswith("Mock")
    stream = await client.aio.models.generate_content_stream(model=f"error-{code}", contents=PROMPT)
    with pytest.raises(kind):  # the async stream sends its request on the first iteration
        _ = [c async for c in stream]
    assert len(srv.requests) == 2  # one attempt each: no retry options, no retries


async def test_blocked_prompt(client: genai.Client) -> None:
    resp = await client.aio.models.generate_content(model="blocked", contents=PROMPT)
    assert resp.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not resp.candidates and resp.text is None
    assert resp.usage_metadata.prompt_token_count == PTOK
    stream = await client.aio.models.generate_content_stream(model="blocked", contents=PROMPT)
    (chunk,) = [c async for c in stream]
    assert chunk.prompt_feedback.block_reason == types.BlockedReason.SAFETY


async def test_safety_stop(client: genai.Client) -> None:
    resp = await client.aio.models.generate_content(model="safety-stop", contents=PROMPT)
    assert resp.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert resp.candidates[0].content is None and resp.text is None


async def test_genai_async_client_uses_aiohttp(srv: MockLLMServer, client: genai.Client) -> None:
    """google-genai builds its own aiohttp session lazily, per event loop (private state)."""
    api = client._api_client
    assert api._use_aiohttp() and not api._aiohttp_sessions
    await client.aio.models.generate_content(model=MODEL, contents=PROMPT)
    (sess,) = api._aiohttp_sessions.values()
    assert isinstance(sess, aiohttp.ClientSession) and type(sess).__name__ == "AiohttpClientSession"
    assert not sess.trace_configs  # built without trace_configs


async def test_genai_uses_a_caller_aiohttp_session(srv: MockLLMServer) -> None:
    """``HttpOptions(aiohttp_client=...)`` is the supported way to bring trace_configs."""
    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as sess:
        opts = types.HttpOptions(base_url=base(srv), aiohttp_client=sess)
        gclient = genai.Client(api_key="k", http_options=opts)
        resp = await gclient.aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert resp.text == ANSWER
    assert seen == [srv.requests[-1]["path"]]


# --- google-genai, Vertex AI -------------------------------------------------------------


async def test_vertex_generate_stream_and_embed(srv: MockLLMServer, vertex: genai.Client) -> None:
    resp = await vertex.aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert resp.text == ANSWER and resp.usage_metadata.total_token_count == PTOK + CTOK
    req = srv.requests[-1]
    assert req["path"] == f"{VERTEX}{MODEL}:generateContent"
    assert req["headers"]["authorization"] == "Bearer vertex-token"

    stream = await vertex.aio.models.generate_content_stream(model=MODEL, contents=PROMPT)
    chunks = [c async for c in stream]
    assert "".join(c.text for c in chunks) == ANSWER
    assert chunks[-1].usage_metadata.candidates_token_count == CTOK
    assert srv.requests[-1]["path"] == f"{VERTEX}{MODEL}:streamGenerateContent"

    emb = await vertex.aio.models.embed_content(model="text-embedding-004", contents=["a b"])
    assert len(emb.embeddings[0].values) == 8
    assert emb.embeddings[0].statistics.token_count == 2
    assert srv.requests[-1]["path"] == f"{VERTEX}text-embedding-004:predict"


async def test_vertex_error(vertex: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as info:
        await vertex.aio.models.generate_content(model="error-429", contents=PROMPT)
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"


# --- litellm's gemini provider -----------------------------------------------------------


async def test_litellm_gemini(srv: MockLLMServer, litellm: Any) -> None:
    msgs = [{"role": "user", "content": PROMPT}]
    kw: dict[str, Any] = {"model": f"gemini/{MODEL}", "api_key": "k", "api_base": base(srv)}
    resp = await litellm.acompletion(messages=msgs, **kw)
    assert resp.choices[0].message.content == ANSWER
    assert resp.usage.prompt_tokens == PTOK and resp.usage.completion_tokens == CTOK
    req = srv.requests[-1]
    # litellm joins a custom api_base straight to "models/...", without an API version.
    assert req["path"] == f"/models/{MODEL}:generateContent"
    assert req["headers"]["x-goog-api-key"] == "k"

    stream = await litellm.acompletion(
        messages=msgs, stream=True, stream_options={"include_usage": True}, **kw
    )
    parts, usage = [], None
    async for chunk in stream:
        parts += [c.delta.content or "" for c in chunk.choices]
        usage = getattr(chunk, "usage", None) or usage
    assert "".join(parts) == ANSWER
    assert usage is not None and usage.total_tokens == PTOK + CTOK
    assert srv.requests[-1]["path"] == f"/models/{MODEL}:streamGenerateContent"
    assert srv.requests[-1]["query"] == {"alt": "sse"}

    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    resp = await litellm.acompletion(messages=msgs, tools=tools, **kw)
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == {"query": PROMPT[:40]}

    with pytest.raises(litellm.BadRequestError, match="INVALID_ARGUMENT"):
        await litellm.acompletion(messages=msgs, **{**kw, "model": "gemini/error-400"})


# --- the wire itself, with plain aiohttp -------------------------------------------------


async def test_json_array_stream(srv: MockLLMServer, session: aiohttp.ClientSession) -> None:
    url = f"{base(srv)}/v1beta/models/{MODEL}:streamGenerateContent?mock_chunks=3"
    async with session.post(url, json=body()) as resp:
        assert resp.content_type == "application/json"
        raw = await resp.read()
    assert raw.startswith(b"[{") and b"}\r\n" not in raw and raw.count(b",\r\n{") == 2
    chunks = json.loads(raw)
    assert len(chunks) == 3
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == ANSWER
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == CTOK


async def test_sse_framing_is_crlf(srv: MockLLMServer, session: aiohttp.ClientSession) -> None:
    url = f"{base(srv)}/v1/models/{MODEL}:streamGenerateContent?alt=sse&mock_chunks=2"
    async with session.post(url, json=body()) as resp:
        assert resp.content_type == "text/event-stream"
        raw = await resp.read()
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b"" and len(events) == 3
    assert all(e.startswith(b"data: {") for e in events[:2])


@pytest.mark.parametrize("alt", ["?alt=sse", ""])
async def test_truncated_stream(
    srv: MockLLMServer, session: aiohttp.ClientSession, alt: str
) -> None:
    url = f"{base(srv)}/v1beta/models/truncated-sse:streamGenerateContent{alt}"
    async with session.post(url, json=body()) as resp:
        raw = await resp.read()
    with pytest.raises(ValueError):
        json.loads(raw if not alt else raw.split(b"\r\n\r\n")[-1][6:])
    assert raw.count(b'"text"') == 4  # three whole chunks and the start of a fourth


@pytest.mark.parametrize("alt", ["?alt=sse", ""])
async def test_never_ending(srv: MockLLMServer, session: aiohttp.ClientSession, alt: str) -> None:
    url = f"{base(srv)}/v1beta/models/never-ending:streamGenerateContent{alt}"
    async with session.post(url, json=body()) as resp:
        seen = b""
        async for piece in resp.content.iter_any():
            seen += piece
            if seen.count(b'"text"') >= 4:
                break
    assert b"finishReason" not in seen


async def test_wire_paths_and_actions(srv: MockLLMServer, session: aiohttp.ClientSession) -> None:
    root = base(srv)

    async def call(path: str, payload: Any) -> tuple[int, Any]:
        async with session.post(root + path, json=payload) as resp:
            return resp.status, await resp.json()

    loc = "/v1/projects/p/locations/l"
    for prefix in ("/v1alpha/models/", f"{loc}/publishers/google/models/", f"{loc}/endpoints/"):
        status, data = await call(f"{prefix}{MODEL}:generateContent", body())
        assert status == 200 and data["candidates"][0]["content"]["parts"] == [{"text": ANSWER}]

    status, data = await call(f"/v1beta/models/{MODEL}:countTokens", body())
    assert data == {"totalTokens": PTOK}
    embed = {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4}
    status, data = await call("/v1beta/models/text-embedding-004:embedContent", embed)
    assert len(data["embedding"]["values"]) == 4

    status, data = await call(f"/v1beta/models/{MODEL}:noSuchMethod", body())
    assert status == 404 and data["error"]["status"] == "NOT_FOUND"
    status, data = await call("/v1beta/models/error-503:generateContent", body())
    assert status == 503 and data == {
        "error": {"code": 503, "message": data["error"]["message"], "status": "UNAVAILABLE"}
    }


async def test_shared_misbehaviours(srv: MockLLMServer, session: aiohttp.ClientSession) -> None:
    root = f"{base(srv)}/v1beta/models"
    async with session.post(f"{root}/invalid-json:generateContent", json=body()) as resp:
        with pytest.raises(ValueError):
            json.loads(await resp.read())
    async with session.post(
        f"{root}/gzip:generateContent", json=body(), auto_decompress=False
    ) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        data = json.loads(gzip.decompress(await resp.read()))
    assert data["candidates"][0]["content"]["parts"][0]["text"] == ANSWER
