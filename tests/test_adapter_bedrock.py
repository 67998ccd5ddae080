"""The Bedrock adapters (Converse, ConverseStream, InvokeModel[WithResponseStream]) and Anthropic
on Vertex AI, reached through the real clients: aiobotocore's ``bedrock-runtime`` client,
litellm's ``bedrock/`` provider and anthropic's ``AsyncAnthropicVertex``, all traced by the
instrumentor alone, against the embedded mock. Odd bodies come from a tiny aiohttp app.

Every test checks that each span ended exactly once and the registry let go of it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.exceptions import ClientError, EventStreamError
from opentelemetry.sdk.trace import ReadableSpan

from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.mock_llm._eventstream import CONTENT_TYPE, encode_message, event_frame
from aiohttp_llm_tracing.testing import TracingFixture

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-5-sonnet-cached"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"
PROMPT = "What is the airspeed velocity of an unladen swallow, roughly?"
ANSWER = f"Mock answer to: {PROMPT[:40]}"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
SYSTEM = [{"text": "Answer briefly."}]
SPEC = {
    "name": "lookup",
    "description": "Look a fact up",
    "inputSchema": {"json": {"type": "object", "properties": {"query": {"type": "string"}}}},
}
TOOLS = {"tools": [{"toolSpec": SPEC}]}

pytestmark = [
    # Both content vocabularies are checked here; the default writes only Langfuse's.
    pytest.mark.usefixtures("both_content_formats"),
    # litellm's import and response models trip pydantic's own deprecation warnings.
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


def _client(server: MockLLMServer) -> Any:
    # total_max_attempts=1: a 429/500 must not be retried after a jittered back-off.
    return get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=AioConfig(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
async def traced(llm_tracing_instrumented: TracingFixture) -> AsyncIterator[TracingFixture]:
    yield llm_tracing_instrumented
    llm_tracing_instrumented.assert_settled()


@pytest.fixture
async def bedrock(traced: TracingFixture, server: MockLLMServer) -> AsyncIterator[Any]:
    """aiobotocore's client, made while the instrumentor is on, so its sessions are traced."""
    async with _client(server) as client:
        yield client


def only(tracing: TracingFixture) -> ReadableSpan:
    spans = tracing.spans()
    assert len(spans) == 1, [s.name for s in spans]
    tracing.assert_settled()
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def jattr(span: ReadableSpan, key: str) -> Any:
    value = (span.attributes or {}).get(key)
    assert isinstance(value, str), f"{key} is {value!r}"
    return json.loads(value)


def anthropic_body(**extra: Any) -> str:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64}
    return json.dumps({**body, "messages": [{"role": "user", "content": PROMPT}], **extra})


def assert_converse_usage(span: ReadableSpan, usage: dict[str, int]) -> None:
    """Bedrock's inputTokens leaves the cached tokens out; the span counts them in."""
    a = attrs(span)
    read, write = usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]
    assert a["gen_ai.usage.input_tokens"] == usage["inputTokens"] + read + write
    assert a["gen_ai.usage.output_tokens"] == usage["outputTokens"]
    details = jattr(span, "langfuse.observation.usage_details")
    assert details["input"] == usage["inputTokens"]
    assert details["total"] == usage["totalTokens"]
    if read:
        assert a["gen_ai.usage.cache_read.input_tokens"] == read
        assert a["gen_ai.usage.cache_creation.input_tokens"] == write
        assert details["input_cached_tokens"] == read
        assert details["input_cache_creation"] == write
    else:
        assert "gen_ai.usage.cache_read.input_tokens" not in a


def assert_bedrock(
    span: ReadableSpan, model: str, *, stream: bool = False, answered: bool = True
) -> dict[str, Any]:
    a = attrs(span)
    assert span.name == f"chat {model}"
    assert a["gen_ai.provider.name"] == "aws.bedrock"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.request.model"] == a["langfuse.observation.model.name"] == model
    assert a.get("gen_ai.request.stream", False) is stream
    if stream and answered:  # the first content's arrival is known
        assert a["gen_ai.response.time_to_first_chunk"] > 0
    else:
        assert "gen_ai.response.time_to_first_chunk" not in a
    return a


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def assistant(*content: Any) -> dict[str, Any]:
    """The assistant message as Langfuse's output shows it: the API's own content blocks."""
    return {"role": "assistant", "content": list(content)}


