"""Event-loop stalls: the work at the end of one ~1 MiB LLM call, and loop lag under 50 streams.

    python benchmarks/stalls.py [--calls 20] [--size 1040000] [--streams 50] [--rounds 3]

The mock LLM runs in its own process (CPU 1), plus one route of ours serving a gzip chat
completion; the client is this process (CPU 0), with a real trace config exporting through a
``BatchSpanProcessor`` into a no-op exporter. ``HttpSpan.end`` (the signal, run on the event loop
when the caller reads the last byte) and ``HttpSpan._finish`` (the end's work, run on the loop's
next turn) are wrapped to time each call (and the steps inside it: body reading, attributes, the
exportable gate, the SDK; plus any GC it sets off); a call's figure is the two together, in
wall time and in the loop thread's CPU time (a busy machine preempts the process in the middle of
an end too: wall time counts that, CPU time does not).
Each case is a real request read to its end, ``--calls`` times after a warm-up, of ``--size``
bytes (under the 1 MiB capture cap, so the whole body is parsed): chat JSON (the ``huge``
model), a chat SSE stream with usage (fast path), a tool-call stream (general SSE path), gzip
chat JSON read with ``auto_decompress=False``, an Anthropic stream, a Bedrock ConverseStream.
The mock's answer is short, so stream deltas are mostly empty: framing and per-event JSON are
measured, not the joining of a long text. Loop lag: ``--streams`` concurrent chat streams of
64-256 KiB (spread, so their ends spread), paced by ``mock_delay``, while a task sleeps 1 ms in
a loop and records how late each wake-up is; traced and untraced rounds alternate in one
process. Results are printed and written to benchmarks/results/stalls.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import gzip
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import percentile  # noqa: E402

CASES = (
    "chat_json",
    "chat_sse",
    "chat_sse_general",
    "chat_json_gzip",
    "anthropic_sse",
    "bedrock_converse_stream",
)
PHASES = ("request_parse", "response_parse", "attributes", "finish_rest", "gate", "sdk")
_PROMPT = "Tell me everything about the history of Paris."
_MSGS = [{"role": "user", "content": _PROMPT}]
_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
_WORDS = ("the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "that", "with", "as")


def _request(case: str, units: int, delay: float = 0.0) -> tuple[str, dict, bool]:
    """(path, JSON body, auto_decompress) for ``case``; ``units`` is bytes or stream chunks."""
    meta = {"mock_size": units} if "json" in case else {"mock_chunks": units, "mock_delay": delay}
    chat = {"model": "gpt-4o-mini", "messages": _MSGS, "metadata": meta}
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    if case == "chat_json":
        return "/v1/chat/completions", {**chat, "model": "huge"}, True
    if case == "chat_sse":
        return "/v1/chat/completions", {**chat, **stream}, True
    if case == "chat_sse_general":  # tool-call deltas: the fast path does not apply
        return "/v1/chat/completions", {**chat, **stream, "tools": _TOOLS}, True
    if case == "chat_json_gzip":
        return "/gzip/v1/chat/completions", chat, False
    if case == "anthropic_sse":
        body = {"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True}
        return "/v1/messages", {**body, "messages": _MSGS, "metadata": meta}, True
    model = "amazon.nova-pro-v1:0"
    path = f"/model/{model}/converse-stream?mock_chunks={units}&mock_delay={delay}"
    return path, {"messages": [{"role": "user", "content": [{"text": _PROMPT}]}]}, True


# -- server ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _gzip_chat_body(size: int, model: str) -> bytes:
    """A chat completion of about ``size`` bytes of word salad (compresses ~3:1), gzipped."""
    rng, words = random.Random(size), []
    while len(words) * 4 < size:
        words.append(rng.choice(_WORDS) + rng.choice((" ", " ", ", ", ".\n", ' "')))
    message = {"role": "assistant", "content": "".join(words)[: max(0, size - 256)]}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    usage = {"prompt_tokens": 12, "completion_tokens": size // 5, "total_tokens": size // 5}
    payload = {"id": "chatcmpl-gzip", "object": "chat.completion", "model": model}
    return gzip.compress(json.dumps({**payload, "choices": [choice], "usage": usage}).encode())


def _serve(port_file: str) -> None:
    from aiohttp import web

    from _common import serve
    from aiohttp_llm_tracing.mock_llm import create_app

    async def gzip_chat(request: web.Request) -> web.Response:
        body = await request.json()
        data = _gzip_chat_body(int(body["metadata"]["mock_size"]), str(body.get("model")))
        headers = {"Content-Encoding": "gzip"}
        return web.Response(body=data, content_type="application/json", headers=headers)

    app = create_app()
    app.router.add_post("/gzip/v1/chat/completions", gzip_chat)
    serve(app, port_file)


# -- client ------------------------------------------------------------------------------------


def _install_timers(records: list[dict]) -> None:
    """Time ``HttpSpan.end``, ``HttpSpan._finish`` and the steps inside; one record per span."""
    from aiohttp_llm_tracing import _attributes as A
    from aiohttp_llm_tracing import _finisher, _inflight, _llm

    current: dict[str, int] = {}
    inside = [0, 0]  # HttpSpan._finish calls running, start of the running collection

    def on_gc(phase: str, info: dict) -> None:
        # A collection the end's allocations set off stalls the loop too: counted, and shown.
        if inside[0] and phase == "start":
            inside[1] = time.perf_counter_ns()
        elif inside[0] and inside[1]:
            key = "gc2" if info["generation"] == 2 else "gc"  # full collections apart
            current[key] = current.get(key, 0) + time.perf_counter_ns() - inside[1]
            inside[1] = 0

    gc.callbacks.append(on_gc)

    def wrap(owner: object, name: str, key: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            if threading.current_thread() is not threading.main_thread():
                return original(*args, **kwargs)  # on the finisher thread: not the loop's time
            t0 = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                current[key] = current.get(key, 0) + time.perf_counter_ns() - t0

        setattr(owner, name, timed)

    def record(entry: object, end_ns: int, flags: list, cpu_ns: int) -> None:
        attrs = entry.span.attributes or {}  # type: ignore[attr-defined]
        flags = [attrs.get(A.BODY_TRUNCATED), attrs.get(A.PARSE_ERROR), *flags]
        on_loop = threading.current_thread() is threading.main_thread()
        records.append(
            {
                **current,
                "end": end_ns,
                "end_cpu": cpu_ns,
                "flags": [f for f in flags if f],
                "loop": on_loop,
            }
        )
        current.clear()

    # The signal (HttpSpan.end) and the end's work (HttpSpan._finish), which runs inside the
    # signal, on the loop's next turn (_deferred) or on the finisher thread: a record is made
    # when the loop's share of a call is over, and counts all of it.
    # Wall time, and the loop thread's own CPU time: on a busy machine the process is also
    # preempted in the middle of an end, which wall time counts and CPU time does not.
    signals: dict[object, tuple[int, int]] = {}  # queued ends: their signal's times
    running = [False]  # a signal is running on the loop
    original_end, original_finish = _inflight.HttpSpan.end, _inflight.HttpSpan._finish

    def end(self, reason, error=None):  # type: ignore[no-untyped-def]
        running[0] = True
        inside[0] += 1
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return original_end(self, reason, error)
        finally:
            took, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
            inside[0] -= 1
            running[0] = False
            if current.pop("finished", 0):  # done inside the signal
                record(self, took, ["no output"] if current.pop("no_output", 0) else [], cpu)
            elif self.llm is not None and self.llm.captured_bytes() >= _finisher.OFFLOAD_BYTES:
                # The loop paid the signal alone.
                record(self, took, ["finished off the loop"], cpu)
            else:
                signals[self] = (took, cpu)

    def finish(self, reason, error, end_ns):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():
            return original_finish(self, reason, error, end_ns)
        inside[0] += 1
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return original_finish(self, reason, error, end_ns)
        finally:
            took, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
            inside[0] -= 1
            attrs = self.span.attributes or {}
            flags = [] if A.LANGFUSE_OBSERVATION_OUTPUT in attrs else ["no output"]
            if running[0]:
                current["finished"] = 1
                if flags:
                    current["no_output"] = 1
            else:
                signal, signal_cpu = signals.pop(self, (0, 0))
                record(self, signal + took, flags, signal_cpu + cpu)

    _inflight.HttpSpan.end = end  # type: ignore[method-assign]
    _inflight.HttpSpan._finish = finish  # type: ignore[method-assign]

    wrap(_llm, "read_request", "request_parse")
    wrap(_llm, "read_response", "response_parse")
    wrap(_llm, "request_attributes", "request_attrs")
    wrap(_llm, "response_attributes", "response_attrs")
    wrap(_llm.LLMCall, "finish", "finish")
    wrap(_inflight, "exportable_attributes", "gate")


def _phases(rec: dict) -> dict[str, float]:
    """One record's ``end`` split into the steps of ``PHASES``, in ms."""
    ns = {k: rec.get(k, 0) for k in ("request_parse", "response_parse", "finish", "gate")}
    ns["attributes"] = rec.get("request_attrs", 0) + rec.get("response_attrs", 0)
    ns["finish_rest"] = ns["finish"] - ns["request_parse"] - ns["response_parse"] - ns["attributes"]
    ns["sdk"] = rec["end"] - ns["finish"] - ns["gate"]
    return {k: ns[k] / 1e6 for k in PHASES}


