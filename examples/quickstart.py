"""Quickstart: trace every request of an aiohttp session; LLM calls become generation spans.

    python examples/quickstart.py

Talks to ``OPENAI_BASE_URL`` (with ``OPENAI_API_KEY``) when set, else to an embedded mock LLM
server, so it runs offline. The spans are printed by OpenTelemetry's ``ConsoleSpanExporter``;
use ``setup_tracing()`` without arguments to send them to Langfuse or an OTLP collector instead.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp

from aiohttp_llm_tracing import create_trace_config, setup_tracing
from aiohttp_llm_tracing.mock_llm import MockLLMServer

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


async def ask(base_url: str, api_key: str) -> None:
    """One chat completion over a traced aiohttp session."""
    # The three lines: a provider with an exporter, a trace config, a session that uses it.
    provider = setup_tracing(exporter="console")
    async with aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session:
        async with session.post(
            f"{base_url}/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]},
            headers={"Authorization": f"Bearer {api_key}"},
        ) as resp:
            answer = await resp.json()
    print("answer:", answer["choices"][0]["message"]["content"])
    # Short scripts must flush: the batch processor would otherwise drop the last spans.
    provider.shutdown()


async def main() -> None:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        await ask(base_url.rstrip("/"), os.environ.get("OPENAI_API_KEY", ""))
        return
    async with MockLLMServer() as mock:
        print(f"OPENAI_BASE_URL is not set: using an embedded mock LLM at {mock.base_url}")
        await ask(mock.base_url, "mock-key")


if __name__ == "__main__":
    asyncio.run(main())
