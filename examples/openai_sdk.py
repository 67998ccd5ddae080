"""The official ``openai`` SDK over aiohttp, traced: a chat completion and a streamed one.

    python examples/openai_sdk.py

The SDK's aiohttp transport takes a session factory, so the trace config goes where aiohttp
wants it. Talks to ``OPENAI_BASE_URL`` (with ``OPENAI_API_KEY``) when set, else to an embedded
mock LLM. Spans go to Langfuse or an OTLP collector when ``LANGFUSE_*`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` are set (try ``aiohttp-llm-tracing receive``), else to stdout.
"""

from __future__ import annotations

import asyncio
import os

from openai import AsyncOpenAI

from aiohttp_llm_tracing import openai_http_client, setup_tracing, trace_attributes
from aiohttp_llm_tracing.mock_llm import MockLLMServer

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def exporter_from_env() -> str:
    """Langfuse or OTLP when configured (``auto`` picks), else print spans to stdout."""
    configured = os.environ.get("LANGFUSE_SECRET_KEY") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "auto" if configured else "console"


def traced_openai(base_url: str, api_key: str) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` over the SDK's own aiohttp client, its session traced."""
    return AsyncOpenAI(base_url=base_url, api_key=api_key, http_client=openai_http_client())


async def chat_and_stream(client: AsyncOpenAI) -> None:
    """A plain chat, then a stream read to the end (usage needs ``include_usage``)."""
    messages = [{"role": "user", "content": "Name three French cheeses"}]
    with trace_attributes(session_id="openai-sdk-example", user_id="example-user"):
        completion = await client.chat.completions.create(model=MODEL, messages=messages)
        print("chat:  ", completion.choices[0].message.content)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        print("stream:", "".join(parts))


async def run(base_url: str, api_key: str) -> None:
    provider = setup_tracing(exporter=exporter_from_env())
    client = traced_openai(base_url, api_key)
    try:
        await chat_and_stream(client)
    finally:
        await client.close()
        provider.shutdown()


async def main() -> None:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:  # e.g. https://api.openai.com/v1 for the real thing
        await run(base_url, os.environ.get("OPENAI_API_KEY", "none"))
        return
    async with MockLLMServer() as mock:
        print(f"OPENAI_BASE_URL is not set: using an embedded mock LLM at {mock.base_url}")
        await run(mock.base_url, "mock-key")


if __name__ == "__main__":
    asyncio.run(main())
