"""``aiohttp-llm-tracing demo``: a small agent traced end to end, offline, in a few seconds.

Everything runs in this process on ``127.0.0.1``: the embedded mock LLM server answers the
calls, the real OTLP/gRPC exporter sends the spans to a local receiver, and what is printed is
what that receiver decoded from the wire, so the output is proof of the whole route, not of
in-memory bookkeeping. The agent covers every way a call can end: read to the end, streamed,
failed with a 500, cancelled, and a stream abandoned half way.

Needs the ``[demo]`` extra (``rich`` and ``openai[aiohttp]``); both are imported when the demo
runs, so importing this module (for :func:`openai_client`, say) works without them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from opentelemetry import trace

from ._context import trace_attributes
from ._reasons import EndReason
from ._registry import RegistryStats
from ._sdk_clients import openai_http_client
from ._setup import setup_tracing
from ._trace_config import TracingTraceConfig, create_trace_config
from .mock_llm import MockLLMServer
from .receiver import OTLPGrpcReceiver, ReceivedSpan
from .render import print_trees

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

__all__ = ["DemoResult", "openai_client", "run_demo"]

CHAT_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
GEMINI_MODEL = "gemini-2.5-flash"
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
# Our own INTERNAL spans ("agent run", "tool: search"); every other span is a request.
_OWN_SPANS = 2
_EXPORT_TIMEOUT = 10.0

LANGFUSE_HELP = """\
[bold]Direct[/bold] (OTLP/HTTP, Basic auth and ingestion version 4 are set up for you):

  export LANGFUSE_PUBLIC_KEY=pk-lf-...
  export LANGFUSE_SECRET_KEY=sk-lf-...
  export LANGFUSE_HOST=https://cloud.langfuse.com   [dim]# or your own URL[/dim]

  [cyan]setup_tracing(exporter="langfuse")[/cyan]

[bold]Through a collector[/bold]: keep [cyan]setup_tracing(exporter="otlp")[/cyan] and run
rotel or the OpenTelemetry Collector to forward OTLP/gRPC to Langfuse:
see [cyan]examples/collector/[/cyan].

[bold]Your own app[/bold]: [cyan]aiohttp-llm-tracing receive[/cyan] prints every trace
it is sent."""


@dataclass
class DemoResult:
    """What the demo saw: spans over the wire, the registry's counters, and the verdict."""

    spans: list[ReceivedSpan]
    stats: RegistryStats
    expected_spans: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every span arrived, none is in flight, and the tracing code never failed."""
        return not self.problems


def openai_client(base_url: str, trace_config: TracingTraceConfig, api_key: str = "demo") -> Any:
    """An ``AsyncOpenAI`` over the SDK's own aiohttp client, its session traced by
    ``trace_config`` (built lazily by the transport, inside the running loop)."""
    from openai import AsyncOpenAI

    http_client = openai_http_client(trace_config=trace_config)
    return AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http_client)


class _HeadersSent:
    """A trace config that signals when a request's headers are on the wire.

    Lets the demo cancel a call once it is really in flight, without guessing with a sleep.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.config = aiohttp.TraceConfig()
        self.config.on_request_headers_sent.append(self._sent)

    async def _sent(self, *_: Any) -> None:
        self.event.set()