def said(parts: list[dict[str, Any]], finish: str | None) -> list[dict[str, Any]]:
    """``gen_ai.output.messages`` for one assistant message."""
    return [{"role": "assistant", "parts": parts, "finish_reason": finish}]


# -- Converse ----------------------------------------------------------------------------------


async def test_converse_text(traced, bedrock):
    config = {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    resp = await bedrock.converse(
        modelId=CLAUDE, messages=MESSAGES, system=SYSTEM, inferenceConfig=config
    )
    assert resp["output"]["message"]["content"] == [{"text": ANSWER}]
    span = only(traced)
    a = assert_bedrock(span, CLAUDE)
    assert "%3A" in a["url.full"]  # botocore encodes the model id's colon; the span decodes it
    assert a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    parameters = {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"]}
    assert jattr(span, "langfuse.observation.model.parameters") == parameters
    assert jattr(span, "langfuse.observation.input") == {"system": SYSTEM, "messages": MESSAGES}
    assert jattr(span, "gen_ai.system_instructions") == [text_part("Answer briefly.")]
    assert jattr(span, "gen_ai.input.messages") == [{"role": "user", "parts": [text_part(PROMPT)]}]
    assert jattr(span, "langfuse.observation.output") == resp["output"]["message"]
    assert jattr(span, "gen_ai.output.messages") == said([text_part(ANSWER)], "end_turn")
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert_converse_usage(span, resp["usage"])
    assert "gen_ai.response.id" not in a  # Converse bodies carry none
    assert "error.type" not in a


async def test_converse_tool_use_round_trip(traced, bedrock):
    first = await bedrock.converse(modelId=CLAUDE, messages=MESSAGES, toolConfig=TOOLS)
    use = first["output"]["message"]["content"][0]["toolUse"]
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "11 m/s"}]}}
    history = [*MESSAGES, first["output"]["message"], {"role": "user", "content": [result]}]
    second = await bedrock.converse(modelId=CLAUDE, messages=history, toolConfig=TOOLS)
    call_span, answer_span = traced.spans()
    traced.assert_settled()

    assert_bedrock(call_span, CLAUDE)
    assert jattr(call_span, "gen_ai.tool.definitions") == [SPEC]
    call = {"type": "tool_call", "id": use["toolUseId"], "name": "lookup"}
    call["arguments"] = {"query": PROMPT[:40]}
    assert jattr(call_span, "gen_ai.output.messages") == said([call], "tool_use")
    assert jattr(call_span, "langfuse.observation.output") == first["output"]["message"]
    assert attrs(call_span)["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert_converse_usage(call_span, first["usage"])

    # The second request carries the call and its result; it is answered in text.
    assert_bedrock(answer_span, CLAUDE)
    response = {"type": "tool_call_response", "id": use["toolUseId"]}
    response["response"] = [{"text": "11 m/s"}]
    assert jattr(answer_span, "gen_ai.input.messages") == [
        {"role": "user", "parts": [text_part(PROMPT)]},
        {"role": "assistant", "parts": [call]},
        {"role": "user", "parts": [response]},
    ]
    text = second["output"]["message"]["content"][0]["text"]
    assert jattr(answer_span, "langfuse.observation.output")["content"] == [{"text": text}]
    assert attrs(answer_span)["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert_converse_usage(answer_span, second["usage"])


async def test_converse_arn_model_id_and_cached_tokens(traced, bedrock, server):
    resp = await bedrock.converse(modelId=ARN, messages=MESSAGES)
    assert resp["usage"]["cacheReadInputTokens"] == 1024
    span = only(traced)
    a = assert_bedrock(span, ARN)
    # On the wire the ARN is percent-encoded: the span names it decoded.
    assert "arn%3Aaws%3Abedrock" in a["url.full"] and "%2Fus.anthropic" in a["url.full"]
    assert server.requests[-1]["path"] == f"/model/{ARN}/converse"
    assert jattr(span, "langfuse.observation.output") == assistant({"text": ANSWER})
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert_converse_usage(span, resp["usage"])


async def test_converse_stream_text_with_cached_tokens(traced, bedrock):
    resp = await bedrock.converse_stream(modelId=ARN, messages=MESSAGES, system=SYSTEM)
    events = [e async for e in resp["stream"]]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:-3])
    assert text == ANSWER
    span = only(traced)
    a = assert_bedrock(span, ARN, stream=True)
    assert a["llm_tracing.end_reason"] == "body_complete"
    assert jattr(span, "langfuse.observation.input") == {"system": SYSTEM, "messages": MESSAGES}
    assert jattr(span, "langfuse.observation.output") == assistant({"text": text})
    assert jattr(span, "gen_ai.output.messages") == said([text_part(text)], "end_turn")
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert_converse_usage(span, events[-1]["metadata"]["usage"])
    assert "llm_tracing.parse_error" not in a


