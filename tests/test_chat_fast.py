"""The end of a plain chat call read in one pass (``_llm_fast``), JSON or SSE, equals the
general path's, or steps aside to it."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from opentelemetry.sdk.trace import TracerProvider
from yarl import URL

import aiohttp_llm_tracing._llm as llm
from aiohttp_llm_tracing._context import TraceAttributes
from aiohttp_llm_tracing._inflight import HttpSpan
from aiohttp_llm_tracing._llm import LLMOptions, match_llm_call
from aiohttp_llm_tracing.adapters import OpenAIChat, ParsedResponse
from test_chat_stream_fast import SHAPES as STREAM_SHAPES
from test_chat_stream_fast import _body as sse_body

TRACER = TracerProvider().get_tracer("t")
CHAT_URL = URL("http://127.0.0.1:8000/v1/chat/completions")
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Capital of France?"},
    ],
}
RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
}
HEADERS = {"Content-Type": "application/json", "x-request-id": "req_1", "openai-model": "m"}


def _end(
    request: bytes,
    response: bytes,
    *,
    fast: bool,
    reason: str = "body_complete",
    status: int = 200,
    headers: dict[str, str] | None = None,
    options: LLMOptions | None = None,
    url: URL = CHAT_URL,
) -> tuple[dict[str, Any], str, str | None, bool]:
    """``(attributes, span name, status message, fast path taken)`` of one call's end."""
    taken: list[bool] = []
    original = llm.chat_attributes

    def spy(call: Any, code: int, reason: str) -> Any:
        result = original(call, code, reason) if fast else None
        taken.append(result is not None)
        return result

    call = match_llm_call(options or LLMOptions(), "POST", url, TraceAttributes())
    assert call is not None

    class Response:
        pass

    Response.headers = CIMultiDict(HEADERS if headers is None else headers)  # type: ignore[attr-defined]
    call.feed_request(request)
    capture = call.on_response(Response)  # type: ignore[arg-type]
    if response:
        capture.feed(response)
        # The same clock readings for both paths: the time to first chunk must match too.
        capture._marks = [(0, 2_000_000_000), (len(response) // 2, 3_000_000_000)]
        call.started_ns = 1_000_000_000
    entry = HttpSpan(TRACER.start_span("chat"), "id", None, call)  # type: ignore[arg-type]
    entry.status_code = status
    attributes: dict[str, Any] = {}
    llm.chat_attributes = spy  # type: ignore[assignment]
    try:
        message = call.finish(attributes, entry, reason)
    finally:
        llm.chat_attributes = original
    assert not call.failures, call.failures
    return attributes, entry.span.name, message, any(taken)  # type: ignore[attr-defined]


def _same(request: Any, response: Any, **kwargs: Any) -> bool:
    """Both paths give the same end; returns whether the fast one was taken."""
    req = request if isinstance(request, bytes) else json.dumps(request).encode()
    resp = response if isinstance(response, bytes) else json.dumps(response).encode()
    *fast, taken = _end(req, resp, fast=True, **kwargs)
    *general, _ = _end(req, resp, fast=False, **kwargs)
    assert fast == general
    return taken


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search", "arguments": '{"q": "x"}'},
}
TAKEN = {
    "plain": (REQUEST, RESPONSE),
    "sampling parameters": (
        _with(
            REQUEST,
            temperature=0.2,
            max_tokens=50,
            top_p=1,
            stop="\n",
            n=2,
            seed=7,
            response_format={"type": "json_object"},
            service_tier="auto",
            reasoning_effort="low",
        ),
        RESPONSE,
    ),
    "parameters of odd types": (
        _with(
            REQUEST,
            temperature=True,
            max_tokens="50",
            stop=["a", "b"],
            n=1,
            response_format={"schema": {}},
            presence_penalty=[1],
        ),
        RESPONSE,
    ),
    "tools and a tool call": (
        _with(REQUEST, tools=[{"type": "function", "function": {"name": "search"}}]),
        _with(
            RESPONSE,
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                    "finish_reason": "tool_calls",
                }
            ],
        ),
    ),
    "two choices": (
        REQUEST,
        _with(RESPONSE, choices=[RESPONSE["choices"][0], {**RESPONSE["choices"][0], "index": 1}]),
    ),
    "cached and reasoning tokens": (
        REQUEST,
        _with(
            RESPONSE,
            usage={
                "prompt_tokens": 100,
                "completion_tokens": 40,
                "total_tokens": 140,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
        ),
    ),
    "usage in the Responses API's names": (
        REQUEST,
        _with(
            RESPONSE,
            usage={
                "input_tokens": 5,
                "output_tokens": 3,
                "input_tokens_details": {"cached_tokens": 9},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        ),
    ),
    "no usage, no id": (REQUEST, _with(RESPONSE, usage=None, id=None)),
    "fields of the wrong types": (
        _with(REQUEST, model=5, messages={"role": "user"}, tools=[]),
        _with(
            RESPONSE,
            id=7,
            model=None,
            choices=[{"message": "text", "finish_reason": 3}, "x", {"finish_reason": ""}],
            usage={"prompt_tokens": "12", "completion_tokens": 2.0, "total_tokens": True},
        ),
    ),
    "unicode, escapes and a big integer": (
        _with(REQUEST, messages=[{"role": "user", "content": 'Café "日本" \n\u2028'}], seed=2**70),
        _with(RESPONSE, created=2**64 + 1, model="modèle"),
    ),
    "empty choices with usage": (REQUEST, _with(RESPONSE, choices=[])),
}


@pytest.mark.parametrize("case", list(TAKEN))
def test_fast_path_equals_general(case: str) -> None:
    request, response = TAKEN[case]
    assert _same(request, response)


def test_content_cut_at_the_limit_and_content_off_equal_general() -> None:
    long = _with(REQUEST, messages=[{"role": "user", "content": "x" * 500}])
    assert _same(long, RESPONSE, options=LLMOptions(max_attribute_length=100))
    assert _same(long, RESPONSE, options=LLMOptions(capture_content=False))


def test_azure_deployment_names_the_model_when_the_body_does_not() -> None:
    url = URL("https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=1")
    request = {"messages": REQUEST["messages"]}
    response = _with(RESPONSE, model=None)
    assert _same(request, response, url=url)
    attributes, name, _, _ = _end(
        json.dumps(request).encode(), json.dumps(response).encode(), fast=True, url=url
    )
    assert name == "chat gpt4o"
    assert attributes["langfuse.observation.model.name"] == "gpt4o"


def test_rate_limit_and_request_id_headers_are_kept() -> None:
    headers = {**HEADERS, "x-ratelimit-remaining-requests": "9", "X-Request-Id": "req_2"}
    assert _same(REQUEST, RESPONSE, headers=headers)
    attributes, *_ = _end(
        json.dumps(REQUEST).encode(), json.dumps(RESPONSE).encode(), fast=True, headers=headers
    )
    assert attributes["http.response.header.x-ratelimit-remaining-requests"] == ["9"]


ASIDE = {
    "an error body": (REQUEST, {"error": {"message": "bad key", "type": "auth"}}, {}),
    "an error status": (REQUEST, RESPONSE, {"status": 500}),
    "a request that asked for a stream": (_with(REQUEST, stream=True), RESPONSE, {}),
    "a body the adapter does not know": (REQUEST, {"object": "x"}, {}),
    "a JSON array": (REQUEST, [RESPONSE], {}),
    "response not JSON": (REQUEST, b"<html>oops</html>", {}),
    "request not JSON": (b"model=gpt", RESPONSE, {}),
    "NaN, which orjson refuses": (REQUEST, b'{"id": "c", "x": NaN}', {}),
    "a lone surrogate": (REQUEST, b'{"id": "c\\ud800", "model": "m"}', {}),
    "an empty response": (REQUEST, b"", {}),
    "GenAI-format content": (REQUEST, RESPONSE, {"options": LLMOptions(content_format="both")}),
    "a mask": (REQUEST, RESPONSE, {"options": LLMOptions(mask=lambda v: "***")}),
    "compressed": (REQUEST, RESPONSE, {"headers": {**HEADERS, "Content-Encoding": "gzip"}}),
    "labelled as an event stream": (
        REQUEST,
        RESPONSE,
        {"headers": {"Content-Type": "text/event-stream"}},
    ),
}


@pytest.mark.parametrize("case", list(ASIDE))
def test_fast_path_steps_aside(case: str) -> None:
    request, response, kwargs = ASIDE[case]
    if "Content-Encoding" in kwargs.get("headers", {}):
        # Whatever gzip would have made of it: the general path says it does not decode.
        response = json.dumps(response).encode()
    assert not _same(request, response, **kwargs)


def test_a_large_response_is_elided_as_the_general_path_does() -> None:
    image = base64.b64encode(bytes(range(256)) * 60).decode()
    message = {"role": "assistant", "content": None, "audio": {"data": image, "id": "a1"}}
    response = _with(RESPONSE, choices=[{"index": 0, "message": message, "finish_reason": "stop"}])
    assert _same(REQUEST, response)
    attributes, *_ = _end(json.dumps(REQUEST).encode(), json.dumps(response).encode(), fast=True)
    output = attributes["langfuse.observation.output"]
    assert image not in output
    assert "15360 bytes, base64 omitted" in output


def test_a_subclass_or_a_patched_adapter_is_read_the_general_way() -> None:
    class Mine(OpenAIChat):
        def parse_response(self, body: Any) -> ParsedResponse:
            return ParsedResponse(id="mine", model="mine")

    patched = OpenAIChat()
    patched.parse_response = Mine().parse_response  # type: ignore[method-assign]
    for adapter in (Mine(), patched):
        attributes, _, _, taken = _end(
            json.dumps(REQUEST).encode(),
            json.dumps(RESPONSE).encode(),
            fast=True,
            options=LLMOptions(adapters=(adapter,)),
        )
        assert not taken
        assert attributes["gen_ai.response.id"] == "mine"


def test_a_failure_in_the_fast_path_is_counted_and_the_general_path_describes_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(call: Any, status: int, reason: str) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(llm, "chat_attributes", broken)
    call = match_llm_call(LLMOptions(), "POST", CHAT_URL, TraceAttributes())
    assert call is not None

    class Response:
        headers = CIMultiDict(HEADERS)

    call.feed_request(json.dumps(REQUEST).encode())
    call.on_response(Response).feed(json.dumps(RESPONSE).encode())  # type: ignore[arg-type]
    errors: list[str] = []

    class Registry:
        def record_internal_error(self, site: str, error: BaseException) -> None:
            errors.append(site)

    entry = HttpSpan(TRACER.start_span("chat"), "id", Registry(), call)  # type: ignore[arg-type]
    entry.status_code = 200
    attributes: dict[str, Any] = {}
    call.finish(attributes, entry, "body_complete")
    assert errors == ["llm.fast_path"]
    assert attributes["gen_ai.response.id"] == "chatcmpl-1"


# Every field the fast path reads, drawn from values of every JSON type.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _maybe(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: v | _JSON for k, v in keys.items()})


_USAGE_DETAILS = _maybe(
    {"cached_tokens": st.integers(0, 50), "reasoning_tokens": st.integers(0, 50)}
)
_USAGE = _maybe(
    {
        name: st.integers(0, 100)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens")
    }
    | {"prompt_tokens_details": _USAGE_DETAILS, "completion_tokens_details": _USAGE_DETAILS}
)
_MESSAGE = _maybe(
    {
        "role": st.sampled_from(["assistant", "tool"]),
        "content": st.text(max_size=10),
        "tool_calls": st.just([TOOL_CALL]),
        "refusal": st.text(max_size=5),
        "audio": st.just({"id": "a"}),
    }
)
_CHOICE = _maybe({"message": _MESSAGE, "finish_reason": st.sampled_from(["stop", "length", ""])})
_RESPONSES = _maybe(
    {
        "id": st.text(max_size=6),
        "model": st.text(max_size=6),
        "choices": st.lists(_CHOICE | _JSON, max_size=3),
        "usage": _USAGE,
        "error": st.none(),
    }
)
_REQUESTS = _maybe(
    {
        "model": st.text(max_size=6),
        "messages": st.just(REQUEST["messages"]),
        "tools": st.lists(st.just({"type": "function"}), max_size=2),
        "stream": st.booleans(),
        "temperature": st.floats(0, 2),
        "max_tokens": st.integers(1, 100),
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=2),
        "n": st.integers(1, 3),
        "response_format": _maybe({"type": st.text(max_size=5)}),
    }
)


