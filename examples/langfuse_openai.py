"""Send real OpenAI calls to Langfuse Cloud: a chat, a stream and an embedding in one trace.

    export LANGFUSE_PUBLIC_KEY=pk-lf-... LANGFUSE_SECRET_KEY=sk-lf-...
    export LANGFUSE_HOST=https://cloud.langfuse.com      # or your region / self-hosted URL
    export OPENAI_API_KEY=sk-...
    python examples/langfuse_openai.py

``setup_tracing(exporter="langfuse")`` sends OTLP/HTTP to ``{host}/api/public/otel/v1/traces``
with Basic auth and ``x-langfuse-ingestion-version: 4``, so the trace shows up within seconds.
Without the variables it prints what to set and exits 0. ``OPENAI_BASE_URL`` is honoured.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

from aiohttp_llm_tracing import (
    create_trace_config,
    openai_http_client,
    setup_tracing,
    trace_attributes,
)

REQUIRED = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "OPENAI_API_KEY")
CHAT_MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
EMBEDDING_MODEL = os.environ.get("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small")


def missing_settings() -> list[str]:
    """The required environment variables that are not set."""
    return [name for name in REQUIRED if not os.environ.get(name)]


def traced_openai(trace_config: aiohttp.TraceConfig):  # -> openai.AsyncOpenAI
    """The official SDK over its own aiohttp client, its session traced by ``trace_config``."""
    from openai import AsyncOpenAI

    # API key and OPENAI_BASE_URL come from the environment, as the SDK always does.
    return AsyncOpenAI(http_client=openai_http_client(trace_config=trace_config))


async def run() -> None:
    provider = setup_tracing(exporter="langfuse", service_name="langfuse-openai-example")
    tracer = provider.get_tracer("examples.langfuse_openai")
    client = traced_openai(create_trace_config())
    messages = [{"role": "user", "content": "In one sentence: what is OpenTelemetry?"}]
    try:
        with (
            trace_attributes(
                session_id="example-session",
                user_id="example-user",
                trace_name="langfuse_openai example",
                tags=["example"],
            ) as attrs,
            tracer.start_as_current_span("example run", attributes=attrs.span_attributes),
        ):
            chat = await client.chat.completions.create(model=CHAT_MODEL, messages=messages)
            print("chat:  ", chat.choices[0].message.content)
            stream = await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            print("stream:", "".join(parts))
            embedding = await client.embeddings.create(model=EMBEDDING_MODEL, input="Langfuse")
            print("embedding dimensions:", len(embedding.data[0].embedding))
    finally:
        await client.close()
        # Bounded: an unreachable Langfuse must not hang the script at exit.
        sent = provider.shutdown(timeout=10)
    host = os.environ.get("LANGFUSE_HOST") or os.environ.get("LANGFUSE_BASE_URL")
    where = host or "https://cloud.langfuse.com"
    print(f"{'Sent' if sent else 'Could not send all'} spans; open {where} and look under Tracing.")


def main() -> int:
    missing = missing_settings()
    if missing:
        print("This example sends real calls to OpenAI and their traces to Langfuse.")
        print("Set these environment variables and run it again:", ", ".join(missing))
        print("  LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY: Langfuse project settings > API keys")
        print("  LANGFUSE_HOST: optional, default https://cloud.langfuse.com")
        print("  OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_MODEL)")
        print("Offline instead: aiohttp-llm-tracing demo")
        return 0
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
