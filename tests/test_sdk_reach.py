"""The real SDKs, each reached through the instrumentor alone: no trace config is passed
anywhere. One JSON call and one streamed call per SDK against the mock, which speaks each
provider's wire shape; each call is one span, ended once, and the registry is empty after.

Every shape here is parsed, so each span is a complete generation: model, input, output and
usage (the adapter tests check each API's every field).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture

USER = "Explain distributed tracing for LLM calls in one line"
ANSWER = "Mock answer to: " + USER[:40]
MESSAGES = [{"role": "user", "content": USER}]

pytestmark = [
    # litellm's import and response models trip pydantic's own deprecation warnings.
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


def two_spans(tracing: TracingFixture) -> tuple[ReadableSpan, ReadableSpan]:
    spans = tracing.spans()
    assert len(spans) == 2, [s.name for s in spans]
    tracing.assert_settled()
    return spans[0], spans[1]


def assert_generation(span: ReadableSpan, name: str, *, output: str = ANSWER) -> None:
    a = dict(span.attributes or {})
    assert span.name == name
    assert a["langfuse.observation.type"] == "generation"
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert output in a["langfuse.observation.output"]
    assert USER in a["langfuse.observation.input"]


def assert_http(span: ReadableSpan, path: str) -> None:
    """A plain HTTP span: what the reach issue promises before the provider adapters land."""
    a = dict(span.attributes or {})
    assert span.name == "POST"
    assert a["http.response.status_code"] == 200
    assert path in a["url.full"]
    assert a["llm_tracing.end_reason"] in {"response", "body_complete"}


# --- openai, anthropic, groq, together: opt-in aiohttp through DefaultAioHttpClient ----------


async def test_openai(traced, server):
    from openai import AsyncOpenAI, DefaultAioHttpClient

    async with AsyncOpenAI(
        base_url=server.base_url, api_key="k", max_retries=0, http_client=DefaultAioHttpClient()
    ) as client:
        done = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "chat gpt-4o-mini")


async def test_anthropic(traced, server):
    from anthropic import AsyncAnthropic, DefaultAioHttpClient

    async with AsyncAnthropic(
        base_url=f"http://127.0.0.1:{server.port}",
        api_key="k",
        max_retries=0,
        http_client=DefaultAioHttpClient(),
    ) as client:
        msg = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
        )
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
    assert msg.content[0].text == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "chat claude-sonnet-4-5")


@pytest.mark.parametrize("sdk", ["groq", "together"])
async def test_openai_compatible_sdks(traced, server, sdk):
    module = pytest.importorskip(sdk)
    cls = module.AsyncGroq if sdk == "groq" else module.AsyncTogether
    # groq's paths are /openai/v1/...; together 1.x-2.x joins them to a base ending in /v1,
    # together 3.x puts /v1 in the path itself.
    prefixed = sdk == "groq" or int(module.__version__.split(".")[0]) >= 3
    base = f"http://127.0.0.1:{server.port}" + ("" if prefixed else "/v1")
    async with cls(
        base_url=base, api_key="k", max_retries=0, http_client=module.DefaultAioHttpClient()
    ) as client:
        done = await client.chat.completions.create(model="llama-3.3-70b", messages=MESSAGES)
        stream = await client.chat.completions.create(
            model="llama-3.3-70b", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    assert [s.name for s in two_spans(traced)] == ["chat llama-3.3-70b"] * 2


# --- litellm: aiohttp by default, its own sessions -------------------------------------------


async def test_litellm_openai(traced, server, litellm):
    common = {"messages": MESSAGES, "api_key": "k", "api_base": server.base_url}
    done = await litellm.acompletion(model="openai/gpt-4o-mini", **common)
    stream = await litellm.acompletion(
        model="openai/gpt-4o-mini", stream=True, stream_options={"include_usage": True}, **common
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "chat gpt-4o-mini")


async def test_litellm_anthropic(traced, server, litellm):
    common = {
        "messages": MESSAGES,
        "api_key": "k",
        "api_base": f"http://127.0.0.1:{server.port}",
        "max_tokens": 64,
    }
    done = await litellm.acompletion(model="anthropic/claude-sonnet-4-5", **common)
    stream = await litellm.acompletion(model="anthropic/claude-sonnet-4-5", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert done.choices[0].message.content == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "chat claude-sonnet-4-5")


# --- cohere: aiohttp when httpx_aiohttp is installed ------------------------------------------


async def test_cohere(traced, server):
    import cohere

    client = cohere.AsyncClientV2(
        api_key="k", base_url=f"http://127.0.0.1:{server.port}", max_retries=0
    )
    done = await client.chat(model="command-a-03-2025", messages=MESSAGES)
    parts = [
        e.delta.message.content.text
        async for e in client.chat_stream(model="command-a-03-2025", messages=MESSAGES)
        if e.type == "content-delta"
    ]
    await client._client_wrapper.httpx_client.httpx_client.aclose()
    assert done.message.content[0].text == "".join(parts) == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "chat command-a-03-2025")


# --- google-genai: aiohttp automatically, a ClientSession subclass per session ----------------


async def test_google_genai(traced, server):
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=f"http://127.0.0.1:{server.port}")
    )
    try:
        done = await client.aio.models.generate_content(model="gemini-2.0-flash", contents=USER)
        chunks = await client.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents=USER
        )
        text = "".join([c.text or "" async for c in chunks])
    finally:
        await client.aio.aclose()
    assert done.text == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "generate_content gemini-2.0-flash")
        assert span.attributes["gen_ai.provider.name"] == "gcp.gemini"


async def test_litellm_gemini(traced, server, litellm):
    common = {"messages": MESSAGES, "api_key": "k", "api_base": f"http://127.0.0.1:{server.port}"}
    done = await litellm.acompletion(model="gemini/gemini-2.0-flash", **common)
    stream = await litellm.acompletion(model="gemini/gemini-2.0-flash", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, "generate_content gemini-2.0-flash")


# --- aiobotocore (Bedrock runtime): always aiohttp, its own sessions --------------------------

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"


async def test_aiobotocore_bedrock(traced, server):
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as client:
        messages = [{"role": "user", "content": [{"text": USER}]}]
        done = await client.converse(modelId=CLAUDE, messages=messages)
        resp = await client.converse_stream(modelId=CLAUDE, messages=messages)
        text = "".join(
            [
                e["contentBlockDelta"]["delta"].get("text", "")
                async for e in resp["stream"]
                if "contentBlockDelta" in e
            ]
        )
    assert done["output"]["message"]["content"][0]["text"] == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, f"chat {CLAUDE}")
        assert span.attributes["gen_ai.provider.name"] == "aws.bedrock"


async def test_litellm_bedrock(traced, server, litellm):
    common = {
        "messages": MESSAGES,
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "aws_region_name": "us-east-1",
        "api_base": f"http://127.0.0.1:{server.port}",
    }
    done = await litellm.acompletion(model=f"bedrock/{CLAUDE}", **common)
    stream = await litellm.acompletion(model=f"bedrock/{CLAUDE}", stream=True, **common)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert done.choices[0].message.content == text == ANSWER
    for span in two_spans(traced):
        assert_generation(span, f"chat {CLAUDE}")
