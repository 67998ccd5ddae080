"""One warm client process per mode for ``llm_peers.py``, driven over stdin/stdout JSON lines.

    python benchmarks/_peers_worker.py --mode MODE --url http://127.0.0.1:PORT

Runs in the peers venv with the mode's environment (see ``mode_env``). Commands, one JSON object
per line on stdin, each answered by one JSON line on stdout (``{"ok": false, "error": ...}`` on
failure; anything the libraries print goes to stderr):

* ``{"cmd": "init", "warmup_json": N, "warmup_stream": N}``: instrument, build the client, check
  that the SDK really goes through aiohttp and that the mode really traces (spans per call and
  recorded content), then warm up.
* ``{"cmd": "burst", "kind": "json"|"stream", "n": N, "concurrency": C}``: N calls at concurrency
  C, after a ``gc.collect()`` outside the window; the timed window ends after ``force_flush()``
  (and Langfuse's ``flush()``), so every mode pays for exporting its own spans. Fails if the
  exported spans are not exactly one per call. With ``"start_at"`` and ``"until"`` (both
  ``time.monotonic()`` values, a system-wide clock, so every worker shares them) it is a window
  instead (``llm_peers.py --parallel``): the calls start at ``start_at`` and go on while it is
  before ``until``; the reply's ``n`` says how many were made.
* ``{"cmd": "quit"}``.

``--calls KIND:N`` runs no protocol: set up and check as ``init`` does, 20 warm-up calls of
``KIND``, then ``N`` more one after the other (``--concurrency C``: C at a time), a flush, and
exit. ``instructions.py`` runs it under cachegrind.

Every mode has a global TracerProvider with a BatchSpanProcessor into a counting no-op exporter.
Every mode builds the SDK client the same way, ``DefaultAioHttpClient(transport=AiohttpTransport(
client=lambda: aiohttp.ClientSession(trace_configs=...)))``, so the HTTP stack (connector, limits,
keep-alive) is identical and only "ours" has a trace config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
import traceback
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODES = (
    "bare",
    "ours",
    "openai_v2",
    "openllmetry",
    "openinference",
    "langfuse",
    "openai_v2_nocontent",
    "ours_http",
    "empty",
    "floor",
    "floorm",
    "floorc",
    "instm",
    "ours_general",
    "floorg",
    "ours_noend",
    "ours_noparse",
    "ours_again",
    "ours_inline",
    "ours_checked",
    "ours_ref",
)
DEFAULT_MODES = MODES[:6]
PEERS = ("openai_v2", "openllmetry", "openinference", "langfuse", "openai_v2_nocontent")
"""The other LLM tracers; every other mode is ours or a reference point."""
LABELS = {
    "bare": "bare (no instrumentation)",
    "ours": "ours (aiohttp-llm-tracing)",
    "openai_v2": "opentelemetry-instrumentation-openai-v2",
    "openllmetry": "OpenLLMetry",
    "openinference": "OpenInference",
    "langfuse": "langfuse.openai (+ OTLP export to stub)",
    "openai_v2_nocontent": "openai-v2, content off",
    "ours_http": "ours with llm=False (the HTTP span alone)",
    "empty": "a TraceConfig with no callbacks (aiohttp's own cost of tracing)",
    "floor": "the span floor: an SDK span per request, nothing else",
    "floorm": "the span floor plus one SDK histogram record per request",
    "floorc": "the span floor writing our HTTP span's attributes and headers, no lifecycle",
    "ours_general": "ours with the plain-JSON chat fast path off (every call the general end)",
    "floorg": "the content floor also writing the generation's attributes (precomputed)",
    "ours_noend": "ours with each kind's end worked out once and reused (a free end)",
    "ours_noparse": "ours with each stream's parse done once and reused (a free stream parse)",
    "ours_again": "ours again in a second worker (two workers of the same code: the spread)",
    "ours_inline": "ours with each end done inside the caller's read (before the end moved out)",
    "ours_checked": "ours with its end attributes checked by the SDK again (before _span_write)",
    "ours_ref": "ours at another version (--ref), in the same run",
    "instm": "ours through instrument() with metrics on, as a user runs it",
}
MODEL = "gpt-4o-mini"
PROMPT = "What is the capital of France? Answer in one word."
MESSAGES = [
    {"role": "system", "content": "You are a terse geography assistant."},
    {"role": "user", "content": PROMPT},
]
STREAM_CHUNKS = 51  # 50 content chunks + the usage chunk
_CLEAR_PREFIXES = ("OTEL_", "LANGFUSE_", "TRACELOOP_", "OPENINFERENCE_")


def mode_env(mode: str, base_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker environment for ``mode``: inherited settings of any tracer are cleared first."""
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith(_CLEAR_PREFIXES)}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env["PYTHONUNBUFFERED"] = "1"
    if mode == "ours_ref":
        # The other version's src/ first on the path (exported by _common.ref_source).
        src = env.get("LLM_PEERS_REF_SRC")
        if not src:
            raise ValueError("mode ours_ref needs --ref (LLM_PEERS_REF_SRC unset)")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    elif mode == "openai_v2":
        # util-genai 1.1b0 always runs openai-v2 in "experimental" mode, where ``true`` is
        # rejected (becomes NO_CONTENT): SPAN_ONLY is what puts the messages on the span.
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    elif mode == "openai_v2_nocontent":
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "NO_CONTENT"
    elif mode == "openllmetry":
        env["TRACELOOP_TRACE_CONTENT"] = "true"
    elif mode == "langfuse":
        env.update(
            LANGFUSE_HOST=base_url,
            LANGFUSE_BASE_URL=base_url,
            LANGFUSE_PUBLIC_KEY="pk-lf-dummy",
            LANGFUSE_SECRET_KEY="sk-lf-dummy",
        )
    return env


