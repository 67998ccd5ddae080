"""Benchmark-harness servers through plain aiohttp: TGI /generate and /generate_stream, SGLang
/generate (the same path, told apart by the body) and vLLM's OpenAI-compatible server.

Each call must come out as one generation with model (where known), input, output, usage and
finish reason, and end exactly once; bodies that cannot be read are marked, never fatal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from aiohttp_llm_tracing import EndReason
from aiohttp_llm_tracing._context import TraceAttributes
from aiohttp_llm_tracing._llm import LLMOptions, match_llm_call
from aiohttp_llm_tracing.adapters import DEFAULT_ADAPTERS
from aiohttp_llm_tracing.adapters.textgen import TextGeneration

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import attrs, fetch_untraced, jattr, sse_data  # noqa: E402

pytest_plugins = ["llm_fixtures"]


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


PROMPT = "What is distributed tracing?"
ANSWER = f"Mock answer to: {PROMPT}"


@pytest.fixture
def root(llm_server) -> str:
    """The mock's root URL: TGI and SGLang serve /generate there, not under /v1."""
    return f"http://127.0.0.1:{llm_server.port}"


async def post(tracing, url: str, body: Any, **kwargs: Any) -> tuple[int, bytes]:
    """POST as a benchmark client does (a plain session), reading the body in chunks."""
    async with tracing.session() as s, s.post(url, json=body, **kwargs) as resp:
        return resp.status, b"".join([c async for c in resp.content.iter_chunked(4096)])


def generation(tracing):
    """The single span, settled, asserted to have ended once with the body read to its end."""
    span = tracing.only()
    assert attrs(span)["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    return span


def assert_first_chunk(span) -> None:
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    assert 0 < a["gen_ai.response.time_to_first_chunk"] <= (span.end_time - span.start_time) / 1e9
    assert "langfuse.observation.completion_start_time" in a


def sse_payloads(raw: bytes) -> list[Any]:
    """``data:`` payloads with or without the space TGI leaves out."""
    out: list[Any] = []
    for line in raw.decode().splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.fixture
async def tiny() -> AsyncIterator[Callable[..., Any]]:
    """Start a small aiohttp app on 127.0.0.1 answering POST ``path`` with fixed bytes."""
    servers: list[TestServer] = []

    async def start(body: bytes, ctype: str, path: str = "/generate") -> str:
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, headers={"Content-Type": ctype})

        app = web.Application()
        app.router.add_post(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url(path))

    yield start
    for server in servers:
        await server.close()


# -- TGI ----------------------------------------------------------------------------------------


async def test_tgi_json_with_details(root, tracing):
    params = {
        "max_new_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.1,
        "seed": 7,
        "stop": ["\n\n"],
        "details": True,
        "decoder_input_details": True,
        "model": "bigscience/bloom-560m",
    }
    status, raw = await post(tracing, f"{root}/generate", {"inputs": PROMPT, "parameters": params})
    data = json.loads(raw)
    assert status == 200 and data["generated_text"] == ANSWER
    span = generation(tracing)
    a = attrs(span)
    assert span.name == "text_completion bigscience/bloom-560m"
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["gen_ai.provider.name"] == "tgi"
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["langfuse.observation.model.name"] == params["model"]
    assert "gen_ai.response.model" not in a  # TGI's body never names it
    assert a["gen_ai.request.max_tokens"] == 20
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.top_k"] == 40
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert jattr(span, "langfuse.observation.model.parameters") == {
        "max_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.1,
        "seed": 7,
        "stop": ["\n\n"],
    }
    assert "gen_ai.request.stream" not in a
    assert a["langfuse.observation.input"] == PROMPT
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert a["langfuse.observation.output"] == ANSWER
    assert jattr(span, "gen_ai.output.messages") == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": ANSWER}],
            "finish_reason": "eos_token",
        }
    ]
    assert a["gen_ai.response.finish_reasons"] == ("eos_token",)
    # Input tokens only from the prefill list (decoder_input_details); output from details.
    assert a["gen_ai.usage.input_tokens"] == len(data["details"]["prefill"]) == 4
    assert a["gen_ai.usage.output_tokens"] == data["details"]["generated_tokens"]
    assert "gen_ai.response.time_to_first_chunk" not in a
    assert "llm_tracing.parse_error" not in a