async def _agent(
    client: Any,
    session: aiohttp.ClientSession,
    base_url: str,
    tracer: trace.Tracer,
    headers_sent: _HeadersSent,
) -> None:
    """The traced agent run: one root span, a tool step and every kind of LLM call."""
    origin = base_url.rsplit("/v1", 1)[0]
    user = {"role": "user", "content": "What is the capital of France?"}
    with (
        trace_attributes(
            session_id="demo-session", user_id="demo-user", trace_name="demo agent", tags=["demo"]
        ) as attrs,
        # The root carries the trace attributes too, so a backend sees them on every span.
        tracer.start_as_current_span("agent run", attributes=attrs.span_attributes),
    ):
        # A tool step: an INTERNAL span with a plain HTTP call under it.
        with tracer.start_as_current_span("tool: search"):
            async with session.get(f"{origin}/plain") as resp:
                await resp.json()

        # Two calls at once: each gets its own span, both children of the root.
        await asyncio.gather(
            client.chat.completions.create(model=CHAT_MODEL, messages=[user]),
            client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "And of Italy?"}]
            ),
        )

        # A stream read to the end: usage arrives in the last chunk, time to first token too.
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[user],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass

        # An embedding with plain aiohttp: no SDK needed for a generation span.
        async with session.post(
            f"{base_url}/embeddings", json={"model": EMBEDDING_MODEL, "input": "Paris"}
        ) as resp:
            await resp.json()

        # Gemini and Bedrock in their own wire shapes, with plain aiohttp (the SDKs are reached
        # the same way through instrument()): a JSON call, an SSE stream, a Converse call.
        gemini = {"contents": [{"role": "user", "parts": [{"text": user["content"]}]}]}
        gemini_url = f"{origin}/v1beta/models/{GEMINI_MODEL}"
        async with session.post(f"{gemini_url}:generateContent", json=gemini) as resp:
            await resp.json()
        async with session.post(f"{gemini_url}:streamGenerateContent?alt=sse", json=gemini) as resp:
            async for _ in resp.content:
                pass
        converse = {
            "messages": [{"role": "user", "content": [{"text": user["content"]}]}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.2},
        }
        async with session.post(f"{origin}/model/{BEDROCK_MODEL}/converse", json=converse) as resp:
            await resp.json()

        # A 500: the span is an error; the SDK raises, the agent carries on.
        from openai import InternalServerError

        with suppress(InternalServerError):
            await client.chat.completions.create(model="error-500", messages=[user])

        # A call cancelled while waiting for headers: ends as cancelled, which is not an error.
        headers_sent.event.clear()
        slow = asyncio.ensure_future(
            session.post(
                f"{base_url}/chat/completions",
                json={"model": "slow-headers", "messages": [user], "metadata": {"mock_delay": 30}},
            )
        )
        await asyncio.wait_for(headers_sent.event.wait(), 10)
        slow.cancel()
        # wait() rather than await: only the call's cancellation is expected, never our own.
        await asyncio.wait({slow})

        # A stream abandoned after three chunks: closing it releases the response.
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[user],
            stream=True,
            metadata={"mock_chunks": "40", "mock_delay": "0.02"},
        )
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
        await stream.close()


@contextmanager
def _step(progress: Progress, console: Console, text: str) -> Iterator[None]:
    # The spinner is transient: once a step is done a plain line records it, tty or not.
    task = progress.add_task(text, total=None)
    try:
        yield
    finally:
        progress.remove_task(task)
    console.print(f"[green]✓[/green] {text}")


async def _run_agent(base_url: str, config: TracingTraceConfig, tracer: trace.Tracer) -> None:
    headers_sent = _HeadersSent()
    client = openai_client(base_url, config)
    try:
        async with aiohttp.ClientSession(trace_configs=[config, headers_sent.config]) as session:
            await _agent(client, session, base_url, tracer, headers_sent)
    finally:
        await client.close()


def _verdict(
    spans: list[ReceivedSpan], stats: RegistryStats, expected: int, provider_flushed: bool
) -> list[str]:
    problems = []
    if not provider_flushed:
        problems.append("the span exporter did not finish in time")
    if len(spans) < expected:
        problems.append(f"only {len(spans)} of {expected} spans arrived at the receiver")
    if stats.in_flight:
        problems.append(f"{stats.in_flight} spans are still in flight")
    if stats.internal_errors:
        problems.append(f"{stats.internal_errors} internal errors in the tracing code")
    return problems


