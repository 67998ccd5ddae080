"""The Ollama adapters: ``/api/chat``, ``/api/generate`` (JSON and NDJSON streams), ``/api/embed``.

Through plain aiohttp against the mock, and through litellm's ``ollama/`` (``/api/generate``)
and ``ollama_chat/`` (``/api/chat``) routes, which go over aiohttp and are traced by the
instrumentor alone. Every call is one span, ended once, with nothing left in the registry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan

from aiohttp_llm_tracing import EndReason
from aiohttp_llm_tracing._context import TraceAttributes
from aiohttp_llm_tracing._llm import LLMOptions, match_llm_call
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.mock_llm._server import ThreadedServer
from aiohttp_llm_tracing.testing import TracingFixture

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import attrs, fetch_untraced, jattr  # noqa: E402

pytest_plugins = ["llm_fixtures"]
pytestmark = [
    # Both content vocabularies are checked here; the default writes only Langfuse's.
    pytest.mark.usefixtures("both_content_formats"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


USER = "Explain distributed tracing in one line"
ANSWER = "Mock answer to: " + USER[:40]
MESSAGES = [{"role": "user", "content": USER}]
IN_TOKENS = len(USER.split())
OUT_TOKENS = len(ANSWER.split())
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the docs",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


async def post(tracing: Any, url: str, body: Any) -> tuple[int, str, bytes]:
    async with tracing.session() as s, s.post(url, json=body) as resp:
        raw = b"".join([chunk async for chunk in resp.content.iter_chunked(4096)])
        return resp.status, resp.headers.get("Content-Type", ""), raw


def lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def assert_generation(
    span: ReadableSpan,
    operation: str,
    model: str,
    *,
    stream: bool,
    input_tokens: int = IN_TOKENS,
    output_tokens: int = OUT_TOKENS,
    reason: str = "stop",
) -> dict[str, Any]:
    """The facts every successful chat or generate call carries; the attributes."""
    a = attrs(span)
    assert span.name == f"{operation} {model}"
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "ollama"
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == model
    assert a["gen_ai.response.finish_reasons"] == (reason,)
    assert a["gen_ai.usage.input_tokens"] == input_tokens
    assert a["gen_ai.usage.output_tokens"] == output_tokens
    assert jattr(span, "langfuse.observation.usage_details") == {
        "input": input_tokens,
        "output": output_tokens,
        "total": input_tokens + output_tokens,
    }
    assert a["llm_tracing.ollama.prompt_eval_duration_ns"] == input_tokens * 1_000_000
    assert a["llm_tracing.ollama.eval_duration_ns"] == output_tokens * 20_000_000
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert "llm_tracing.parse_error" not in a
    assert ("gen_ai.request.stream" in a) is stream
    assert ("gen_ai.response.time_to_first_chunk" in a) is stream
    return a


# -- /api/chat ----------------------------------------------------------------------------------


async def test_chat_streams_by_default(server, tracing):
    url = f"http://127.0.0.1:{server.port}/api/chat?mock_chunks=4"
    body = {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief"}, *MESSAGES],
        "options": {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "num_predict": 64},
    }
    _, ctype, raw = await post(tracing, url, body)
    assert ctype == "application/x-ndjson"
    chunks = lines(raw)
    assert len(chunks) == 5 and chunks[-1]["done"] is True
    span = tracing.only()
    a = assert_generation(span, "chat", "llama3.2", stream=True, input_tokens=IN_TOKENS + 2)
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.top_k"] == 20
    assert a["gen_ai.request.max_tokens"] == 64
    assert jattr(span, "langfuse.observation.model.parameters") == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 64,
    }
    assert jattr(span, "gen_ai.system_instructions") == [{"type": "text", "content": "Be brief"}]
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": USER}]}
    ]
    assert jattr(span, "langfuse.observation.input") == body["messages"]
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": ANSWER}
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "stop",
        }
    ]


async def test_chat_json_with_stop_seed_and_length(server, tracing):
    url = f"http://127.0.0.1:{server.port}/api/chat"
    options = {"num_predict": 2, "seed": 42, "stop": ["\n"], "repeat_penalty": 1.1}
    body = {"model": "qwen3", "messages": MESSAGES, "stream": False, "options": options}
    _, ctype, raw = await post(tracing, url, body)
    assert ctype.startswith("application/json")
    assert json.loads(raw)["message"]["content"] == "Mock answer"
    span = tracing.only()
    a = assert_generation(span, "chat", "qwen3", stream=False, output_tokens=2, reason="length")
    assert a["gen_ai.request.seed"] == 42
    assert a["gen_ai.request.stop_sequences"] == ("\n",)
    assert jattr(span, "langfuse.observation.model.parameters")["repeat_penalty"] == 1.1
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": "Mock answer",
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_tool_call(server, tracing, stream):
    url = f"http://127.0.0.1:{server.port}/api/chat"
    body = {"model": "llama3.1", "messages": MESSAGES, "tools": TOOLS, "stream": stream}
    await post(tracing, url, body)
    span = tracing.only()
    arguments = {"query": USER[:40]}
    output_tokens = len(json.dumps(arguments).split())
    assert_generation(span, "chat", "llama3.1", stream=stream, output_tokens=output_tokens)
    assert jattr(span, "gen_ai.tool.definitions") == TOOLS
    assert jattr(span, "langfuse.observation.input") == {"messages": MESSAGES, "tools": TOOLS}
    call = {"function": {"name": "search", "arguments": arguments}}
    assert jattr(span, "langfuse.observation.output") == {
        "role": "assistant",
        "content": "",
        "tool_calls": [call],
    }
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": None, "name": "search", "arguments": arguments}],
            "finish_reason": "stop",
        }
    ]


async def test_chat_tool_result_turn(server, tracing):
    call = {"function": {"name": "search", "arguments": {"query": "tracing"}}}
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "Spans and traces.", "tool_name": "search"},
    ]
    body = {"model": "llama3.1", "messages": messages, "tools": TOOLS, "stream": False}
    await post(tracing, f"http://127.0.0.1:{server.port}/api/chat", body)
    span = tracing.only()
    assert jattr(span, "gen_ai.input.messages")[1:] == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": None,
                    "name": "search",
                    "arguments": {"query": "tracing"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [
                {
                    "type": "tool_call_response",
                    "id": None,
                    "response": "Spans and traces.",
                    "name": "search",
                }
            ],
        },
    ]
    # The user is no longer last: the model answers in text.
    assert jattr(span, "langfuse.observation.output")["content"].startswith("Mock answer")
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("stop",)


# -- /api/generate ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [None, False])
async def test_generate(server, tracing, stream):
    body: dict[str, Any] = {"model": "llama3.2", "prompt": USER, "system": "Be brief"}
    if stream is not None:
        body["stream"] = stream
    _, ctype, raw = await post(tracing, f"http://127.0.0.1:{server.port}/api/generate", body)
    streamed = stream is None  # absent means a stream
    assert ctype.startswith("application/x-ndjson" if streamed else "application/json")
    text = "".join(c["response"] for c in lines(raw))
    assert text == ANSWER
    span = tracing.only()
    a = assert_generation(
        span, "text_completion", "llama3.2", stream=streamed, input_tokens=IN_TOKENS + 2
    )
    assert jattr(span, "langfuse.observation.input") == {"system": "Be brief", "prompt": USER}
    assert jattr(span, "gen_ai.system_instructions") == [{"type": "text", "content": "Be brief"}]
    assert a["langfuse.observation.output"] == ANSWER  # a string is recorded as it is
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "stop",
        }
    ]


def test_generate_path_is_ollamas_and_tgis_is_not():
    from yarl import URL

    options = LLMOptions()
    call = match_llm_call(options, "POST", URL("http://h/api/generate"), TraceAttributes())
    assert call is not None and call.provider == "ollama"
    assert call.adapter.operation == "text_completion"
    other = match_llm_call(options, "POST", URL("http://h/generate"), TraceAttributes())
    assert other is None or other.provider != "ollama"


# -- /api/embed ---------------------------------------------------------------------------------


async def test_embed(server, tracing):
    body = {"model": "nomic-embed-text", "input": ["hello world", "tracing"], "dimensions": 16}
    _, _, raw = await post(tracing, f"http://127.0.0.1:{server.port}/api/embed", body)
    assert [len(v) for v in json.loads(raw)["embeddings"]] == [16, 16]
    span = tracing.only()
    a = attrs(span)
    assert span.name == "embeddings nomic-embed-text"
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["langfuse.observation.type"] == "embedding"
    assert a["gen_ai.provider.name"] == "ollama"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "nomic-embed-text"
    assert a["gen_ai.embeddings.dimension.count"] == 16
    assert a["gen_ai.usage.input_tokens"] == 3
    assert "gen_ai.request.stream" not in a
    assert jattr(span, "langfuse.observation.input") == body["input"]
    assert jattr(span, "langfuse.observation.output") == {"count": 2, "dimensions": 16}
    assert jattr(span, "langfuse.observation.model.parameters") == {"dimensions": 16}


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 500])
async def test_error_body(server, tracing, status):
    model = f"error-{status}"
    code, _, raw = await post(
        tracing, f"http://127.0.0.1:{server.port}/api/chat", {"model": model, "messages": []}
    )
    assert code == status
    message = json.loads(raw)["error"]
    span = tracing.only()
    a = attrs(span)
    assert span.name == f"chat {model}"
    assert a["http.response.status_code"] == status
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == message
    assert jattr(span, "langfuse.observation.output") == {"error": message}
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a


async def test_error_line_mid_stream(server, tracing):
    body = {"model": "stream-error", "messages": MESSAGES}
    code, _, raw = await post(tracing, f"http://127.0.0.1:{server.port}/api/chat", body)
    assert code == 200 and lines(raw)[-1] == {
        "error": "llama runner process has terminated: mock crash"
    }
    span = tracing.only()
    a = attrs(span)
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"].startswith("llama runner process")
    assert a["gen_ai.response.model"] == "stream-error"
    assert a["gen_ai.response.time_to_first_chunk"] > 0  # content came before the error
    assert "gen_ai.response.finish_reasons" not in a
    assert "llm_tracing.parse_error" not in a


# -- litellm: ollama/ and ollama_chat/ over aiohttp ---------------------------------------------


@pytest.fixture
def threaded() -> Iterator[ThreadedServer]:
    # litellm asks /api/show for the model's context size with a *blocking* httpx call from
    # inside the event loop; a mock on that same loop could never answer it.
    with ThreadedServer() as srv:
        yield srv


def two_spans(tracing: TracingFixture) -> list[ReadableSpan]:
    spans = tracing.spans()
    assert len(spans) == 2, [s.name for s in spans]
    stats = tracing.registry.stats()
    assert len(tracing.registry) == 0 and stats.in_flight == 0
    assert stats.ended_total == stats.started == 2 and stats.internal_errors == 0
    return spans


async def test_litellm_ollama_chat(llm_tracing_instrumented, threaded, litellm):
    common = {"messages": MESSAGES, "api_base": f"http://127.0.0.1:{threaded.port}"}
    done = await litellm.acompletion(model="ollama_chat/llama3.2", temperature=0.1, **common)
    stream = await litellm.acompletion(model="ollama_chat/llama3.2", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    json_span, stream_span = two_spans(llm_tracing_instrumented)
    # litellm says "stream": false and "stream": true outright.
    a = assert_generation(json_span, "chat", "llama3.2", stream=False)
    assert a["gen_ai.request.temperature"] == 0.1
    assert_generation(stream_span, "chat", "llama3.2", stream=True)
    for span in (json_span, stream_span):
        assert jattr(span, "langfuse.observation.output") == {
            "role": "assistant",
            "content": ANSWER,
        }
        assert jattr(span, "gen_ai.input.messages") == [
            {"role": "user", "parts": [{"type": "text", "content": USER}]}
        ]


async def test_litellm_ollama_generate(llm_tracing_instrumented, threaded, litellm):
    common = {"messages": MESSAGES, "api_base": f"http://127.0.0.1:{threaded.port}"}
    done = await litellm.acompletion(model="ollama/llama3.2", max_tokens=50, **common)
    stream = await litellm.acompletion(model="ollama/llama3.2", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    # litellm folds the messages into one prompt ("### User:\n...").
    prompt = threaded.requests[0]["json"]["prompt"]
    answer = "Mock answer to: " + prompt[:40]
    assert done.choices[0].message.content == text == answer
    tokens = len(prompt.split())
    json_span, stream_span = two_spans(llm_tracing_instrumented)
    out = len(answer.split())
    a = assert_generation(
        json_span,
        "text_completion",
        "llama3.2",
        stream=False,
        input_tokens=tokens,
        output_tokens=out,
    )
    assert a["gen_ai.request.max_tokens"] == 50
    assert_generation(
        stream_span,
        "text_completion",
        "llama3.2",
        stream=True,
        input_tokens=tokens,
        output_tokens=out,
    )
    for span in (json_span, stream_span):
        assert attrs(span)["langfuse.observation.input"] == prompt
        assert attrs(span)["langfuse.observation.output"] == answer


async def test_litellm_ollama_embed(llm_tracing_instrumented, threaded, litellm):
    resp = await litellm.aembedding(
        model="ollama/nomic-embed-text",
        input=["hello world"],
        api_base=f"http://127.0.0.1:{threaded.port}",
    )
    assert resp.usage.prompt_tokens == 2
    (span,) = llm_tracing_instrumented.spans()
    stats = llm_tracing_instrumented.registry.stats()
    assert len(llm_tracing_instrumented.registry) == 0 and stats.internal_errors == 0
    assert stats.ended_total == stats.started == 1
    a = attrs(span)
    assert span.name == "embeddings nomic-embed-text"
    assert a["gen_ai.usage.input_tokens"] == 2
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert jattr(span, "langfuse.observation.input") == ["hello world"]


# -- bad input: the caller gets the server's bytes, the span ends once and says what is wrong --


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_truncated_stream(server, tracing, path):
    url = f"http://127.0.0.1:{server.port}{path}"
    body = {"model": "truncated-sse", "messages": MESSAGES, "prompt": USER}
    _, _, raw = await post(tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    assert not raw.endswith(b"\n")
    whole = lines(raw.rsplit(b"\n", 1)[0])
    assert len(whole) == 3
    key = "message" if path == "/api/chat" else "response"
    seen = "".join(c[key]["content"] if key == "message" else c[key] for c in whole)
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert a["gen_ai.response.model"] == "truncated-sse"
    assert "gen_ai.response.finish_reasons" not in a  # the done line never came
    assert "gen_ai.usage.input_tokens" not in a
    output = jattr(span, "langfuse.observation.output") if key == "message" else None
    if output is not None:
        assert output == {"role": "assistant", "content": seen}
    else:
        assert a["langfuse.observation.output"] == seen
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_invalid_json(server, tracing):
    url = f"http://127.0.0.1:{server.port}/api/chat"
    body = {"model": "invalid-json", "messages": MESSAGES, "stream": False}
    _, _, raw = await post(tracing, url, body)
    assert raw == await fetch_untraced(url, body) == b'{"id": "x", "choices": ['
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert span.name == "chat invalid-json"
    assert "langfuse.observation.output" not in a
    assert jattr(span, "langfuse.observation.input") == MESSAGES


WRONG_REPLY = {"model": 5, "message": "hi", "done_reason": 3, "prompt_eval_count": "9"}
WRONG_LINES = [{"model": ["m"], "message": {"content": 5}}, [1, 2], {"done": "yes"}]


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    async def reply(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("stream") is False:
            return web.json_response(WRONG_REPLY)
        text = "".join(json.dumps(line) + "\n" for line in WRONG_LINES)
        return web.Response(text=text, content_type="application/x-ndjson")

    app = web.Application()
    app.router.add_post("/api/chat", reply)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/api/chat"))
    await server.close()


async def test_wrong_json_types(odd_server, tracing):
    body = {"model": "m", "messages": "hi", "options": [1], "stream": False}
    _, _, raw = await post(tracing, odd_server, body)
    assert json.loads(raw) == WRONG_REPLY
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert a["gen_ai.request.model"] == "m"
    assert "gen_ai.response.model" not in a
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert "langfuse.observation.output" not in a


async def test_wrong_json_types_in_a_stream(odd_server, tracing):
    _, _, raw = await post(tracing, odd_server, {"model": "m", "messages": MESSAGES})
    assert lines(raw) == WRONG_LINES
    span = tracing.only()
    a = attrs(span)
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert a["llm_tracing.parse_error"] == "response: no recognised events"
    assert "gen_ai.response.model" not in a
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.time_to_first_chunk" not in a
    assert "langfuse.observation.output" not in a