async def test_tgi_json_without_details(root, tracing):
    # What most callers send: no details, so TGI reports no counts and no finish reason.
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3}}
    _, raw = await post(tracing, f"{root}/generate", body)
    assert json.loads(raw) == {"generated_text": "Mock answer to:"}
    span = generation(tracing)
    a = attrs(span)
    assert span.name == "text_completion"  # no model anywhere
    assert "gen_ai.request.model" not in a and "langfuse.observation.model.name" not in a
    assert a["gen_ai.request.max_tokens"] == 3
    assert a["langfuse.observation.output"] == "Mock answer to:"
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.usage.output_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert "llm_tracing.parse_error" not in a


async def test_tgi_stream_with_details(root, tracing):
    body = {"inputs": PROMPT, "model": "tgi-llama", "parameters": {"details": True, "seed": 3}}
    _, raw = await post(tracing, f"{root}/generate_stream", body)
    events = sse_payloads(raw)
    last = events[-1]
    # The last event is the special end token: not part of the text.
    assert last["token"]["special"] is True and last["generated_text"] == ANSWER
    span = generation(tracing)
    a = attrs(span)
    assert span.name == "text_completion tgi-llama"
    assert a["gen_ai.provider.name"] == "tgi"
    assert a["gen_ai.request.seed"] == 3
    assert a["langfuse.observation.output"] == ANSWER
    assert "".join(e["token"]["text"] for e in events[:-1]) == ANSWER
    assert a["gen_ai.response.finish_reasons"] == ("eos_token",)
    assert a["gen_ai.usage.output_tokens"] == last["details"]["generated_tokens"] == len(events)
    assert a["gen_ai.usage.input_tokens"] == last["details"]["input_length"]
    assert_first_chunk(span)


async def test_tgi_stream_as_benchmark_clients_send_it(root, tracing):
    # vLLM's old TGI backend: no details, so no finish reason; output counted from the events.
    params = {"best_of": 1, "max_new_tokens": 4, "do_sample": True, "temperature": 0.01}
    params |= {"top_p": 0.99, "truncate": 128}
    _, raw = await post(
        tracing, f"{root}/generate_stream", {"inputs": PROMPT, "parameters": params}
    )
    events = sse_payloads(raw)
    assert len(events) == 4 and events[-1]["details"] is None
    span = generation(tracing)
    a = attrs(span)
    assert (
        a["langfuse.observation.output"] == events[-1]["generated_text"] == "Mock answer to: What"
    )
    assert a["gen_ai.usage.output_tokens"] == 4
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert jattr(span, "langfuse.observation.model.parameters") == {
        "max_tokens": 4,
        "temperature": 0.01,
        "top_p": 0.99,
        "do_sample": True,
        "best_of": 1,
        "truncate": 128,
    }
    assert_first_chunk(span)


async def test_tgi_list_wrapped(tracing, tiny):
    # TGI's compatibility route and the HF Inference API answer with a one-element list.
    answer = [
        {"generated_text": "Hi", "details": {"finish_reason": "length", "generated_tokens": 1}}
    ]
    url = await tiny(json.dumps(answer).encode(), "application/json")
    _, raw = await post(tracing, url, {"inputs": "Say hi"})
    assert json.loads(raw) == answer
    a = attrs(generation(tracing))
    assert a["langfuse.observation.output"] == "Hi"
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.usage.output_tokens"] == 1
    assert "llm_tracing.parse_error" not in a


# -- SGLang -------------------------------------------------------------------------------------