@settings(max_examples=300, deadline=None)
@given(request=_REQUESTS, response=_RESPONSES, status=st.sampled_from([200, 200, 404]))
def test_random_bodies_end_as_the_general_path_ends_them(
    request: dict[str, Any], response: dict[str, Any], status: int
) -> None:
    _same(request, response, status=status)


# -- streams --------------------------------------------------------------------------------

SSE = {"Content-Type": "text/event-stream", "x-request-id": "req_1"}
STREAM_REQUEST = _with(REQUEST, stream=True, stream_options={"include_usage": True})


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("shape", list(STREAM_SHAPES))
def test_streams_end_as_the_general_path_ends_them(shape: str, compact: bool) -> None:
    body = sse_body(STREAM_SHAPES[shape], compact=compact)
    taken = _same(STREAM_REQUEST, body, headers=SSE)
    if shape == "plain":
        assert taken


def test_a_plain_stream_gets_its_time_to_first_chunk_and_usage() -> None:
    body = sse_body(STREAM_SHAPES["plain"])
    attributes, name, message, taken = _end(
        json.dumps(STREAM_REQUEST).encode(), body, fast=True, headers=SSE
    )
    assert taken and message is None and name == "chat gpt-4o-mini"
    assert attributes["gen_ai.response.time_to_first_chunk"] == 1.0
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert json.loads(attributes["langfuse.observation.output"])["content"] == "Hello world"