async def test_converse_stream_tool_use(traced, bedrock):
    resp = await bedrock.converse_stream(modelId=CLAUDE, messages=MESSAGES, toolConfig=TOOLS)
    events = [e async for e in resp["stream"]]
    start = events[1]["contentBlockStart"]["start"]["toolUse"]
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events[2:-3]]
    assert len(pieces) > 1
    span = only(traced)
    a = assert_bedrock(span, CLAUDE, stream=True)
    args = json.loads("".join(pieces))
    use = {"toolUseId": start["toolUseId"], "name": "lookup", "input": args}
    assert jattr(span, "langfuse.observation.output") == assistant({"toolUse": use})
    call = {"type": "tool_call", "id": start["toolUseId"], "name": "lookup", "arguments": args}
    assert jattr(span, "gen_ai.output.messages") == said([call], "tool_use")
    assert jattr(span, "gen_ai.tool.definitions") == [SPEC]
    assert a["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert_converse_usage(span, events[-1]["metadata"]["usage"])


# -- InvokeModel with Anthropic bodies ----------------------------------------------------------


async def test_invoke_model_anthropic_body(traced, bedrock):
    resp = await bedrock.invoke_model(
        modelId=ARN, body=anthropic_body(system="Answer briefly.", temperature=0.5, top_k=40)
    )
    msg = json.loads(await resp["body"].read())
    span = only(traced)
    a = assert_bedrock(span, ARN)
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_k"] == 40
    assert a["gen_ai.request.max_tokens"] == 64
    assert jattr(span, "langfuse.observation.input") == {
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": PROMPT}],
    }
    assert jattr(span, "gen_ai.system_instructions") == [text_part("Answer briefly.")]
    assert a["gen_ai.response.id"] == msg["id"]
    assert a["gen_ai.response.model"] == msg["model"] == ARN
    assert jattr(span, "langfuse.observation.output") == assistant({"type": "text", "text": ANSWER})
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    usage = msg["usage"]
    cached = usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    assert a["gen_ai.usage.input_tokens"] == usage["input_tokens"] + cached
    assert a["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1024


async def test_invoke_model_with_response_stream(traced, bedrock):
    resp = await bedrock.invoke_model_with_response_stream(
        modelId=CLAUDE, body=anthropic_body(metadata={"mock_chunks": 3})
    )
    events = [json.loads(e["chunk"]["bytes"]) async for e in resp["body"]]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == ANSWER
    span = only(traced)
    a = assert_bedrock(span, CLAUDE, stream=True)
    assert a["gen_ai.response.id"] == events[0]["message"]["id"]
    assert jattr(span, "langfuse.observation.output") == assistant({"type": "text", "text": text})
    assert jattr(span, "gen_ai.output.messages") == said([text_part(text)], "end_turn")
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert a["gen_ai.usage.input_tokens"] == events[0]["message"]["usage"]["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == events[-2]["usage"]["output_tokens"]
    assert "llm_tracing.parse_error" not in a


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "Mock validation error"), (429, "Too many requests"), (500, "Mock internal")],
)
async def test_error_models(traced, bedrock, status, message):
    model = f"error-{status}"
    with pytest.raises(ClientError) as info:
        await bedrock.converse(modelId=model, messages=MESSAGES)
    with pytest.raises(ClientError):
        await bedrock.invoke_model_with_response_stream(modelId=model, body=anthropic_body())
    text = info.value.response["Error"]["Message"]
    assert text.startswith(message)
    spans = traced.spans()
    assert len(spans) == 2
    traced.assert_settled()
    for span in spans:
        streamed = "stream" in attrs(span)["url.full"]
        a = assert_bedrock(span, model, stream=streamed, answered=False)
        assert a["http.response.status_code"] == status
        assert a["langfuse.observation.status_message"] == text
        assert a["langfuse.observation.level"] == "ERROR"
        assert a["error.type"] == str(status)
        assert jattr(span, "langfuse.observation.output") == {"message": text}
        assert "gen_ai.usage.input_tokens" not in a
        assert "gen_ai.response.finish_reasons" not in a