def _generation_attributes(url: str) -> dict:
    """The attributes ours adds to the HTTP span for the benchmark's JSON chat call, worked out
    once by our own LLM layer from the very bodies: what ``floorg`` writes on every span without
    matching, capturing or parsing anything."""
    from multidict import CIMultiDict
    from yarl import URL

    sys.path.insert(0, str(HERE))
    from _peers_server import COMPLETION
    from aiohttp_llm_tracing._context import TraceAttributes
    from aiohttp_llm_tracing._llm import LLMOptions, match_llm_call

    call = match_llm_call(
        LLMOptions(), "POST", URL(url + "/v1/chat/completions"), TraceAttributes()
    )
    assert call is not None
    call.feed_request(json.dumps({"messages": MESSAGES, "model": MODEL}).encode())

    class Response:
        headers = CIMultiDict({"Content-Type": "application/json"})

    call.on_response(Response).feed(COMPLETION)  # type: ignore[arg-type]

    class Entry:
        status_code = 200

        class span:  # stands in for the entry's span
            @staticmethod
            def update_name(name: str) -> None:
                pass

    generation: dict = {}  # type: ignore[type-arg]
    call.add_start_attributes(generation)
    call.finish(generation, Entry, "body_complete")  # type: ignore[arg-type]
    return generation