STREAM_ASIDE = {
    "read only in part": ({"reason": "released"}, lambda b: b),
    "cut off mid-event": ({}, lambda b: b[: b.rfind(b"data: [DONE]") - 5]),
    "an error event": ({}, lambda b: sse_body(STREAM_SHAPES["error mid-stream"])),
    "CR line endings": ({}, lambda b: b.replace(b"\n", b"\r\n")),
    "an error status": ({"status": 503}, lambda b: b),
}


@pytest.mark.parametrize("case", list(STREAM_ASIDE))
def test_streams_outside_the_shape_step_aside(case: str) -> None:
    kwargs, change = STREAM_ASIDE[case]
    body = change(sse_body(STREAM_SHAPES["plain"]))
    assert not _same(STREAM_REQUEST, body, headers=SSE, **kwargs)


def test_a_stream_the_request_did_not_ask_for_is_read_all_the_same() -> None:
    assert _same(REQUEST, sse_body(STREAM_SHAPES["plain"]), headers=SSE)


@settings(max_examples=150, deadline=None)
@given(request=_REQUESTS, shape=st.sampled_from(sorted(STREAM_SHAPES)), compact=st.booleans())
def test_random_requests_with_streams_end_as_the_general_path_ends_them(
    request: dict[str, Any], shape: str, compact: bool
) -> None:
    _same(request, sse_body(STREAM_SHAPES[shape], compact=compact), headers=SSE)