@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
async def test_in_stream_exception(traced, bedrock, operation):
    if operation == "converse_stream":
        resp = await bedrock.converse_stream(modelId="stream-error", messages=MESSAGES)
        stream = resp["stream"]
    else:
        resp = await bedrock.invoke_model_with_response_stream(
            modelId="stream-error", body=anthropic_body()
        )
        stream = resp["body"]
    seen = []
    with pytest.raises(EventStreamError) as info:
        async for event in stream:
            seen.append(event)
    assert info.value.response["Error"]["Code"] == "throttlingException"
    span = only(traced)
    a = assert_bedrock(span, "stream-error", stream=True)
    assert a["http.response.status_code"] == 200  # the failure came inside the stream
    assert a["error.type"] == "throttlingException"
    assert a["langfuse.observation.level"] == "ERROR"
    assert a["langfuse.observation.status_message"] == info.value.response["Error"]["Message"]
    assert "langfuse.observation.output" not in a
    assert "gen_ai.response.finish_reasons" not in a


# -- litellm's bedrock provider (Converse under the hood) ----------------------------------------


async def test_litellm_bedrock(traced, server, litellm):
    common = {
        "messages": [{"role": "user", "content": PROMPT}],
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "aws_region_name": "us-east-1",
        "api_base": f"http://127.0.0.1:{server.port}",
        "temperature": 0.3,
        "max_tokens": 50,
    }
    done = await litellm.acompletion(model=f"bedrock/{CLAUDE}", **common)
    stream = await litellm.acompletion(model=f"bedrock/{CLAUDE}", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    json_span, stream_span = traced.spans()
    traced.assert_settled()
    for span, streamed in ((json_span, False), (stream_span, True)):
        a = assert_bedrock(span, CLAUDE, stream=streamed)
        assert a["gen_ai.request.temperature"] == 0.3
        assert a["gen_ai.request.max_tokens"] == 50
        assert jattr(span, "gen_ai.input.messages") == [
            {"role": "user", "parts": [text_part(PROMPT)]}
        ]
        assert jattr(span, "langfuse.observation.output")["content"] == [{"text": ANSWER}]
        assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert a["gen_ai.usage.output_tokens"] == done.usage.completion_tokens
        assert a["gen_ai.usage.input_tokens"] == done.usage.prompt_tokens


# -- Anthropic on Vertex AI --------------------------------------------------------------------


async def test_anthropic_vertex(traced, server):
    from anthropic import AsyncAnthropicVertex, DefaultAioHttpClient

    async with AsyncAnthropicVertex(
        region="us-east5",
        project_id="proj",
        access_token="token",
        base_url=f"http://127.0.0.1:{server.port}/v1",
        max_retries=0,
        http_client=DefaultAioHttpClient(),
    ) as client:
        messages = [{"role": "user", "content": PROMPT}]
        msg = await client.messages.create(
            model=VERTEX_CLAUDE, max_tokens=64, stop_sequences=["END"], messages=messages
        )
        async with client.messages.stream(
            model=VERTEX_CLAUDE, max_tokens=64, messages=messages
        ) as stream:
            text = await stream.get_final_text()
    assert msg.content[0].text == text == ANSWER
    assert server.requests[-1]["json"]["anthropic_version"]  # the SDK's; varies by release
    assert "model" not in server.requests[-1]["json"]
    json_span, stream_span = traced.spans()
    traced.assert_settled()
    for span, action in ((json_span, "rawPredict"), (stream_span, "streamRawPredict")):
        a = attrs(span)
        assert span.name == f"chat {VERTEX_CLAUDE}"
        assert a["url.full"].endswith(f"/publishers/anthropic/models/{VERTEX_CLAUDE}:{action}")
        assert a["gen_ai.provider.name"] == "gcp.vertex_ai"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == VERTEX_CLAUDE
        assert a.get("gen_ai.request.stream", False) is (action == "streamRawPredict")
        assert jattr(span, "langfuse.observation.input") == messages
        assert jattr(span, "langfuse.observation.output") == assistant(
            {"type": "text", "text": ANSWER}
        )
        assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert a["gen_ai.usage.input_tokens"] == msg.usage.input_tokens
        assert a["gen_ai.usage.output_tokens"] == msg.usage.output_tokens
    assert attrs(json_span)["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs(stream_span)["gen_ai.response.time_to_first_chunk"] > 0


async def test_anthropic_vertex_error_and_count_tokens(llm_tracing, server):
    base = f"http://127.0.0.1:{server.port}/v1/projects/p/locations/global/publishers/anthropic"
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 8, "messages": MESSAGES}
    async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as session:
        async with session.post(f"{base}/models/error-429:rawPredict", json=body) as resp:
            assert resp.status == 429
            error = (await resp.json())["error"]
        # count-tokens:rawPredict generates nothing: a plain HTTP span, not a generation.
        async with session.post(f"{base}/models/count-tokens:rawPredict", json=body) as resp:
            await resp.read()
    error_span, count_span = llm_tracing.spans()
    llm_tracing.assert_settled()
    a = attrs(error_span)
    assert error_span.name == "chat error-429"
    assert a["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert a["langfuse.observation.status_message"] == error["message"]
    assert a["langfuse.observation.level"] == "ERROR"
    assert "gen_ai.operation.name" not in attrs(count_span)
    assert count_span.name == "POST"


# -- broken streams and bodies from the mock ----------------------------------------------------


async def _bad_crc_outcome(client: Any, operation: str) -> tuple[list[Any], str, str]:
    """What the caller sees: the events before the bad frame, then botocore's exception."""
    if operation == "converse_stream":
        stream = (await client.converse_stream(modelId="bad-crc", messages=MESSAGES))["stream"]
    else:
        resp = await client.invoke_model_with_response_stream(
            modelId="bad-crc", body=anthropic_body()
        )
        stream = resp["body"]
    seen: list[Any] = []
    try:
        async for event in stream:
            seen.append(event)
    except Exception as exc:
        # A caller that gives up on a stream closes it; that is what ends the span.
        stream.close()
        return seen, type(exc).__name__, str(exc)
    raise AssertionError("the bad frame was accepted")


@pytest.fixture
async def untraced_bad_crc(server: MockLLMServer) -> dict[str, Any]:
    """The bad-CRC outcomes with no tracing at all (requested before the instrumentor is on)."""
    async with _client(server) as client:
        return {
            op: await _bad_crc_outcome(client, op)
            for op in ("converse_stream", "invoke_model_with_response_stream")
        }


@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
async def test_bad_crc_frame(untraced_bad_crc, traced, bedrock, operation):
    outcome = await _bad_crc_outcome(bedrock, operation)
    assert outcome == untraced_bad_crc[operation]  # tracing changed nothing the caller sees
    assert outcome[1] == "ChecksumMismatch"
    span = only(traced)  # the untraced run made no span anywhere
    a = assert_bedrock(span, "bad-crc", stream=True, answered=False)  # the bad frame was a delta
    assert a["llm_tracing.end_reason"] == "released"
    assert a["llm_tracing.parse_error"] == "response: eventstream frame rejected: ChecksumMismatch"
    assert "gen_ai.response.finish_reasons" not in a
    if operation == "converse_stream":  # messageStart came before the bad frame
        assert jattr(span, "langfuse.observation.output") == {"role": "assistant", "content": []}
    else:  # message_start and content_block_start did
        assert a["gen_ai.response.id"] == "msg_bdrk_mock_1"
        assert a["gen_ai.usage.input_tokens"] > 0
        assert jattr(span, "langfuse.observation.output") == assistant({"type": "text", "text": ""})


async def test_truncated_eventstream(traced, bedrock):
    resp = await bedrock.converse_stream(modelId="truncated-sse", messages=MESSAGES)
    # botocore keeps the half frame in its buffer and ends quietly.
    events = [e async for e in resp["stream"]]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:])
    assert len(events) == 3 and text
    span = only(traced)
    a = assert_bedrock(span, "truncated-sse", stream=True)
    assert a["llm_tracing.end_reason"] == "body_complete"
    assert a["llm_tracing.parse_error"] == "response: event stream cut off mid-event"
    assert jattr(span, "langfuse.observation.output") == assistant({"text": text})
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.usage.input_tokens" not in a  # the metadata frame never came
    assert jattr(span, "langfuse.observation.input") == MESSAGES


