"""The mock's Bedrock Runtime shapes, checked with the real clients: aiobotocore (botocore's own
parsers and eventstream decoder), litellm's bedrock provider and anthropic's Bedrock client."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError
from yarl import URL

from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.mock_llm._eventstream import (
    CONTENT_TYPE,
    corrupt_crc,
    encode_message,
    event_frame,
    exception_frame,
)

ARN = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-5-sonnet-cached"
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROMPT = "What is the airspeed velocity of an unladen swallow, roughly?"
ANSWER = f"Mock answer to: {PROMPT[:40]}"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "lookup",
                "inputSchema": {"json": {"type": "object", "properties": {"query": {}}}},
            }
        }
    ]
}


def anthropic_body(**extra: Any) -> str:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64}
    return json.dumps({**body, "messages": [{"role": "user", "content": PROMPT}], **extra})


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
async def client(server: MockLLMServer) -> AsyncIterator[Any]:
    # total_max_attempts=1: botocore's max_attempts counts *retries*, so max_attempts=1 would
    # still retry a 429/500 once, after a real, jittered back-off sleep.
    config = AioConfig(retries={"total_max_attempts": 1})
    async with get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=config,
    ) as c:
        yield c


def decode(data: bytes) -> list[Any]:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return list(buf)


# --- the encoder ---------------------------------------------------------------------------


def test_encoder_round_trips_through_botocore() -> None:
    headers = {":event-type": "chunk", ":message-type": "event", "x-unicode": "héllo"}
    frames = [encode_message(headers, b'{"a":1}'), encode_message({"k": "v"}), b""]
    stream = b"".join(frames)
    buf = EventStreamBuffer()
    got = []
    for i in range(len(stream)):  # one byte at a time: frames may split anywhere on the wire
        buf.add_data(stream[i : i + 1])
        got += list(buf)
    assert [m.headers for m in got] == [headers, {"k": "v"}]
    assert [m.payload for m in got] == [b'{"a":1}', b""]
    (total, head_len) = struct.unpack_from(">II", frames[0])
    assert total == len(frames[0]) and got[0].prelude.headers_length == head_len


def test_event_and_exception_frames() -> None:
    (ev,) = decode(event_frame("messageStop", {"stopReason": "end_turn"}))
    assert ev.headers == {
        ":event-type": "messageStop",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(ev.payload) == {"stopReason": "end_turn"}
    (exc,) = decode(exception_frame("throttlingException", "slow down"))
    assert exc.headers[":message-type"] == "exception"
    assert exc.to_response_dict()["status_code"] == 400  # what makes botocore raise


@pytest.mark.parametrize("which", ["message", "prelude"])
def test_bad_crc_frame_is_rejected_by_botocore(which: str) -> None:
    frame = event_frame("chunk", {"bytes": ""})
    bad = corrupt_crc(frame, which=which)  # type: ignore[arg-type]
    assert len(bad) == len(frame) and bad != frame
    with pytest.raises(ChecksumMismatch):
        decode(bad)


def test_header_limits() -> None:
    with pytest.raises(ValueError):
        encode_message({"": "x"})
    with pytest.raises(ValueError):
        encode_message({"x" * 256: "x"})
    with pytest.raises(ValueError):
        encode_message({"x": "v" * 0x10000})


# --- Converse ------------------------------------------------------------------------------


async def test_converse_text(client: Any, server: MockLLMServer) -> None:
    resp = await client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert resp["output"]["message"] == {"role": "assistant", "content": [{"text": ANSWER}]}
    assert resp["stopReason"] == "end_turn"
    usage = resp["usage"]
    assert usage["cacheReadInputTokens"] == usage["cacheWriteInputTokens"] == 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] > 0
    assert resp["metrics"]["latencyMs"] > 0
    assert resp["ResponseMetadata"]["RequestId"]
    assert server.requests[-1]["path"] == f"/model/{CLAUDE}/converse"


async def test_converse_tool_use_then_text_after_the_result(client: Any) -> None:
    resp = await client.converse(modelId=CLAUDE, messages=MESSAGES, toolConfig=TOOLS)
    (block,) = resp["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "lookup" and use["input"] == {"query": PROMPT[:40]}
    assert resp["stopReason"] == "tool_use"
    # The tool result goes back as a user turn; that one must be answered in text.
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "11 m/s"}]}}
    history = [
        *MESSAGES,
        resp["output"]["message"],
        {"role": "user", "content": [result]},
    ]
    again = await client.converse(modelId=CLAUDE, messages=history, toolConfig=TOOLS)
    assert again["stopReason"] == "end_turn"
    assert "text" in again["output"]["message"]["content"][0]


async def test_converse_arn_model_id_with_cache_tokens(client: Any, server: MockLLMServer) -> None:
    resp = await client.converse(modelId=ARN, messages=MESSAGES)
    usage = resp["usage"]
    assert usage["cacheReadInputTokens"] == 1024 and usage["cacheWriteInputTokens"] == 256
    parts = ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    assert usage["totalTokens"] == sum(usage[k] for k in parts)
    # botocore sends the ARN's ':' and '/' percent-encoded; the route decodes it whole.
    assert server.requests[-1]["path"] == f"/model/{ARN}/converse"


async def test_converse_stream_matches_the_json_answer(client: Any) -> None:
    whole = await client.converse(modelId=ARN, messages=MESSAGES)
    resp = await client.converse_stream(modelId=ARN, messages=MESSAGES)
    events = [e async for e in resp["stream"]]
    kinds = [next(iter(e)) for e in events]
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * 8,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:9])
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    assert events[-1]["metadata"]["metrics"]["latencyMs"] > 0


async def test_converse_stream_tool_use(client: Any) -> None:
    resp = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES, toolConfig=TOOLS)
    events = [e async for e in resp["stream"]]
    start = events[1]["contentBlockStart"]
    assert start["contentBlockIndex"] == 0 and start["start"]["toolUse"]["name"] == "lookup"
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert json.loads("".join(d["toolUse"]["input"] for d in deltas)) == {"query": PROMPT[:40]}
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


async def test_converse_stream_chunk_count_from_query(client: Any, server: MockLLMServer) -> None:
    # Converse bodies have no free-form field, so ?mock_chunks=N it is; a botocore hook adds it.
    def add_query(request: Any, **kwargs: Any) -> None:
        request.url += "?mock_chunks=3"

    client.meta.events.register("before-sign.bedrock-runtime.ConverseStream", add_query)
    resp = await client.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    events = [e async for e in resp["stream"]]
    assert sum("contentBlockDelta" in e for e in events) == 3
    assert server.requests[-1]["query"] == {"mock_chunks": "3"}


# --- InvokeModel (Anthropic Messages bodies) -----------------------------------------------


async def test_invoke_model_anthropic_body(client: Any) -> None:
    resp = await client.invoke_model(modelId=ARN, body=anthropic_body())
    msg = json.loads(await resp["body"].read())
    assert msg["type"] == "message" and msg["model"] == ARN
    assert msg["content"] == [{"type": "text", "text": ANSWER}]
    assert msg["stop_reason"] == "end_turn"
    assert msg["usage"]["cache_read_input_tokens"] == 1024
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-output-token-count"] == str(msg["usage"]["output_tokens"])
    assert resp["contentType"] == "application/json"


async def test_invoke_model_tool_use(client: Any) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    resp = await client.invoke_model(modelId=CLAUDE, body=anthropic_body(tools=tools))
    msg = json.loads(await resp["body"].read())
    assert msg["stop_reason"] == "tool_use"
    assert msg["content"][0]["type"] == "tool_use" and msg["content"][0]["name"] == "lookup"


async def test_invoke_model_with_response_stream(client: Any) -> None:
    plain = await client.invoke_model(modelId=CLAUDE, body=anthropic_body())
    whole = json.loads(await plain["body"].read())
    resp = await client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=anthropic_body(metadata={"mock_chunks": 3})
    )
    # botocore already base64-decodes PayloadPart.bytes: each is one Anthropic event's JSON.
    events = [json.loads(e["chunk"]["bytes"]) async for e in resp["body"]]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == whole["content"][0]["text"]
    assert events[-2]["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0


# --- errors and broken streams ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "ValidationException"), (429, "ThrottlingException"), (500, "InternalServerException")],
)
async def test_error_models(client: Any, server: MockLLMServer, status: int, code: str) -> None:
    model = f"error-{status}"
    for call in (
        lambda: client.converse(modelId=model, messages=MESSAGES),
        lambda: client.invoke_model_with_response_stream(modelId=model, body=anthropic_body()),
    ):
        with pytest.raises(ClientError) as info:
            await call()
        err = info.value.response
        assert err["Error"]["Code"] == code and err["Error"]["Message"]
        assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    assert len(server.requests) == 2  # no retries


async def test_in_stream_exception(client: Any) -> None:
    resp = await client.converse_stream(modelId="stream-error", messages=MESSAGES)
    seen: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as info:
        async for event in resp["stream"]:
            seen.append(event)
    assert info.value.response["Error"]["Code"] == "throttlingException"
    assert [next(iter(e)) for e in seen] == ["messageStart", "contentBlockDelta"]


async def test_bad_crc_stream(client: Any) -> None:
    resp = await client.invoke_model_with_response_stream(modelId="bad-crc", body=anthropic_body())
    seen: list[dict[str, Any]] = []
    with pytest.raises(ChecksumMismatch):
        async for event in resp["body"]:
            seen.append(event)
    assert len(seen) == 2  # message_start and content_block_start decoded before the bad one


async def test_truncated_stream_drops_the_partial_frame(client: Any) -> None:
    resp = await client.converse_stream(modelId="truncated-sse", messages=MESSAGES)
    # botocore keeps the half frame in its buffer and ends quietly: no error, three events.
    events = [e async for e in resp["stream"]]
    assert len(events) == 3


# --- raw paths: encoded and unencoded ARNs ---------------------------------------------------


@pytest.mark.parametrize("encoded", [True, False])
async def test_arn_paths_raw(server: MockLLMServer, encoded: bool) -> None:
    model = ARN.replace(":", "%3A").replace("/", "%2F") if encoded else ARN
    url = URL(f"http://127.0.0.1:{server.port}/model/{model}/invoke", encoded=True)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=anthropic_body()) as resp:
            assert resp.status == 200
            assert (await resp.json())["model"] == ARN
        stream_url = URL(str(url).replace("/invoke", "/converse-stream"), encoded=True)
        async with session.post(stream_url, json={"messages": MESSAGES}) as resp:
            assert resp.headers["Content-Type"] == CONTENT_TYPE
            frames = decode(await resp.read())
    assert frames[0].headers[":event-type"] == "messageStart"
    assert json.loads(frames[-1].payload)["usage"]["cacheReadInputTokens"] == 1024


# --- other clients ---------------------------------------------------------------------------


# litellm's import and response models trip pydantic's own deprecation and typing warnings.
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
async def test_litellm_bedrock_converse(server: MockLLMServer, litellm: Any) -> None:
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport

    kwargs: dict[str, Any] = {
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "aws_region_name": "us-east-1",
        "api_base": f"http://127.0.0.1:{server.port}",
    }
    messages = [{"role": "user", "content": PROMPT}]
    resp = await litellm.acompletion(model=f"bedrock/{CLAUDE}", messages=messages, **kwargs)
    assert resp.choices[0].message.content == ANSWER
    assert resp.usage.total_tokens > 0
    assert server.requests[-1]["path"] == f"/model/{CLAUDE}/converse"
    stream = await litellm.acompletion(
        model=f"bedrock/{CLAUDE}", messages=messages, stream=True, **kwargs
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == ANSWER
    assert server.requests[-1]["path"] == f"/model/{CLAUDE}/converse-stream"
    # Both calls went through litellm's default httpx client whose transport is aiohttp.
    transports = [
        getattr(getattr(h, "_client", None), "_transport", None)
        for h in litellm.in_memory_llm_clients_cache.cache_dict.values()
    ]
    assert any(isinstance(t, LiteLLMAiohttpTransport) for t in transports)


async def test_anthropic_bedrock_client(server: MockLLMServer) -> None:
    anthropic = pytest.importorskip("anthropic")
    async with anthropic.AsyncAnthropicBedrock(
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="secret",
        aws_region="us-east-1",
        base_url=f"http://127.0.0.1:{server.port}",
        max_retries=0,
    ) as client:
        messages = [{"role": "user", "content": PROMPT}]
        msg = await client.messages.create(model=ARN, max_tokens=64, messages=messages)
        assert msg.content[0].text == ANSWER and msg.usage.cache_read_input_tokens == 1024
        async with client.messages.stream(model=CLAUDE, max_tokens=64, messages=messages) as s:
            assert await s.get_final_text() == ANSWER
    assert server.requests[-1]["path"] == f"/model/{CLAUDE}/invoke-with-response-stream"


async def test_invoke_stream_frames_on_the_wire(server: MockLLMServer) -> None:
    # What botocore hands over already decoded is base64 inside a JSON payload on the wire,
    # padded with Bedrock's throwaway "p" field.
    url = f"http://127.0.0.1:{server.port}/model/{CLAUDE}/invoke-with-response-stream"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=anthropic_body()) as resp:
            frames = decode(await resp.read())
    assert {f.headers[":event-type"] for f in frames} == {"chunk"}
    payloads = [json.loads(f.payload) for f in frames]
    assert all(set(p) == {"bytes", "p"} for p in payloads)
    first = json.loads(base64.b64decode(payloads[0]["bytes"]))
    assert first["type"] == "message_start" and first["message"]["model"] == CLAUDE