def _stub_spans(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/_stub/stats", timeout=10) as resp:
        return int(json.loads(resp.read())["spans"])


class Worker:
    def __init__(self, mode: str, url: str) -> None:
        self.mode = mode
        self.url = url
        self.expect_spans = mode not in ("bare", "empty")
        self.langfuse = None
        self.client = None

    # -- setup -----------------------------------------------------------------------------

    def _instrument(self) -> list:
        import aiohttp
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        sys.path.insert(0, str(HERE))
        from _common import CountingExporter

        class ProbeExporter(CountingExporter):
            """CountingExporter that also keeps spans while ``keep`` is set (checks only)."""

            keep = False
            kept: list

            def export(self, spans):  # type: ignore[no-untyped-def]
                if self.keep:
                    self.kept.extend(spans)
                return super().export(spans)

        self.exporter = ProbeExporter()
        self.exporter.kept = []
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        trace.set_tracer_provider(self.provider)
        mode, tp = self.mode, self.provider
        self.trace_configs: list = []
        if mode in (
            "ours",
            "ours_general",
            "ours_noend",
            "ours_noparse",
            "ours_again",
            "ours_inline",
            "ours_checked",
            "ours_ref",
        ):
            from aiohttp_llm_tracing import create_trace_config

            if mode == "ours_general":
                import aiohttp_llm_tracing._llm as llm

                # What the one-pass end of a plain JSON chat call saves (_llm_fast.py).
                llm.chat_attributes = lambda call, status, reason: None  # type: ignore[assignment]
            elif mode in ("ours_noend", "ours_noparse"):
                _free_end(mode)
            elif mode == "ours_inline":
                import aiohttp_llm_tracing._inflight as inflight

                # No end is queued for the loop's next turn: each is done where it is signalled.
                inflight.defer = lambda *args: False  # type: ignore[assignment]
            elif mode == "ours_checked":
                import aiohttp_llm_tracing._span_write as span_write

                # Every end attribute goes through span.set_attributes and its checks.
                span_write._write = lambda span, attributes: False  # type: ignore[assignment]
            self.trace_configs = [create_trace_config(tracer_provider=tp)]
        elif mode == "ours_http":
            from aiohttp_llm_tracing import create_trace_config

            self.trace_configs = [create_trace_config(tracer_provider=tp, llm=False)]
        elif mode in ("openai_v2", "openai_v2_nocontent"):
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=tp)
        elif mode == "openllmetry":
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=tp)
        elif mode == "openinference":
            from openinference.instrumentation.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=tp)
        elif mode == "langfuse":
            from langfuse import get_client

            # Langfuse adds its LangfuseSpanProcessor (OTLP/HTTP to the stub) to the global
            # provider set above.
            self.langfuse = get_client()
        elif mode == "empty":
            self.trace_configs = [aiohttp.TraceConfig()]
        elif mode == "floor":
            from _common import floor_trace_config

            self.trace_configs = [floor_trace_config(tp)]
        elif mode == "floorm":
            from _common import floor_trace_config, null_meter_provider

            self.trace_configs = [floor_trace_config(tp, null_meter_provider())]
        elif mode == "floorg":
            from _common import content_floor_trace_config

            config = content_floor_trace_config(tp)
            generation = _generation_attributes(self.url)
            content_end = config.on_request_end[0]

            async def end(session, ctx, params):  # type: ignore[no-untyped-def]
                ctx.span.set_attributes(generation)
                ctx.span.update_name("chat gpt-4o-mini")
                await content_end(session, ctx, params)

            config.on_request_end[0] = end
            self.trace_configs = [config]
        elif mode == "floorc":
            from _common import content_floor_trace_config

            self.trace_configs = [content_floor_trace_config(tp)]
        elif mode == "instm":
            from _common import null_meter_provider
            from aiohttp_llm_tracing import instrument

            # On for the whole run, as a user runs it: the SDK's session picks it up.
            instrumentor = instrument(tracer_provider=tp, meter_provider=null_meter_provider())
            self.trace_configs = [instrumentor.trace_config]
        elif mode != "bare":
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "langfuse":
            from langfuse.openai import AsyncOpenAI
        else:
            from openai import AsyncOpenAI
        from openai import DefaultAioHttpClient

        try:
            from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
        except ImportError:  # openai 1.x/2.x
            from httpx_aiohttp import AiohttpTransport

        cfgs = [] if mode == "instm" else self.trace_configs
        self.transport = AiohttpTransport(client=lambda: aiohttp.ClientSession(trace_configs=cfgs))
        self.client = AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key="x",
            max_retries=0,
            http_client=DefaultAioHttpClient(transport=self.transport),
        )
        return cfgs

    async def _json(self) -> str:
        r = await self.client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return r.choices[0].message.content

    async def _stream(self) -> int:
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        n = 0
        async for _chunk in stream:
            n += 1
        return n

    async def _plain(self) -> int:
        """A plain GET through the SDK's own aiohttp session: no LLM API, no SDK code."""
        async with self.transport.client.get(f"{self.url}/plain") as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET /plain answered {resp.status}")
        return 1

    async def _run(
        self, kind: str, n: int, concurrency: int, until: float | None = None
    ) -> tuple[int, int]:
        """``n`` calls at ``concurrency``, or as many as start before ``until`` (monotonic).

        Returns (calls made, results): a stream's result counts its chunks.
        """
        call = {"json": self._json, "stream": self._stream, "plain": self._plain}[kind]
        remaining = n
        calls = got = 0

        async def loop() -> None:
            nonlocal remaining, calls, got
            while remaining > 0 if until is None else time.monotonic() < until:
                remaining -= 1
                calls += 1
                out = await call()
                got += out if kind == "stream" else 1
            return None

        workers = concurrency if until is not None else min(concurrency, n)
        await asyncio.gather(*(loop() for _ in range(workers)))
        return calls, got

    def _flush(self) -> None:
        if self.langfuse is not None:
            self.langfuse.flush()
        self.provider.force_flush()

    async def _check(self) -> dict:
        """One JSON call and one stream, with spans kept: fail loudly unless the mode traces."""
        import aiohttp

        self.exporter.keep, self.exporter.kept = True, []
        stub0 = _stub_spans(self.url) if self.langfuse is not None else 0
        text = await self._json()
        chunks = await self._stream()
        self._flush()
        self.exporter.keep = False
        spans = list(self.exporter.kept)
        problems = []
        if not text or "Paris" not in text:
            problems.append(f"unexpected JSON answer {text!r}")
        if chunks != STREAM_CHUNKS:
            problems.append(f"stream gave {chunks} chunks, expected {STREAM_CHUNKS}")
        session = self.transport.client
        if not isinstance(session, aiohttp.ClientSession):
            problems.append(f"SDK transport client is {type(session).__name__}, not aiohttp")
        else:
            attached = list(session.trace_configs)
            if attached != self.trace_configs:
                problems.append(f"session has {len(attached)} trace configs, expected ours only")
        if getattr(self.client._client, "_transport", None) is not self.transport:
            problems.append("the SDK's httpx client does not use the aiohttp transport")
        want = 2 if self.expect_spans else 0
        if len(spans) != want:
            problems.append(f"{len(spans)} spans for 2 calls, expected {want}")
        content = [any(PROMPT in str(v) for v in (s.attributes or {}).values()) for s in spans]
        if self.mode in ("openai_v2_nocontent", "ours_http", "floor", "floorm", "floorc"):
            if any(content):
                problems.append("content recorded although capture is off")
        elif self.expect_spans and not all(content):
            problems.append(f"prompt not recorded on every span (per span: {content})")
        stub = None
        if self.langfuse is not None:
            stub = _stub_spans(self.url) - stub0
            if stub != 2:
                problems.append(f"Langfuse exported {stub} spans to the stub, expected 2")
        if problems:
            detail = [
                {
                    "name": s.name,
                    "scope": s.instrumentation_scope.name,
                    "attrs": sorted(s.attributes),
                }
                for s in spans
            ]
            raise RuntimeError(f"{self.mode}: " + "; ".join(problems) + f"; spans={detail}")
        return {
            "spans": [
                {
                    "name": s.name,
                    "scope": s.instrumentation_scope.name,
                    "attributes": len(s.attributes or {}),
                    "events": len(s.events),
                }
                for s in spans
            ],
            "session": f"{type(session).__module__}.{type(session).__qualname__}",
            "transport": f"{type(self.transport).__module__}.{type(self.transport).__qualname__}",
            "trace_configs": len(self.trace_configs),
            "stub_spans": stub,
        }

    async def init(self, msg: dict) -> dict:
        t0 = time.perf_counter()
        self._instrument()
        check = await self._check()
        await self._run("json", int(msg.get("warmup_json", 300)), 20)
        await self._run("stream", int(msg.get("warmup_stream", 100)), 20)
        self._flush()
        from importlib import metadata

        versions = {}
        for dist in ("openai", "aiohttp", "opentelemetry-sdk", "aiohttp-llm-tracing", *_DISTS):
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[dist] = metadata.version(dist)
        return {"check": check, "versions": versions, "init_s": time.perf_counter() - t0}

    async def burst(self, msg: dict) -> dict:
        import psutil

        kind, conc = msg["kind"], int(msg.get("concurrency", 20))
        start_at, until = msg.get("start_at"), msg.get("until")
        spans0 = self.exporter.count
        stub0 = _stub_spans(self.url) if self.langfuse is not None else 0
        gc.collect()
        if start_at is not None:
            # A window shared with the other modes' workers (CLOCK_MONOTONIC is system-wide).
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        wall0, cpu0, use0 = time.perf_counter(), time.process_time(), resource.getrusage(_SELF)
        n, got = await self._run(kind, int(msg.get("n", 0)), conc, until)
        self._flush()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        use = resource.getrusage(_SELF)
        spans = self.exporter.count - spans0
        want_units = n * (STREAM_CHUNKS if kind == "stream" else 1)
        if got != want_units:
            raise RuntimeError(
                f"{self.mode}: {kind} burst got {got} results, expected {want_units}"
            )
        want = n if self.expect_spans else 0
        if spans != want:
            raise RuntimeError(f"{self.mode}: {kind} burst exported {spans} spans, expected {want}")
        out = {"n": n, "wall_s": wall, "cpu_s": cpu, "spans": spans, "rss_mb": _rss_mb(psutil)}
        # Where the CPU time went: kernel time, context switches and page faults are not in
        # the instruction counts of instructions.py.
        out |= {f: getattr(use, f) - getattr(use0, f) for f in RUSAGE}
        if self.langfuse is not None:
            out["stub_spans"] = _stub_spans(self.url) - stub0
            if out["stub_spans"] != n:
                raise RuntimeError(f"langfuse: stub got {out['stub_spans']} spans, expected {n}")
        return out

    async def count(self, kind: str, n: int, concurrency: int = 1) -> None:
        """The ``--calls`` run: set up, warm up, then ``n`` calls of ``kind``, ``concurrency``
        at a time (one after the other by default)."""
        self._instrument()
        await self._check()
        # Warm-up: the kind that is counted, nothing else.
        await self._run(kind, max(20, concurrency), concurrency)
        # Everything alive so far is left out of later collections: a full collection then
        # walks only what the counted calls left behind, so its cost grows with the calls
        # instead of landing, whole, in one run of N and not in the other.
        gc.collect()
        gc.freeze()
        await self._run(kind, n, concurrency)
        self._flush()
        await self.close()

    async def close(self) -> dict:
        if self.client is not None:
            await self.client.close()
        if self.langfuse is not None:
            self.langfuse.shutdown()
        self.provider.shutdown()
        return {}