def stats_table(stats: RegistryStats) -> Table:
    """The registry's counters as a small table."""
    from rich.table import Table

    table = Table(title="Span registry", title_justify="left", show_header=False)
    table.add_column("counter")
    table.add_column("value", justify="right")
    table.add_row("started", str(stats.started))
    for reason in EndReason.ALL:
        count = stats.ended.get(reason, 0)
        if count:
            table.add_row(f"ended: {reason}", str(count))
    flight_style = "green" if stats.in_flight == 0 else "red"
    table.add_row("in flight", f"[{flight_style}]{stats.in_flight}[/{flight_style}]")
    error_style = "green" if stats.internal_errors == 0 else "red"
    table.add_row("internal errors", f"[{error_style}]{stats.internal_errors}[/{error_style}]")
    return table


def run_demo(console: Console | None = None, *, content: bool = False) -> DemoResult:
    """Run the demo, print what arrived over OTLP, and return the result (``ok`` or not).

    ``content=True`` shows a short preview of each generation's input and output in the trees.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with _loopback_without_proxy(), progress:
        receiver = OTLPGrpcReceiver()
        with _step(progress, console, "Started an OTLP/gRPC receiver on 127.0.0.1"):
            receiver.start()
        try:
            return _run_with_receiver(receiver, progress, console, content)
        finally:
            receiver.stop(grace=1.0)


def _run_with_receiver(
    receiver: OTLPGrpcReceiver, progress: Progress, console: Console, content: bool = False
) -> DemoResult:
    provider = setup_tracing(
        exporter="otlp",
        endpoint=receiver.endpoint,
        insecure=True,
        set_global=False,  # the demo must not take over the global provider of its host process
        schedule_delay=0.2,
        export_timeout=_EXPORT_TIMEOUT,
    )
    config = create_trace_config(tracer_provider=provider)
    tracer = provider.get_tracer("aiohttp_llm_tracing.demo")
    try:
        step = "Ran the agent against an embedded mock LLM: 11 calls under one root span"
        with _step(progress, console, step):
            asyncio.run(_with_mock(lambda url: _run_agent(url, config, tracer)))
        stats = config.registry.stats()
        expected = stats.started + _OWN_SPANS
        with _step(progress, console, f"Exported {expected} spans over OTLP/gRPC"):
            flushed = provider.flush(_EXPORT_TIMEOUT)
            receiver.wait_for(expected, timeout=_EXPORT_TIMEOUT)
    finally:
        provider.shutdown(timeout=5.0)
    spans = receiver.spans()
    result = DemoResult(spans, stats, expected, _verdict(spans, stats, expected, flushed))
    _report(result, console, content)
    return result


async def _with_mock(body: Callable[[str], Any]) -> None:
    async with MockLLMServer() as server:
        await body(server.base_url)


@contextmanager
def _loopback_without_proxy() -> Iterator[None]:
    # gRPC honours http(s)_proxy from the environment; the demo's traffic never leaves 127.0.0.1.
    # Restored afterwards: the demo may run inside someone else's process.
    saved = {name: os.environ.get(name) for name in ("NO_PROXY", "no_proxy")}
    for name, value in saved.items():
        hosts = [h for h in (value or "").split(",") if h]
        missing = [h for h in ("127.0.0.1", "localhost") if h not in hosts]
        if missing:
            os.environ[name] = ",".join([*hosts, *missing])
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _report(result: DemoResult, console: Console, content: bool = False) -> None:
    from rich.panel import Panel

    console.print()
    console.rule("What the OTLP receiver got")
    print_trees(result.spans, console, content=content)
    console.print()
    console.print(stats_table(result.stats))
    console.print()
    console.print(Panel(LANGFUSE_HELP, title="Send the same traces to Langfuse", expand=False))
    if result.ok:
        console.print(
            f"[green]All {result.expected_spans} spans arrived; nothing is in flight.[/green]"
        )
    else:
        for problem in result.problems:
            console.print(f"[red]✗ {problem}[/red]")
