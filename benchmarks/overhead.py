"""Per-request overhead of the trace config against bare aiohttp and the OTel contrib one.

    python benchmarks/overhead.py [--reps 5] [--requests 3000]

A loopback aiohttp server runs in its own process. Every (mode, concurrency) run is a fresh
client process; modes are interleaved and rotated across repetitions so the machine's speed
drift hits them alike; medians, min and max are reported. Every traced mode exports through a
BatchSpanProcessor into a no-op exporter, flushed inside the timed window. Results are printed
and written to benchmarks/results/overhead.json.

``floor_plain`` is a reference, not a tracer: a trace config that only starts an SDK span with two
attributes and ends it with the status. Its ratio to contrib shows how much of any tracer's cost
is the span itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = {
    # name: (traced by, request kind)
    "bare_plain": ("bare", "plain"),
    "ours_plain": ("ours", "plain"),
    "contrib_plain": ("contrib", "plain"),
    "floor_plain": ("floor", "plain"),
    "bare_chat": ("bare", "chat"),
    "ours_chat": ("ours", "chat"),
    "bare_sse": ("bare", "sse"),
    "ours_sse": ("ours", "sse"),
}
SSE_CHUNKS = 200
_CHAT_BODY = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
}


# -- worker: one client process, one mode ---------------------------------------------------


def _trace_configs(tracer: str, provider):  # type: ignore[no-untyped-def]
    if tracer == "ours":
        from aiohttp_llm_tracing import create_trace_config

        return [create_trace_config(tracer_provider=provider)]
    if tracer == "contrib":
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config

        return [create_trace_config(tracer_provider=provider)]
    if tracer == "floor":
        return [_floor_trace_config(provider)]
    return []


def _floor_trace_config(provider):  # type: ignore[no-untyped-def]
    """The least a span per request can cost: start with two attributes, end with the status.

    No request ID, no registry, no propagation, no error or body handling: a reference point,
    not a usable tracer. Whatever any tracer adds costs on top of this.
    """
    import aiohttp
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("floor")
    config = aiohttp.TraceConfig()

    async def start(session, ctx, params):  # type: ignore[no-untyped-def]
        ctx.span = tracer.start_span(
            params.method,
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": params.method, "url.full": str(params.url)},
        )

    async def end(session, ctx, params):  # type: ignore[no-untyped-def]
        ctx.span.set_attribute("http.response.status_code", params.response.status)
        ctx.span.end()

    config.on_request_start.append(start)
    config.on_request_end.append(end)
    return config


async def _worker(mode: str, url: str, n: int, concurrency: int, warmup: int) -> dict:
    import aiohttp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from _common import CountingExporter

    tracer, kind = MODES[mode]
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if kind == "plain":
        method, target, body = "GET", f"{url}/json", None
    elif kind == "chat":
        method, target, body = "POST", f"{url}/v1/chat/completions", _CHAT_BODY
    else:
        method, target = "POST", f"{url}/v1/chat/completions?chunks={SSE_CHUNKS}"
        body = {**_CHAT_BODY, "stream": True}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, trace_configs=_trace_configs(tracer, provider)
    ) as session:

        async def one() -> None:
            async with session.request(method, target, json=body) as resp:
                if kind == "sse":
                    async for _ in resp.content:
                        pass
                else:
                    await resp.read()

        async def run(count: int) -> None:
            remaining = count

            async def loop() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await one()

            await asyncio.gather(*(loop() for _ in range(concurrency)))

        await run(warmup)
        provider.force_flush()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await run(n)
        provider.force_flush()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    provider.shutdown()
    if tracer != "bare" and exporter.count < n:
        raise RuntimeError(f"{mode}: exported {exporter.count} < {n}")
    return {"us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}


# -- runner ----------------------------------------------------------------------------------


def _run_worker(mode: str, url: str, n: int, concurrency: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--url",
        url,
        "--requests",
        str(n),
        "--concurrency",
        str(concurrency),
    ]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sse-requests", type=int, default=300)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(HERE / "results" / "overhead.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        n = args.requests
        result = asyncio.run(_worker(args.worker, args.url, n, args.concurrency, max(200, n // 10)))
        print(json.dumps(result))
        return 0

    from _common import server_process

    modes = args.modes.split(",")
    samples: dict[tuple[str, int], list[dict]] = {}
    with server_process(cpu=1) as url:
        for rep in range(args.reps):
            order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
            for concurrency in (1, 50):
                for mode in order:
                    n = args.sse_requests if MODES[mode][1] == "sse" else args.requests
                    result = _run_worker(mode, url, n, concurrency)
                    samples.setdefault((mode, concurrency), []).append(result)
                    print(
                        f"rep {rep + 1} c{concurrency:<3} {mode:<14} {result['us']:8.1f} us/req",
                        file=sys.stderr,
                        flush=True,
                    )
    report = _report(samples, modes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return 0


def _report(samples: dict[tuple[str, int], list[dict]], modes: list[str]) -> dict:
    rows = {}
    for (mode, conc), runs in samples.items():
        us = [r["us"] for r in runs]
        rows[f"{mode}@c{conc}"] = {
            "mode": mode,
            "concurrency": conc,
            "median_us": statistics.median(us),
            "min_us": min(us),
            "max_us": max(us),
            "runs_us": us,
            "cpu_median_us": statistics.median(r["cpu_us"] for r in runs),
        }
    for row in rows.values():
        kind = MODES[row["mode"]][1]
        bare = rows.get(f"bare_{kind}@c{row['concurrency']}")
        row["overhead_us"] = row["median_us"] - bare["median_us"] if bare else None
    summary = {}
    for conc in (1, 50):
        contrib = rows.get(f"contrib_plain@c{conc}", {}).get("overhead_us")
        ours = {
            k: rows.get(f"ours_{k}@c{conc}", {}).get("overhead_us")
            for k in ("plain", "chat", "sse")
        }
        if contrib:
            for key in ("plain", "chat"):
                if ours[key] is not None:
                    summary[f"c{conc}_{key}_ratio_to_contrib"] = ours[key] / contrib
        floor = rows.get(f"floor_plain@c{conc}", {}).get("overhead_us")
        if contrib and floor is not None:
            summary[f"c{conc}_floor_ratio_to_contrib"] = floor / contrib
        if ours["sse"] is not None and ours["chat"] is not None:
            summary[f"c{conc}_sse_us_per_chunk"] = (ours["sse"] - ours["chat"]) / SSE_CHUNKS
        for row in rows.values():
            if row["concurrency"] == conc and contrib and row["overhead_us"] is not None:
                row["ratio_to_contrib"] = row["overhead_us"] / contrib
    return {
        "machine": os.uname().machine,
        "python": sys.version.split()[0],
        "sse_chunks": SSE_CHUNKS,
        "rows": rows,
        "summary": summary,
    }


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Overhead per request (median of reps; min-max)")
    for col in ("mode", "conc", "us/req", "min-max", "overhead us", "x contrib"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    for row in sorted(report["rows"].values(), key=lambda r: (r["concurrency"], r["mode"])):
        ovh = row["overhead_us"]
        ratio = row.get("ratio_to_contrib")
        table.add_row(
            row["mode"],
            str(row["concurrency"]),
            f"{row['median_us']:.1f}",
            f"{row['min_us']:.0f}-{row['max_us']:.0f}",
            "-" if ovh is None else f"{ovh:+.1f}",
            "-" if ratio is None else f"{ratio:.2f}",
        )
    console = Console()
    console.print(table)
    for key, value in report["summary"].items():
        console.print(f"{key:<32} {value:.3f}")


if __name__ == "__main__":
    sys.exit(main())