async def test_sglang_json(root, tracing):
    sampling = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "top_k": 20}
    sampling |= {"stop": "\n", "sampling_seed": 11, "ignore_eos": False}
    body = {"text": PROMPT, "sampling_params": sampling, "model": "qwen-cached"}
    _, raw = await post(tracing, f"{root}/generate", body)
    data = json.loads(raw)
    meta = data["meta_info"]
    span = generation(tracing)
    a = attrs(span)
    assert span.name == "text_completion qwen-cached"
    assert a["gen_ai.provider.name"] == "sglang"  # same path as TGI: the body decided
    assert a["gen_ai.request.model"] == "qwen-cached"
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.temperature"] == 0.0
    assert a["gen_ai.request.top_k"] == 20
    assert a["gen_ai.request.seed"] == 11
    assert a["gen_ai.request.stop_sequences"] == ("\n",)
    assert jattr(span, "langfuse.observation.model.parameters")["ignore_eos"] is False
    assert a["gen_ai.response.id"] == meta["id"]
    assert a["langfuse.observation.input"] == PROMPT
    assert a["langfuse.observation.output"] == data["text"] == ANSWER
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == meta["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == meta["completion_tokens"]
    assert a["gen_ai.usage.cache_read.input_tokens"] == meta["cached_tokens"] == 2
    # Langfuse gets the cached tokens split out of the input.
    details = jattr(span, "langfuse.observation.usage_details")
    assert details["input"] == meta["prompt_tokens"] - 2
    assert details["input_cached_tokens"] == 2


async def test_sglang_stream_cumulative_text(root, tracing):
    # What SGLang's bench_serving sends; the output is the LAST event's text.
    body = {
        "text": PROMPT,
        "sampling_params": {"temperature": 0.0, "max_new_tokens": 32, "ignore_eos": True},
        "stream": True,
        "return_logprob": False,
        "metadata": {"mock_chunks": 4},
    }
    _, raw = await post(tracing, f"{root}/generate", body)
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c["text"] for c in chunks][-1] == ANSWER
    assert chunks[1]["text"].startswith(chunks[0]["text"])  # cumulative, as SGLang sends
    span = generation(tracing)
    a = attrs(span)
    assert a["gen_ai.provider.name"] == "sglang"
    assert span.name == "text_completion"
    assert a["langfuse.observation.output"] == ANSWER != "".join(c["text"] for c in chunks)
    final = chunks[-1]["meta_info"]
    assert a["gen_ai.usage.output_tokens"] == final["completion_tokens"]
    assert a["gen_ai.usage.input_tokens"] == final["prompt_tokens"]
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.id"] == final["id"]
    assert_first_chunk(span)


async def test_sglang_stream_disjoint_pieces(tracing, tiny):
    # A server started with --stream-output sends pieces, not the text so far.
    meta = {"id": "r1", "prompt_tokens": 2, "completion_tokens": 3, "finish_reason": None}
    events = [{"text": t, "meta_info": meta} for t in ("Hel", "lo ", "you")]
    events[-1]["meta_info"] = {**meta, "finish_reason": {"type": "length", "length": 3}}
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    url = await tiny(body, "text/event-stream")
    _, raw = await post(tracing, url, {"text": "x", "stream": True})
    assert raw == body
    a = attrs(generation(tracing))
    assert a["langfuse.observation.output"] == "Hello you"
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.usage.output_tokens"] == 3


async def test_sglang_input_ids(root, tracing):
    ids = [101, 2054, 2003, 102]
    _, raw = await post(tracing, f"{root}/generate", {"input_ids": ids, "sampling_params": {}})
    meta = json.loads(raw)["meta_info"]
    span = generation(tracing)
    a = attrs(span)
    assert a["gen_ai.provider.name"] == "sglang"
    assert jattr(span, "langfuse.observation.input") == {"input_ids": ids}
    assert "gen_ai.input.messages" not in a  # no text to show
    assert a["gen_ai.usage.input_tokens"] == meta["prompt_tokens"] == 4
    assert a["langfuse.observation.output"] == "Mock answer to:"


# -- vLLM: its OpenAI-compatible server needs no adapter of its own -----------------------------


def assert_settled_instrumented(fixture) -> None:
    stats = fixture.registry.stats()
    assert len(fixture.registry) == 0 and stats.in_flight == 0
    assert stats.ended_total == stats.started == len(fixture.spans())
    assert stats.internal_errors == 0