def _case_row(records: list[dict], **extra: int) -> dict:
    ends, phases = [r["end"] / 1e6 for r in records], [_phases(r) for r in records]
    return extra | {
        "calls": len(ends),
        "median_ms": statistics.median(ends),
        "max_ms": max(ends),
        "cpu_max_ms": max(r["end_cpu"] for r in records) / 1e6,
        "phases_median_ms": {k: statistics.median(p[k] for p in phases) for k in PHASES},
        "gc_young_ms_max": max(r.get("gc", 0) for r in records) / 1e6,
        "gc_full_ms_max": max(r.get("gc2", 0) for r in records) / 1e6,
        "calls_with_full_gc": sum(1 for r in records if r.get("gc2")),
        "flags": sorted({f for r in records for f in r["flags"]}),
        "on_event_loop": all(r["loop"] for r in records),
    }


async def _fetch(session, url, case, units, delay=0.0, decoded=False) -> int:  # type: ignore[no-untyped-def]
    """Bytes read (on the wire, unless ``decoded``) of one call, read to its end."""
    path, body, decompress = _request(case, units, delay)
    async with session.post(url + path, json=body, auto_decompress=decompress or decoded) as resp:
        resp.raise_for_status()
        if resp.content_type == "text/event-stream":  # as SDKs read streams: line by line
            return sum([len(line) async for line in resp.content])
        return len(await resp.read())


