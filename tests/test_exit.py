"""Spans still in flight when the interpreter exits are ended and exported, not lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import aiohttp
    from aiohttp import web
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from aiohttp_llm_tracing import create_trace_config, setup_tracing

    if sys.argv[1] == "setup_tracing":
        provider = setup_tracing(exporter="console", set_global=False)
    else:
        provider = TracerProvider()  # the user's own, with the SDK's exit hook
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))

    async def stall(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first")
        await asyncio.Event().wait()

    async def main():
        app = web.Application()
        app.router.add_get("/", stall)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        config = create_trace_config(tracer_provider=provider)
        session = aiohttp.ClientSession(trace_configs=[config])
        global resp
        resp = await session.get(f"http://127.0.0.1:{port}/")
        print("IN FLIGHT", flush=True)
        sys.exit(0)  # exit with the response unread: only the exit hook can end the span

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("setup", ["setup_tracing", "own_provider"])
def test_in_flight_span_is_exported_at_exit(setup):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, setup], capture_output=True, text=True, timeout=60
    )
    assert "IN FLIGHT" in out.stdout, out.stderr
    assert '"llm_tracing.end_reason": "shutdown"' in out.stdout, out.stdout + out.stderr
    assert out.stdout.count('"llm_tracing.end_reason"') == 1, out.stdout  # ended once