async def test_vllm_bench_completions_stream(llm_server, llm_tracing_instrumented):
    # `vllm bench serve --backend vllm` payload, from a plain session the harness makes itself.
    body = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "prompt": PROMPT,
        "repetition_penalty": 1.0,
        "max_tokens": 128,
        "logprobs": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    headers = {"Authorization": "Bearer EMPTY"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{llm_server.base_url}/completions", json=body, headers=headers) as r:
            raw = await r.read()
    chunks = [c for c in sse_data(raw) if c != "[DONE]"]
    usage = chunks[-1]["usage"]
    (span,) = llm_tracing_instrumented.spans()
    assert_settled_instrumented(llm_tracing_instrumented)
    a = attrs(span)
    assert span.name == f"text_completion {body['model']}"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == body["model"]
    assert a["gen_ai.request.max_tokens"] == 128
    assert a["langfuse.observation.input"] == PROMPT
    assert a["langfuse.observation.output"] == ANSWER
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert_first_chunk(span)


async def test_vllm_bench_chat_stream(llm_server, llm_tracing_instrumented):
    # `vllm bench serve --backend openai-chat`: content as parts, max_completion_tokens.
    content = [{"type": "text", "text": PROMPT}]
    body = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [{"role": "user", "content": content}],
        "max_completion_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{llm_server.base_url}/chat/completions", json=body) as r:
            raw = await r.read()
    chunks = [c for c in sse_data(raw) if c != "[DONE]"]
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    (span,) = llm_tracing_instrumented.spans()
    assert_settled_instrumented(llm_tracing_instrumented)
    a = attrs(span)
    assert span.name == f"chat {body['model']}"
    assert a["gen_ai.request.model"] == body["model"]
    assert a["gen_ai.request.max_tokens"] == 64
    assert jattr(span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": text}
    assert text == ANSWER
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.output_tokens"] == chunks[-1]["usage"]["completion_tokens"]
    assert a["gen_ai.usage.input_tokens"] == chunks[-1]["usage"]["prompt_tokens"]
    assert_first_chunk(span)


# -- API errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "message", "kind"),
    [
        (
            "/generate",
            {"inputs": "x", "parameters": {"model": "error-429"}},
            429,
            "Model is overloaded",
            "overloaded",
        ),
        (
            "/generate_stream",
            {"inputs": "x", "model": "error-422"},
            422,
            "Input validation error: `temperature` must be strictly positive",
            "validation",
        ),
        (
            "/generate",
            {"text": "x", "model": "error-400"},
            400,
            "Input validation error: `inputs` must not be empty",
            None,
        ),
    ],
    ids=["tgi-429", "tgi-stream-422", "sglang-400"],
)
async def test_error_bodies(root, tracing, path, body, status, message, kind):
    got, raw = await post(tracing, root + path, body)
    assert got == status
    assert raw == await fetch_untraced(root + path, body)
    span = generation(tracing)
    a = attrs(span)
    assert a["http.response.status_code"] == status
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == message
    assert span.status.description == message
    # The HTTP status names the failure (error.type); TGI's own class is kept in the output.
    assert a["error.type"] == str(status)
    assert jattr(span, "langfuse.observation.output") == json.loads(raw)
    assert json.loads(raw).get("error_type") == kind
    assert "llm_tracing.parse_error" not in a
    assert "gen_ai.response.finish_reasons" not in a


async def test_tgi_error_event_mid_stream(root, tracing):
    body = {"inputs": PROMPT, "model": "stream-error"}
    status, raw = await post(tracing, f"{root}/generate_stream", body)
    failure = sse_payloads(raw)[-1]
    assert status == 200 and failure["error_type"] == "generation"
    span = generation(tracing)
    a = attrs(span)
    assert a["http.response.status_code"] == 200
    assert a["error.type"] == "generation"
    assert a["langfuse.observation.status_message"] == failure["error"]
    assert span.status.description == failure["error"]
    assert jattr(span, "langfuse.observation.output") == failure
    assert "gen_ai.usage.output_tokens" not in a
    assert a["gen_ai.response.time_to_first_chunk"] > 0  # two tokens did arrive