async def test_invalid_json(traced, bedrock):
    resp = await bedrock.converse(modelId="invalid-json", messages=MESSAGES)
    assert "output" not in resp  # botocore finds nothing in it either
    span = only(traced)
    a = attrs(span)
    assert span.name == "chat invalid-json"
    assert a["gen_ai.request.model"] == "invalid-json"
    assert a["gen_ai.provider.name"] == "aws.bedrock"
    assert a["llm_tracing.parse_error"] == "response: not JSON"
    assert "langfuse.observation.output" not in a
    assert "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a
    assert jattr(span, "langfuse.observation.input") == MESSAGES  # the request side is intact


# -- odd bodies, other model families: a tiny app ------------------------------------------------


def _chunk(payload: Any) -> bytes:
    """An InvokeModelWithResponseStream frame carrying ``payload`` (JSON or raw text)."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return event_frame("chunk", {"bytes": base64.b64encode(raw.encode()).decode()})


def _raw(event: str, payload: bytes) -> bytes:
    headers = {":event-type": event, ":content-type": "application/json"}
    return encode_message({**headers, ":message-type": "event"}, payload)


# Stream chunks as the model family writes them (JSON text, base64-wrapped by _chunk).
_ANTHROPIC_OK = [
    '{"type": "message_start", "message": {"id": "msg_odd", "usage": {"input_tokens": 3}}}',
    '{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "ok"}}',
    '{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, '
    '"usage": {"output_tokens": 1}}',
]
_NOVA_STREAM = [
    '{"messageStart": {"role": "assistant"}}',
    '{"contentBlockDelta": {"delta": {"reasoningContent": {"text": "Think."}}}}',
    '{"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 1}}',
    '{"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 1}}',
    '{"messageStop": {"stopReason": "end_turn"}}',
    '{"metadata": {"usage": {"inputTokens": 5, "outputTokens": 2}}, '
    '"amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 2}}',
]
_LLAMA_STREAM = [
    '{"generation": "Hi", "prompt_token_count": 10, "generation_token_count": 1}',
    '{"generation": " there", "prompt_token_count": null, "stop_reason": "stop", '
    '"amazon-bedrock-invocationMetrics": {"inputTokenCount": 10, "outputTokenCount": 2}}',
]
# model -> a JSON body, or the eventstream frames of a stream ("{model}/stream")
ODD: dict[str, Any] = {
    "wrong-types": {
        "output": {"message": {"role": 5, "content": "nope"}},
        "stopReason": 7,
        "usage": {"inputTokens": "x", "outputTokens": None},
    },
    "odd-blocks": {
        "output": {"message": {"content": [5, {"toolUse": "x"}, {"text": 3}, {"image": {}}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 2},
    },
    "wrong-anthropic": {"type": "message", "content": "x", "usage": [], "stop_reason": 5},
    "wrong-converse-stream": [
        _raw("messageStart", b"[]"),
        _raw("contentBlockStart", b'{"start": {"toolUse": "x"}}'),
        _raw("contentBlockDelta", b'{"contentBlockIndex": "0", "delta": 5}'),
        _raw("contentBlockDelta", b'{"delta": {"text": 5, "toolUse": "x", "reasoningContent": 1}}'),
        _raw("contentBlockDelta", b'{"contentBlockIndex": 0, "delta": {"text": "ok"}}'),
        _raw("messageStop", b'{"stopReason": 5}'),
        _raw("metadata", b'{"usage": "x"}'),
        _raw("somethingNew", b"not json"),
    ],
    "wrong-chunks": [
        event_frame("chunk", {"bytes": 5}),
        event_frame("chunk", {"bytes": "!!!"}),
        _chunk("not json"),
        _chunk("[1, 2]"),
        *map(_chunk, _ANTHROPIC_OK),
    ],
    "amazon.nova-lite-v1:0": {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6},
    },
    "amazon.nova-lite-v1:0/stream": [*map(_chunk, _NOVA_STREAM)],
    "meta.llama3-8b-instruct-v1:0": {
        "generation": "Hi there",
        "prompt_token_count": 10,
        "generation_token_count": 3,
        "stop_reason": "stop",
    },
    "meta.llama3-8b-instruct-v1:0/stream": [*map(_chunk, _LLAMA_STREAM)],
}


@pytest.fixture
async def odd_server() -> AsyncIterator[TestServer]:
    async def handle(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        streamed = request.match_info["op"] in ("converse-stream", "invoke-with-response-stream")
        out = ODD.get(f"{model}/stream", ODD[model]) if streamed else ODD[model]
        if isinstance(out, dict):
            return web.json_response(out)
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await resp.prepare(request)
        for frame in out:
            await resp.write(frame)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/model/{model}/{op}", handle)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


async def _post(tracing: TracingFixture, srv: TestServer, model: str, op: str, body: Any) -> bytes:
    url = srv.make_url(f"/model/{model}/{op}")
    async with aiohttp.ClientSession(trace_configs=[tracing.trace_config]) as session:
        async with session.post(url, json=body) as resp:
            return await resp.read()


async def test_wrong_json_types(llm_tracing, odd_server):
    wrong_request = {
        "messages": "x",
        "system": 5,
        "inferenceConfig": [],
        "toolConfig": {"tools": 1},
    }
    wrong_anthropic = {"anthropic_version": 1, "messages": {"a": 1}, "system": 5, "top_k": [1]}
    await _post(llm_tracing, odd_server, "wrong-types", "converse", wrong_request)
    await _post(llm_tracing, odd_server, "odd-blocks", "converse", [1, 2])
    await _post(llm_tracing, odd_server, "wrong-anthropic", "invoke", wrong_anthropic)
    await _post(llm_tracing, odd_server, "wrong-converse-stream", "converse-stream", "x")
    await _post(llm_tracing, odd_server, "wrong-chunks", "invoke-with-response-stream", {})
    spans = {s.name.removeprefix("chat "): s for s in llm_tracing.spans()}
    assert len(spans) == 5
    llm_tracing.assert_settled()  # no adapter tripped: no internal error
    for model, span in spans.items():
        a = attrs(span)
        assert a["gen_ai.request.model"] == model  # from the path, whatever the body
        assert "in the adapter" not in a.get("llm_tracing.parse_error", "")
        assert "langfuse.observation.model.parameters" not in a

    a = attrs(spans["wrong-types"])
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert "langfuse.observation.output" not in a and "gen_ai.usage.input_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a

    span = spans["odd-blocks"]
    assert jattr(span, "gen_ai.output.messages")[0]["parts"] == [
        {"type": "tool_call", "id": None, "name": None, "arguments": None},
        {"type": "text"},
        {"type": "image"},
    ]
    assert attrs(span)["gen_ai.usage.input_tokens"] == 3
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("end_turn",)

    a = attrs(spans["wrong-anthropic"])
    assert a["llm_tracing.parse_error"] == "response: unrecognised JSON shape"
    assert "langfuse.observation.output" not in a

    span = spans["wrong-converse-stream"]
    assert jattr(span, "langfuse.observation.output") == assistant({"text": "ok"})
    a = attrs(span)
    assert "gen_ai.response.finish_reasons" not in a and "gen_ai.usage.input_tokens" not in a
    assert "llm_tracing.parse_error" not in a

    span = spans["wrong-chunks"]  # the undecodable chunks are skipped; the Anthropic ones read
    assert jattr(span, "langfuse.observation.output") == assistant({"type": "text", "text": "ok"})
    a = attrs(span)
    assert a["gen_ai.response.id"] == "msg_odd"
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (3, 1)


async def test_other_model_families(llm_tracing, odd_server):
    nova, llama = "amazon.nova-lite-v1:0", "meta.llama3-8b-instruct-v1:0"
    nova_body = {
        "schemaVersion": "messages-v1",
        "messages": MESSAGES,
        "system": SYSTEM,
        "inferenceConfig": {"maxTokens": 32, "temperature": 0.7, "topK": 20},
    }
    llama_body = {"prompt": PROMPT, "max_gen_len": 64, "temperature": 0.5, "top_p": 0.9}
    for model, body in ((nova, nova_body), (llama, llama_body)):
        for op in ("invoke", "invoke-with-response-stream"):
            await _post(llm_tracing, odd_server, model, op, body)
    nova_json, nova_stream, llama_json, llama_stream = llm_tracing.spans()
    llm_tracing.assert_settled()

    for span, streamed in ((nova_json, False), (nova_stream, True)):
        a = assert_bedrock(span, nova, stream=streamed)
        assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.top_k"]) == (32, 20)
        assert jattr(span, "gen_ai.system_instructions") == [text_part("Answer briefly.")]
        assert jattr(span, "gen_ai.input.messages") == [
            {"role": "user", "parts": [text_part(PROMPT)]}
        ]
        assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert a["gen_ai.usage.input_tokens"] == 5
    assert jattr(nova_json, "langfuse.observation.output")["content"] == [{"text": "Hello"}]
    assert jattr(nova_stream, "gen_ai.output.messages")[0]["parts"] == [
        {"type": "reasoning", "content": "Think."},
        text_part("Hello"),
    ]
    assert attrs(nova_stream)["gen_ai.usage.output_tokens"] == 2

    for span, streamed in ((llama_json, False), (llama_stream, True)):
        a = assert_bedrock(span, llama, stream=streamed)
        assert a["gen_ai.request.max_tokens"] == 64
        assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"]) == (0.5, 0.9)
        assert a["langfuse.observation.input"] == PROMPT  # a string is recorded as it is
        assert jattr(span, "langfuse.observation.output") == {
            "role": "assistant",
            "content": "Hi there",
        }
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        assert a["gen_ai.usage.input_tokens"] == 10
    assert attrs(llama_json)["gen_ai.usage.output_tokens"] == 3
    assert attrs(llama_stream)["gen_ai.usage.output_tokens"] == 2
