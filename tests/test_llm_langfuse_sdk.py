"""Next to the Langfuse SDK: a call inside ``@observe`` nests under it and passes its filter.

``langfuse.get_client()`` installs a global TracerProvider, so the SDK side runs in a child
interpreter; the Langfuse-shaped receiver runs here and sees what the SDK exported.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from aiohttp_llm_tracing.receiver import OTLPHttpReceiver

PK, SK = "pk-lf-sdk", "sk-lf-sdk"

SCRIPT = textwrap.dedent(
    """
    import asyncio, json

    import aiohttp
    from langfuse import get_client, observe

    from aiohttp_llm_tracing import create_trace_config
    from aiohttp_llm_tracing.mock_llm import MockLLMServer

    langfuse = get_client()  # installs the SDK's provider as the global one
    config = create_trace_config(sweep_interval=None)  # no provider given: the global one

    @observe(name="agent-turn")
    async def agent(base_url):
        async with aiohttp.ClientSession(trace_configs=[config]) as session:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(base_url + "/chat/completions", json=body) as resp:
                await resp.read()
            # A plain request: no gen_ai.* attributes, so Langfuse's default filter drops it.
            async with session.get(base_url.removesuffix("/v1") + "/plain") as resp:
                await resp.read()
        return {
            "trace_id": langfuse.get_current_trace_id(),
            "observation_id": langfuse.get_current_observation_id(),
            "started": config.registry.stats().started,
        }

    async def main():
        async with MockLLMServer() as server:
            ids = await agent(server.base_url)
        langfuse.flush()
        langfuse.shutdown()
        config.registry.close()
        print(json.dumps(ids))

    asyncio.run(main())
    """
)


@pytest.fixture
def receiver() -> Iterator[OTLPHttpReceiver]:
    token = base64.b64encode(f"{PK}:{SK}".encode()).decode()
    with OTLPHttpReceiver(require_auth=f"Basic {token}") as r:
        yield r


def test_generation_nests_under_observe_and_reaches_langfuse(receiver):
    env = {
        **os.environ,
        "LANGFUSE_PUBLIC_KEY": PK,
        "LANGFUSE_SECRET_KEY": SK,
        "LANGFUSE_HOST": receiver.base_url,
        "LANGFUSE_BASE_URL": receiver.base_url,
        "LANGFUSE_FLUSH_INTERVAL": "0.1",
        "LANGFUSE_TRACING_ENVIRONMENT": "test",
    }
    for key in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "LANGFUSE_TRACING_ENABLED"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.strip().splitlines()[-1])

    assert receiver.wait_for(2, timeout=10)
    spans = receiver.spans()
    assert all(r.status == 200 for r in receiver.requests)
    by_scope = {s.scope: s for s in spans}
    assert set(by_scope) == {"langfuse-sdk", "aiohttp_llm_tracing"}, [s.name for s in spans]
    observe_span = by_scope["langfuse-sdk"]
    generation = by_scope["aiohttp_llm_tracing"]

    assert observe_span.name == "agent-turn"
    assert observe_span.trace_id == ids["trace_id"]
    assert observe_span.span_id == ids["observation_id"]
    assert generation.name == "chat gpt-4o-mini"
    assert generation.trace_id == observe_span.trace_id
    assert generation.parent_span_id == observe_span.span_id
    assert generation.attributes["gen_ai.operation.name"] == "chat"
    assert generation.attributes["langfuse.observation.type"] == "generation"
    assert json.loads(generation.attributes["langfuse.observation.output"])["role"] == "assistant"
    # The plain GET never left the process: only gen_ai spans pass the default filter. (It was
    # traced: both requests started a span.)
    assert ids["started"] == 2
    assert not any(s.name == "GET" for s in spans)
    headers = receiver.requests[0].headers
    assert headers["x-langfuse-sdk-name"] == "python"
    assert headers["x-langfuse-public-key"] == PK