async def test_sglang_error_event_mid_stream(root, tracing):
    body = {"text": PROMPT, "model": "stream-error", "stream": True}
    _, raw = await post(tracing, f"{root}/generate", body)
    events = sse_data(raw)
    failure = events[-2]["error"]
    span = generation(tracing)
    a = attrs(span)
    assert a["gen_ai.provider.name"] == "sglang"
    assert a["error.type"] == "error"  # SGLang gives no class
    assert a["langfuse.observation.status_message"] == failure["message"]
    assert a["gen_ai.response.id"] == events[0]["meta_info"]["id"]
    assert a["langfuse.observation.level"] == "ERROR"


# -- bad input ----------------------------------------------------------------------------------


async def test_truncated_tgi_stream(root, tracing):
    body = {"inputs": PROMPT, "model": "truncated-sse", "parameters": {"details": True}}
    url = f"{root}/generate_stream"
    _, raw = await post(tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    assert not raw.endswith(b"\n\n")
    whole = sse_payloads(raw.rsplit(b"\n\n", 1)[0] + b"\n\n")
    span = generation(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert a["langfuse.observation.output"] == "".join(e["token"]["text"] for e in whole)
    assert a["langfuse.observation.output"] == "Mock answer to:"
    # The end never came: no finish reason, and no count that could be wrong.
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.usage.output_tokens" not in a
    assert a["gen_ai.response.time_to_first_chunk"] > 0


async def test_truncated_sglang_stream(root, tracing):
    body = {"text": PROMPT, "model": "truncated-sse", "stream": True}
    url = f"{root}/generate"
    _, raw = await post(tracing, url, body)
    assert raw == await fetch_untraced(url, body)
    last_whole = sse_data(raw.rsplit(b"\n\n", 1)[0] + b"\n\n")[-1]
    span = generation(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert a["langfuse.observation.output"] == last_whole["text"] == "Mock answer to:"
    assert a["gen_ai.usage.output_tokens"] == last_whole["meta_info"]["completion_tokens"] == 3
    assert "gen_ai.response.finish_reasons" not in a


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"inputs": PROMPT, "model": "invalid-json"}),
        ("/generate", {"text": PROMPT, "model": "invalid-json"}),
    ],
    ids=["tgi", "sglang"],
)
async def test_invalid_json(root, tracing, path, body):
    _, raw = await post(tracing, root + path, body)
    assert raw == await fetch_untraced(root + path, body) == b'{"id": "x", "choices": ['
    span = generation(tracing)
    a = attrs(span)
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert span.name == "text_completion invalid-json"
    assert a["langfuse.observation.input"] == PROMPT  # the request side is intact
    assert "langfuse.observation.output" not in a


WRONG_JSON = [
    # Valid JSON, wrong types everywhere: nothing to read.
    ({"generated_text": 5, "details": "x"}, None, None),
    ({"text": ["a"], "meta_info": "x"}, None, None),
    ([1, "two", None], None, None),
    # Right shape, wrong types inside: the text survives, the rest is left out.
    ({"generated_text": "ok", "details": {"generated_tokens": "7", "prefill": "x"}}, "ok", None),
    ({"text": "ok", "meta_info": {"prompt_tokens": "3", "finish_reason": 7, "id": 9}}, "ok", None),
    ({"text": "ok", "meta_info": {"finish_reason": {"type": 5}, "completion_tokens": 2}}, "ok", 2),
]


@pytest.mark.parametrize(("answer", "output", "tokens"), WRONG_JSON)
async def test_wrong_json_types(tracing, tiny, answer, output, tokens):
    served = json.dumps(answer).encode()
    url = await tiny(served, "application/json")
    _, raw = await post(tracing, url, {"inputs": 5, "parameters": "x", "text": {"a": 1}})
    assert raw == served
    a = attrs(generation(tracing))
    if output is None:
        assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
        assert "langfuse.observation.output" not in a
    else:
        assert "llm_tracing.parse_error" not in a
        assert a["langfuse.observation.output"] == output
    assert a.get("gen_ai.usage.output_tokens") == tokens
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.response.id" not in a