async def _units_for(session, url: str, case: str, size: int) -> int:  # type: ignore[no-untyped-def]
    """Units (bytes or chunks) giving a decoded body of ``size`` bytes: sizes are linear."""
    small, large = 300, 600
    a, b = [await _fetch(session, url, case, n, decoded=True) for n in (small, large)]
    per = (b - a) / (large - small)
    return max(1, round(small + (size - a) / per))


async def _monitor(stop: asyncio.Event, lags: list[float], limit: int) -> None:
    """Sleep 1 ms in a loop; record how late each wake-up is, in ms."""
    while not stop.is_set() and len(lags) < limit:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t0 - 0.001) * 1e3)


async def _lag_round(session, url: str, units: list[int], delay: float, timeout: float):  # type: ignore[no-untyped-def]
    lags: list[float] = []
    stop = asyncio.Event()
    monitor = asyncio.create_task(_monitor(stop, lags, int(timeout * 1000)))
    try:
        calls = (_fetch(session, url, "chat_sse", n, delay) for n in units)
        await asyncio.wait_for(asyncio.gather(*calls), timeout)
    finally:
        stop.set()
        await monitor
    return lags


async def _client(url: str, args: argparse.Namespace) -> dict:
    import aiohttp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from _common import CountingExporter
    from aiohttp_llm_tracing import create_trace_config

    records: list[dict] = []
    _install_timers(records)
    exporter, provider = CountingExporter(), TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    config = create_trace_config(tracer_provider=provider, capture_content=True)
    conn = {"limit": args.streams}
    traced = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn), trace_configs=[config])
    untraced = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn))
    cases, sent = {}, 0
    try:
        for case in args.cases.split(","):
            units = await _units_for(untraced, url, case, args.size)
            size = await _fetch(untraced, url, case, units, decoded=True)
            wire = await _fetch(traced, url, case, units)  # warm-up
            records.clear()
            for _ in range(args.calls):
                await _fetch(traced, url, case, units)
            sent += args.calls + 1
            cases[case] = _case_row(records, units=units, bytes=size, wire_bytes=wire)
            print(f"{case}: {size} B, median {cases[case]['median_ms']:.2f} ms", file=sys.stderr)
        # Loop lag: sizes spread evenly, so the streams end one after another.
        per_kib, n = (await _units_for(untraced, url, "chat_sse", 1 << 20)) / 1024, args.streams
        step = (args.lag_max_kib - args.lag_min_kib) / max(1, n - 1)
        kib = [args.lag_min_kib + step * i for i in range(n)]
        units = [max(1, round(k * per_kib)) for k in kib]
        lags: dict[str, list[list[float]]] = {"untraced": [], "traced": []}
        ends_in_lag: list[float] = []
        ends_in_lag_cpu: list[float] = []
        # Warm, unmeasured: every connection opened and a whole round of the real sizes run
        # once in each mode. With a round of tiny streams only, the first measured round
        # (untraced) came out 10 times the others' p99 in every run: first-time costs, not lag.
        for session in (untraced, traced):
            await _lag_round(session, url, [2] * n, 0.0, args.round_timeout)
            await _lag_round(session, url, units, args.lag_delay, args.round_timeout)
        sent += 2 * n
        for r in range(args.rounds):
            for mode in ("untraced", "traced")[:: 1 if r % 2 == 0 else -1]:
                records.clear()
                session = traced if mode == "traced" else untraced
                lag = await _lag_round(session, url, units, args.lag_delay, args.round_timeout)
                lags[mode].append(lag)
                ends_in_lag += [rec["end"] / 1e6 for rec in records]
                ends_in_lag_cpu += [rec["end_cpu"] / 1e6 for rec in records]
                sent += n if mode == "traced" else 0
                print(f"round {r + 1} {mode}: p99 {percentile(lag, 99):.2f} ms", file=sys.stderr)
    finally:
        await traced.close()
        await untraced.close()
        provider.shutdown()
    if exporter.count < sent:
        raise RuntimeError(f"exported {exporter.count} < {sent} traced requests")
    lag_rows = {mode: _lag_stats(rounds) for mode, rounds in lags.items()}
    lag_rows["traced"]["end_max_ms"] = max(ends_in_lag)
    lag_rows["traced"]["end_median_ms"] = statistics.median(ends_in_lag)
    lag_rows["traced"]["end_cpu_max_ms"] = max(ends_in_lag_cpu)
    lag_rows["traced"]["end_cpu_median_ms"] = statistics.median(ends_in_lag_cpu)
    return {"cases": cases, "lag": lag_rows, "stream_kib": kib}


