"""The SDK http-client helpers: the SDK's own aiohttp client, its settings untouched, with our
trace config on the one session its transport builds, and nothing patched afterwards."""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import aiohttp_llm_tracing
from aiohttp_llm_tracing import TracingTraceConfig
from aiohttp_llm_tracing import _session_patch as patch
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture

USER = [{"role": "user", "content": "Explain distributed tracing for LLM calls in one line"}]
ANSWER = "Mock answer to: " + USER[0]["content"][:40]
ORIGINAL_INIT = aiohttp.ClientSession.__dict__["__init__"]


@pytest.fixture
async def server() -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer() as srv:
        yield srv


def _session(client: Any) -> aiohttp.ClientSession:
    session = client._client._transport.client  # the SDK client -> its httpx client -> transport
    assert isinstance(session, aiohttp.ClientSession)
    return session


def _settings(session: aiohttp.ClientSession) -> dict[str, Any]:
    connector = session.connector
    assert connector is not None
    return {
        "connector": type(connector),
        "limit": connector.limit,
        "limit_per_host": connector.limit_per_host,
        "keepalive": connector._keepalive_timeout,  # type: ignore[attr-defined]
        "force_close": connector.force_close,
        "timeout": session.timeout,
        "auto_decompress": session.auto_decompress,
        "trust_env": session.trust_env,
        "raise_for_status": session.raise_for_status,
    }


async def _chat(client: Any) -> str:
    done = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    return done.choices[0].message.content


async def test_openai_http_client_traces_and_keeps_the_sdk_settings(server, llm_tracing):
    from openai import AsyncOpenAI, DefaultAioHttpClient

    common = {"base_url": server.base_url, "api_key": "k", "max_retries": 0}
    async with AsyncOpenAI(**common, http_client=DefaultAioHttpClient()) as bare:
        assert await _chat(bare) == ANSWER
        expected = _settings(_session(bare))
    http_client = aiohttp_llm_tracing.openai_http_client(trace_config=llm_tracing.trace_config)
    async with AsyncOpenAI(**common, http_client=http_client) as traced:
        assert await _chat(traced) == ANSWER
        stream = await traced.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == ANSWER
        session = _session(traced)
        assert _settings(session) == expected
        assert expected["limit"] == 1000  # the SDK's own limit, not aiohttp's default of 100
        assert session.trace_configs == [llm_tracing.trace_config]
    assert [s.name for s in llm_tracing.spans()] == ["chat gpt-4o-mini"] * 2
    stats = llm_tracing.registry.stats()
    assert stats.ended_total == stats.started == 2 and stats.in_flight == 0
    # The patch was on the class only while the transport built its session.
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT
    assert not patch.installed()


async def test_anthropic_http_client(server, llm_tracing, monkeypatch, caplog):
    from anthropic import AsyncAnthropic, DefaultAioHttpClient

    monkeypatch.setattr("aiohttp_llm_tracing._sdk_clients._warned_anthropic", False)
    http_client = aiohttp_llm_tracing.anthropic_http_client(trace_config=llm_tracing.trace_config)
    assert "ANTHROPIC_OPEN_TELEMETRY=false" in caplog.text  # the SDK's own span would double ours
    base = f"http://127.0.0.1:{server.port}"
    async with AsyncAnthropic(base_url=base, api_key="k", http_client=DefaultAioHttpClient()) as c:
        await c.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
        expected = _settings(_session(c))
    async with AsyncAnthropic(base_url=base, api_key="k", http_client=http_client) as client:
        msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
        assert _settings(_session(client)) == expected
    assert msg.content[0].text == ANSWER
    (span,) = llm_tracing.spans()
    assert span.name == "chat claude-sonnet-4-5"


def test_no_warning_when_anthropic_tracing_is_off(monkeypatch, caplog):
    monkeypatch.setattr("aiohttp_llm_tracing._sdk_clients._warned_anthropic", False)
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    aiohttp_llm_tracing.anthropic_http_client(sweep_interval=None)
    assert "ANTHROPIC_OPEN_TELEMETRY" not in caplog.text


@pytest.mark.parametrize("sdk", ["groq", "together"])
def test_openai_compatible_helpers_build_the_sdk_client(sdk):
    module = pytest.importorskip(sdk)
    helper = getattr(aiohttp_llm_tracing, f"{sdk}_http_client")
    client = helper(sweep_interval=None, client_options={"timeout": 12.0})
    assert isinstance(client, module.DefaultAioHttpClient)
    assert client.timeout.read == 12.0


async def test_options_build_a_config_and_bad_options_raise(server):
    tracing = TracingFixture()
    client = aiohttp_llm_tracing.openai_http_client(
        tracer_provider=tracing.provider, registry=tracing.registry, capture_content=False
    )
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=server.base_url, api_key="k", http_client=client) as c:
        assert await _chat(c) == ANSWER
        (config,) = _session(c).trace_configs
        assert isinstance(config, TracingTraceConfig)
    (span,) = tracing.spans()
    assert "langfuse.observation.input" not in (span.attributes or {})
    tracing.close()
    with pytest.raises(TypeError):
        aiohttp_llm_tracing.openai_http_client(no_such_option=True)


def test_a_moved_transport_fails_loudly_with_the_version(monkeypatch):
    class Moved:
        def __init__(self, **kwargs: Any) -> None:
            self._transport = object()  # no get_client(): the transport changed shape

    fake = types.ModuleType("groq")
    fake.__version__ = "9.9.9"  # type: ignore[attr-defined]
    fake.DefaultAioHttpClient = Moved  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "groq", fake)
    with pytest.raises(RuntimeError, match=r"groq 9\.9\.9.*instrument\(\)"):
        aiohttp_llm_tracing.groq_http_client(sweep_interval=None)
    del fake.DefaultAioHttpClient  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"groq 9\.9\.9 has no DefaultAioHttpClient"):
        aiohttp_llm_tracing.groq_http_client(sweep_interval=None)