async def test_wrong_stream_types(tracing, tiny):
    events = [
        b'data:{"token": "x", "generated_text": 5, "details": []}\n\n',
        b"data: [1, 2]\n\n",
        b'data: {"text": 5, "meta_info": []}\n\n',
        b"data: not json\n\n",
        b'data:{"token": {"text": 3, "special": "no"}, "index": "1"}\n\n',
    ]
    served = b"".join(events)
    url = await tiny(served, "text/event-stream", path="/generate_stream")
    _, raw = await post(tracing, url, {"inputs": ["a", 1], "parameters": {"max_new_tokens": "9"}})
    assert raw == served
    a = attrs(generation(tracing))
    # TGI-shaped events were seen, so the (empty) text is recorded, with nothing invented.
    assert a["langfuse.observation.output"] == ""
    assert "gen_ai.usage.output_tokens" not in a
    assert "gen_ai.request.max_tokens" not in a
    assert "llm_tracing.parse_error" not in a


# -- what this adapter must not take ------------------------------------------------------------


def matched(path: str, method: str = "POST", adapters=DEFAULT_ADAPTERS):
    options = LLMOptions(adapters=tuple(adapters))
    url = URL(f"http://127.0.0.1:8000{path}")
    return match_llm_call(options, method, url, TraceAttributes())


def test_paths_taken_and_not():
    adapter = TextGeneration()
    for path in ("/generate", "/generate_stream", "/tgi/generate", "/sglang/generate"):
        assert adapter.matches(path)
        call = matched(path)
        assert call is not None and isinstance(call.adapter, TextGeneration)
    assert matched("/generate", method="GET") is None
    assert not adapter.matches("/api/generate")  # Ollama's
    assert matched("/api/generate", adapters=[adapter]) is None
    call = matched("/api/generate")
    assert call is None or not isinstance(call.adapter, TextGeneration)
    assert matched("/generate/status") is None


async def test_get_generate_is_plain_http(tracing, tiny):
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"generated_text": "not an LLM call"})

    app.router.add_get("/generate", ok)
    app.router.add_post("/api/generate", ok)
    async with TestServer(app, host="127.0.0.1") as server:
        async with tracing.session() as s:
            async with s.get(server.make_url("/generate")) as r:
                await r.read()
            async with s.post(server.make_url("/api/generate"), json={"model": "m"}) as r:
                await r.read()
    spans = tracing.spans()
    assert len(spans) == 2
    tracing.assert_settled()
    get_attrs, api_attrs = attrs(spans[0]), attrs(spans[1])
    assert spans[0].name == "GET" and "gen_ai.operation.name" not in get_attrs
    # /api/generate is Ollama's (its adapter, when present, may take it); never TGI's or SGLang's.
    assert api_attrs.get("gen_ai.provider.name") not in ("tgi", "sglang")


async def test_fastapi_validation_error(tracing, tiny):
    # SGLang's FastAPI refuses a body it cannot read before the server sees it.
    detail = [{"loc": ["body", "text"], "msg": "Input should be a valid string", "type": "x"}]
    served = json.dumps({"detail": detail}).encode()
    url = await tiny(served, "application/json")
    _, raw = await post(tracing, url, {"text": 5, "sampling_params": {}})
    assert raw == served
    span = generation(tracing)
    a = attrs(span)
    assert a["langfuse.observation.status_message"] == "Input should be a valid string"
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["gen_ai.provider.name"] == "sglang"
    assert "llm_tracing.parse_error" not in a


async def test_a_provider_the_caller_names_beats_the_body(llm_server, tracing):
    # SGLang is told from the body; a provider the caller named (or a known host) still wins.
    url = f"http://127.0.0.1:{llm_server.port}/generate"
    config = tracing.config(provider_name="my-sglang-cluster")
    async with tracing.session(config=config) as s:
        async with s.post(url, json={"text": PROMPT, "sampling_params": {}}) as resp:
            await resp.read()
    assert attrs(tracing.only())["gen_ai.provider.name"] == "my-sglang-cluster"