def _lag_stats(rounds: list[list[float]]) -> dict:
    pooled = [v for lag in rounds for v in lag]
    stats = {f"p{q}_ms": percentile(pooled, q) for q in (50, 99)}
    stats |= {"max_ms": max(pooled), "rounds": len(rounds), "samples": len(pooled)}
    return stats | {"p99_ms_by_round": [percentile(lag, 99) for lag in rounds]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="timed calls per case")
    parser.add_argument("--size", type=int, default=1_040_000, help="body bytes per case")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams (lag)")
    parser.add_argument("--rounds", type=int, default=3, help="lag rounds per mode")
    parser.add_argument("--lag-min-kib", type=float, default=64)
    parser.add_argument("--lag-max-kib", type=float, default=256)
    parser.add_argument("--lag-delay", type=float, default=0.004, help="s between chunks")
    parser.add_argument("--round-timeout", type=float, default=60, help="s per lag round")
    parser.add_argument("--budget-ms", type=float, default=5.0, help="the stall bound")
    parser.add_argument("--out", default=str(HERE / "results" / "stalls.json"))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0

    from _common import pin_to_cpu, script_server

    with script_server(Path(__file__), cpu=1) as url:
        pin_to_cpu(0)
        result = asyncio.run(_client(url, args))
    cases, lag = result["cases"], result["lag"]
    report = {
        "machine": os.uname().machine,
        "python": sys.version.split()[0],
        "method": "HttpSpan.end and _finish timed with perf_counter_ns (and thread_time_ns) on "
        "real requests to the "
        "mock (own process, CPU 1) from a traced session (CPU 0); loop lag = lateness of a "
        "1 ms sleep loop during concurrent paced streams, traced and untraced rounds alternating",
        "size_bytes": args.size,
        "streams": args.streams,
        "stream_kib": [result["stream_kib"][0], result["stream_kib"][-1]],
        "lag_delay_s": args.lag_delay,
        "cases": cases,
        "lag": lag,
        "summary": {
            "budget_ms": args.budget_ms,
            "end_max_ms": max(row["max_ms"] for row in cases.values()),
            "end_cpu_max_ms": max(row["cpu_max_ms"] for row in cases.values()),
            "cases_over_budget": [k for k, row in cases.items() if row["max_ms"] > args.budget_ms],
        }
        | {f"lag_{k}_{mode}_ms": lag[mode][f"{k}_ms"] for k in ("p99", "max") for mode in lag},
    }
    from _common import write_report

    write_report(args.out, report)
    _print(report)
    return 0


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    table = Table(
        title="End-of-call work on the event loop (HttpSpan.end + _finish; steps: medians), ms"
    )
    short = ("req parse", "resp parse", "attrs", "rest", "gate", "sdk")
    cols = ("case", "KiB", "calls", "median", "max", *short, "gc young/full (n)", "flags")
    for col in cols:
        table.add_column(col, justify="left" if col in ("case", "flags") else "right")
    for name, row in report["cases"].items():
        ms = [row["median_ms"], row["max_ms"], *(row["phases_median_ms"][k] for k in PHASES)]
        gc_ms = f"{row['gc_young_ms_max']:.1f}/{row['gc_full_ms_max']:.1f}"
        gc_ms += f" ({row['calls_with_full_gc']})"
        kib, flags = f"{row['bytes'] / 1024:.0f}", ", ".join(row["flags"]) or "-"
        table.add_row(name, kib, str(row["calls"]), *(f"{v:.2f}" for v in ms), gc_ms, flags)
    console.print(table)
    lo, hi = report["stream_kib"]
    table = Table(title=f"Loop lag, {report['streams']} streams of {lo:.0f}-{hi:.0f} KiB, ms")
    cols = ("mode", "rounds", "samples", "p50", "p99", "max", "p99 by round", "end max (cpu)")
    for col in cols:
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, row in report["lag"].items():
        ms = [f"{row[k]:.3f}" for k in ("p50_ms", "p99_ms", "max_ms")]
        by_round = " ".join(f"{v:.2f}" for v in row["p99_ms_by_round"])
        end = "-"
        if "end_max_ms" in row:
            end = f"{row['end_max_ms']:.2f} ({row['end_cpu_max_ms']:.2f})"
        table.add_row(mode, str(row["rounds"]), str(row["samples"]), *ms, by_round, end)
    console.print(table)
    for key, value in report["summary"].items():
        console.print(f"{key:<28} {value if isinstance(value, list) else f'{value:.3f}'}")


if __name__ == "__main__":
    sys.exit(main())
