"""The instrumentor: every ClientSession created while instrumented is traced once, the patch
keeps aiohttp's signature, subclasses and arguments intact, and uninstrument() restores it."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

import aiohttp_llm_tracing
from aiohttp_llm_tracing import AiohttpLLMInstrumentor, TracingTraceConfig, create_trace_config
from aiohttp_llm_tracing import _session_patch as patch
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture

ORIGINAL_INIT = aiohttp.ClientSession.__dict__["__init__"]
SIGNATURE = inspect.signature(aiohttp.ClientSession.__init__)


@pytest.fixture
async def server() -> Any:
    async with MockLLMServer() as srv:
        yield srv


@pytest.fixture
def tracing() -> Iterator[TracingFixture]:
    fixture = TracingFixture()
    yield fixture
    AiohttpLLMInstrumentor().uninstrument()
    fixture.close()
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT


def _instrument(tracing: TracingFixture, **options: Any) -> AiohttpLLMInstrumentor:
    instrumentor = aiohttp_llm_tracing.instrument(
        tracer_provider=tracing.provider, registry=tracing.registry, **options
    )
    assert instrumentor is AiohttpLLMInstrumentor()
    assert instrumentor.is_instrumented_by_opentelemetry
    assert instrumentor.trace_config is not None
    tracing.trace_config = instrumentor.trace_config
    return instrumentor


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        return await resp.read()


async def test_every_session_created_after_instrument_is_traced_once(tracing, server):
    instrumentor = _instrument(tracing)
    assert instrumentor.registry is tracing.registry
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        assert await _get(a, f"http://127.0.0.1:{server.port}/plain") == b'{"ok": true}'
        await _get(b, f"http://127.0.0.1:{server.port}/plain")
    spans = tracing.spans()
    assert [s.name for s in spans] == ["GET", "GET"]
    assert [s.attributes["llm_tracing.end_reason"] for s in spans] == ["response"] * 2
    stats = tracing.registry.stats()
    assert (stats.started, stats.ended, stats.in_flight) == (2, {"response": 2}, 0)
    assert stats.internal_errors == 0


async def test_a_session_built_before_instrument_stays_untraced(tracing, server):
    async with aiohttp.ClientSession() as early:
        _instrument(tracing)
        await _get(early, f"http://127.0.0.1:{server.port}/plain")
    assert tracing.spans() == []


async def test_a_caller_s_own_config_is_kept_and_never_doubled(tracing, server):
    _instrument(tracing)
    mine = TracingFixture()
    other = aiohttp.TraceConfig()
    seen: list[str] = []

    async def on_start(session: Any, ctx: Any, params: Any) -> None:
        seen.append(str(params.url))

    other.on_request_start.append(on_start)
    theirs = [other]
    async with aiohttp.ClientSession(trace_configs=[mine.trace_config]) as s1:
        await _get(s1, f"http://127.0.0.1:{server.port}/plain")
    async with aiohttp.ClientSession(trace_configs=theirs) as s2:
        await _get(s2, f"http://127.0.0.1:{server.port}/plain")
        assert s2.trace_configs == [other, tracing.trace_config]
    assert theirs == [other]  # the caller's list is copied, never mutated
    assert len(seen) == 1
    assert len(mine.spans()) == 1  # one span, from the caller's config only
    assert len(tracing.spans()) == 1  # s2's request
    mine.close()


async def test_subclasses_are_traced_and_keep_their_arguments(tracing, server):
    class Early(aiohttp.ClientSession):
        def __init__(self, *args: Any, label: str, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.label = label

    _instrument(tracing)

    def make_session_class() -> type[aiohttp.ClientSession]:
        # google-genai builds a new subclass inside a method for every session.
        class Late(aiohttp.ClientSession):
            pass

        return Late

    base = f"http://127.0.0.1:{server.port}"
    timeout = aiohttp.ClientTimeout(total=30)
    async with Early(base, label="x", timeout=timeout, raise_for_status=True) as s1:
        assert (s1.label, s1.timeout, s1.raise_for_status) == ("x", timeout, True)
        assert str(s1._base_url) == base
        await _get(s1, "/plain")
    async with make_session_class()() as s2:
        await _get(s2, f"{base}/plain")
    assert len(tracing.spans()) == 2
    assert inspect.signature(aiohttp.ClientSession.__init__) == SIGNATURE
    assert aiohttp.ClientSession.__init__.__wrapped__ is ORIGINAL_INIT


async def test_uninstrument_restores_init_and_existing_sessions_keep_working(tracing, server):
    instrumentor = _instrument(tracing)
    url = f"http://127.0.0.1:{server.port}/plain"
    async with aiohttp.ClientSession() as during:
        instrumentor.uninstrument()
        assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT
        assert not patch.installed()
        await _get(during, url)  # built while instrumented: still traced
        async with aiohttp.ClientSession() as after:
            await _get(after, url)
    assert len(tracing.spans()) == 1
    assert tracing.registry.stats().in_flight == 0


def test_second_instrument_is_a_no_op_and_bad_options_patch_nothing(tracing, caplog):
    with pytest.raises(TypeError):
        AiohttpLLMInstrumentor().instrument(no_such_option=1)
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT
    first = _instrument(tracing)
    config = first.trace_config
    with caplog.at_level(logging.WARNING):
        first.instrument(capture_content=False)
    assert first.trace_config is config
    assert "already instrumented" in caplog.text


def test_instrument_and_uninstrument_from_many_threads(tracing):
    instrumentor = AiohttpLLMInstrumentor()
    barrier = threading.Barrier(8)

    def flip(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            if i % 2:
                instrumentor.instrument(tracer_provider=tracing.provider, registry=tracing.registry)
            else:
                instrumentor.uninstrument()

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Whatever order the threads ran in, the flag and the patch agree, and the chain holds
    # at most one wrapper of ours.
    assert instrumentor.is_instrumented_by_opentelemetry == patch.installed()
    ours = [f for f in patch._chain() if getattr(f, "_self_wrapper", None) is patch._WRAPPER]
    assert len(ours) <= 1


def test_disabled_by_environment(tracing, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "requests, aiohttp-llm")
    assert aiohttp_llm_tracing.instrument().is_instrumented_by_opentelemetry is False
    assert not patch.installed()


async def test_a_failing_patch_never_changes_what_the_caller_gets(tracing):
    _instrument(tracing)
    # aiohttp's own error for a bad trace_configs value, exactly as without tracing.
    with pytest.raises(TypeError) as traced:
        aiohttp.ClientSession(trace_configs=5)  # type: ignore[arg-type]
    AiohttpLLMInstrumentor().uninstrument()
    with pytest.raises(TypeError) as bare:
        aiohttp.ClientSession(trace_configs=5)  # type: ignore[arg-type]
    assert str(traced.value) == str(bare.value)
    assert tracing.registry.stats().internal_errors == 1


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib-below", "contrib-above"])
async def test_contrib_instrumentation_alongside_is_warned_once(
    tracing, server, caplog, monkeypatch, contrib_first
):
    monkeypatch.setattr(patch, "_warned_contrib", False)
    contrib = AioHttpClientInstrumentor()
    try:
        with caplog.at_level(logging.WARNING, logger="aiohttp_llm_tracing"):
            if contrib_first:  # its wrapper ends up below ours: instrument() sees it
                contrib.instrument(tracer_provider=tracing.provider)
                _instrument(tracing)
            else:  # its wrapper ends up above ours: the first session shows its config
                _instrument(tracing)
                contrib.instrument(tracer_provider=tracing.provider)
            async with aiohttp.ClientSession() as s1, aiohttp.ClientSession() as s2:
                await _get(s1, f"http://127.0.0.1:{server.port}/plain")
                await _get(s2, f"http://127.0.0.1:{server.port}/plain")
        warnings = [r for r in caplog.records if "aiohttp-client" in r.getMessage()]
        assert len(warnings) == 1
        assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=aiohttp-client" in warnings[0].getMessage()
        scopes = [s.instrumentation_scope.name for s in tracing.spans()]
        assert scopes.count("aiohttp_llm_tracing") == 2  # ours: one per request, not doubled
    finally:
        AiohttpLLMInstrumentor().uninstrument()
        contrib.uninstrument()
    if not contrib_first:
        # Ours was below contrib's when we uninstrumented, so it stayed in the chain (removing
        # a wrapper from under another is impossible): inert, it adds nothing to new sessions.
        async with aiohttp.ClientSession() as after:
            assert after.trace_configs == []
        patch.acquire()  # with nothing above it any more, the next release removes it
        patch.release()
    assert aiohttp.ClientSession.__dict__["__init__"] is ORIGINAL_INIT


async def test_scoped_config_wins_and_is_not_doubled(tracing):
    _instrument(tracing)
    scoped = create_trace_config(sweep_interval=None)
    with patch.scoped(scoped):
        async with aiohttp.ClientSession() as session:
            ours = [c for c in session.trace_configs if isinstance(c, TracingTraceConfig)]
    assert ours == [scoped]
    async with aiohttp.ClientSession() as session:
        assert session.trace_configs == [tracing.trace_config]


async def test_opentelemetry_instrument_picks_the_instrumentor_up(server, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json
            import aiohttp
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
            from aiohttp_llm_tracing import AiohttpLLMInstrumentor

            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)

            async def main():
                # No trace config anywhere: only the auto-loaded instrumentor can trace this.
                async with aiohttp.ClientSession() as s:
                    async with s.post(
                        "http://127.0.0.1:{server.port}/v1/chat/completions",
                        json={{"model": "gpt-4o-mini", "messages": [
                            {{"role": "user", "content": "hi"}}]}},
                    ) as r:
                        await r.json()

            asyncio.run(main())
            print(json.dumps({{
                "instrumented": AiohttpLLMInstrumentor().is_instrumented_by_opentelemetry,
                "spans": [[s.name, s.instrumentation_scope.name]
                          for s in exporter.get_finished_spans()],
            }}))
            """
        )
    )
    bin_dir = os.path.dirname(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

    async def run(disabled: str) -> Any:
        # An asyncio subprocess: the mock server answers on this test's own loop.
        proc = await asyncio.create_subprocess_exec(
            os.path.join(bin_dir, "opentelemetry-instrument"),
            sys.executable,
            str(script),
            env={**env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, err.decode()
        return json.loads(out.decode().strip().splitlines()[-1])

    assert await run("aiohttp-client") == {
        "instrumented": True,
        "spans": [["chat gpt-4o-mini", "aiohttp_llm_tracing"]],
    }
    assert await run("aiohttp-client,aiohttp-llm") == {"instrumented": False, "spans": []}


async def test_the_app_keeps_its_server_side(tracing):
    # aiohttp's test client builds a ClientSession too; instrumenting must not disturb a server.
    _instrument(tracing)
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as s:
            assert await _get(s, f"http://127.0.0.1:{port}/") == b"hi"
    finally:
        await runner.cleanup()
    assert [s.name for s in tracing.spans()] == ["GET"]