def _free_end(mode: str) -> None:
    """Bounds, not tracers: each call's end (``ours_noend``) or its stream parse
    (``ours_noparse``) is worked out for the first call of its kind and reused after. Every
    call still captures its bodies and its span still gets the same attributes; what is left
    out is the work a faster end or parse could at best save."""
    import aiohttp_llm_tracing._llm as llm
    from aiohttp_llm_tracing.adapters.openai_chat import OpenAIChat

    memo: dict = {}
    if mode == "ours_noend":
        end = llm.chat_attributes

        def once(call, status, reason):  # type: ignore[no-untyped-def]
            key = call.stream_kind
            if key not in memo:
                memo[key] = end(call, status, reason)
            return memo[key]

        llm.chat_attributes = once  # type: ignore[assignment]
        return
    parse = OpenAIChat.parse_stream_body

    def parse_once(self, body):  # type: ignore[no-untyped-def]
        if "stream" not in memo:
            memo["stream"] = parse(self, body)
        return memo["stream"]

    OpenAIChat.parse_stream_body = parse_once  # type: ignore[method-assign]


_DISTS = (
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-instrumentation-openai",
    "openinference-instrumentation-openai",
    "langfuse",
)


_SELF = resource.RUSAGE_SELF
# getrusage() fields every burst reports besides its CPU time (user/system split, context
# switches, page faults).
RUSAGE = ("ru_utime", "ru_stime", "ru_nvcsw", "ru_nivcsw", "ru_minflt")


def _rss_mb(psutil) -> float:  # type: ignore[no-untyped-def]
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", help="KIND:N - run N calls of KIND (json|stream|plain) and exit")
    parser.add_argument("--concurrency", type=int, default=1, help="--calls: calls in flight")
    args = parser.parse_args(argv)
    if args.calls:
        kind, _, n = args.calls.partition(":")
        asyncio.run(Worker(args.mode, args.url).count(kind, int(n), args.concurrency))
        return 0
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker(args.mode, args.url)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handlers = {"init": worker.init, "burst": worker.burst, "quit": lambda msg: worker.close()}
    try:
        for line in sys.stdin:  # EOF (the driver went away) ends the worker too
            if not line.strip():
                continue
            msg = json.loads(line)
            try:
                reply = {"ok": True, **loop.run_until_complete(handlers[msg["cmd"]](msg))}
            except Exception:
                reply = {"ok": False, "error": traceback.format_exc()}
            proto.write(json.dumps(reply) + "\n")
            if msg["cmd"] == "quit" or not reply["ok"]:
                break
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
