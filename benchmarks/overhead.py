"""Per-request overhead of the trace config against bare aiohttp and the OTel contrib one.

    python benchmarks/overhead.py [--reps 5] [--rounds 12] [--requests 300]

A loopback aiohttp server runs in its own process (CPU 1). For each concurrency (1 and 50), each
rep is one fresh client process (CPU 0) holding every mode warm side by side, each with its own
session, TracerProvider and BatchSpanProcessor into a no-op exporter (flushed inside the timed
window). Bursts of each mode take turns round by round, in rotated order (reversed every other
round, so no mode always follows the same neighbour), and a mode's overhead is the median over
rounds of its burst minus bare's burst of the same round: this machine's speed drifts by up to 4x
over minutes, and only a difference taken side by side cancels it. Reported: the median of reps
(each rep's figure is shown), process CPU alongside wall time.
Results are printed and written to benchmarks/results/overhead.json.

Two reference modes: ``floor_plain`` is not a tracer but a trace config that only starts an SDK
span with two attributes and ends it with the status, so its ratio to contrib shows how much of
any tracer's cost is the span itself (``floorm_plain`` is the same plus one SDK histogram record
of ``http.client.request.duration``, the least any tracer with metrics on pays for them, and
``floorc_plain`` the floor writing our span's very content and headers with no lifecycle around
them, so ``floorc - floor`` is what that content costs in the SDK and ``ours - floorc`` what our
registry, exactly-once end and LLM check cost);
``lean_plain`` is ours with ``propagate=False``, ``request_id_header=None`` and ``llm=False``, so
the gap between it and ``ours_plain`` is what those defaults cost.

``inst_plain`` is ours reached through the instrumentor, ``instrument(tracer_provider=...)``, with
the same default options as ``ours_plain``: the two should cost the same, and
``c{conc}_inst_minus_ours_us`` (the median over reps of each rep's median of same-round
differences) is the check. The instrumentor is on only while that mode's session is built, and
the worker asserts that no other mode's session picked up its config.
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

from _common import CHAT_BODY, round_order  # noqa: E402

MODES = {
    # name: (traced by, request kind)
    "bare_plain": ("bare", "plain"),
    "ours_plain": ("ours", "plain"),
    "inst_plain": ("inst", "plain"),  # ours, appended by instrument() rather than by hand
    "instm_plain": ("instm", "plain"),  # the same with the metrics on, as a user runs it
    "contrib_plain": ("contrib", "plain"),
    "floor_plain": ("floor", "plain"),
    "floorm_plain": ("floorm", "plain"),  # the floor plus the SDK's one histogram record
    "floorc_plain": ("floorc", "plain"),  # the floor writing our span's content and headers
    "lean_plain": ("lean", "plain"),
    "bare_chat": ("bare", "chat"),
    "ours_chat": ("ours", "chat"),
    "bare_sse": ("bare", "sse"),
    "ours_sse": ("ours", "sse"),
}
SSE_CHUNKS = 200


# -- worker: one client process, one mode ---------------------------------------------------


def _trace_configs(tracer: str, provider):  # type: ignore[no-untyped-def]
    if tracer == "ours":
        from aiohttp_llm_tracing import create_trace_config

        return [create_trace_config(tracer_provider=provider)]
    if tracer == "contrib":
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config

        return [create_trace_config(tracer_provider=provider)]
    if tracer == "lean":
        # Ours with the optional per-request extras off: what the registry, the request ID and
        # exactly-once ending cost on top of the floor.
        from aiohttp_llm_tracing import create_trace_config

        return [
            create_trace_config(
                tracer_provider=provider, propagate=False, request_id_header=None, llm=False
            )
        ]
    if tracer == "floor":
        from _common import floor_trace_config

        return [floor_trace_config(provider)]
    if tracer == "floorc":
        from _common import content_floor_trace_config

        return [content_floor_trace_config(provider)]
    if tracer == "floorm":
        from _common import floor_trace_config, null_meter_provider

        return [floor_trace_config(provider, null_meter_provider())]
    return []


class _Mode:
    """One mode's session, provider and request, warm and ready for bursts."""

    def __init__(self, name: str, url: str, concurrency: int) -> None:
        import aiohttp
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from _common import CountingExporter

        self.name = name
        self.tracer, self.kind = MODES[name]
        self.exporter = CountingExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        if self.kind == "plain":
            self.method, self.target, self.body = "GET", f"{url}/json", None
        elif self.kind == "chat":
            self.method, self.target = "POST", f"{url}/v1/chat/completions"
            self.body = CHAT_BODY
        else:
            self.method = "POST"
            self.target = f"{url}/v1/chat/completions?chunks={SSE_CHUNKS}"
            self.body = {**CHAT_BODY, "stream": True}
        self.concurrency = concurrency
        connector = aiohttp.TCPConnector(limit=concurrency)
        self.configs = _trace_configs(self.tracer, self.provider)
        if self.tracer in ("inst", "instm"):
            from aiohttp_llm_tracing import instrument

            options = {}
            if self.tracer == "instm":
                from _common import null_meter_provider

                self.meter_provider = null_meter_provider()
                options["meter_provider"] = self.meter_provider
            # Instrumented only while this one session is built: every other mode's session is
            # built outside the window and must stay as its mode made it (see _check_sessions).
            instrumentor = instrument(tracer_provider=self.provider, **options)
            try:
                self.session = aiohttp.ClientSession(connector=connector)
            finally:
                instrumentor.uninstrument()
            self.configs = [instrumentor.trace_config]
        else:
            self.session = aiohttp.ClientSession(connector=connector, trace_configs=self.configs)
        self.sent = 0

    async def _one(self) -> None:
        async with self.session.request(self.method, self.target, json=self.body) as resp:
            if self.kind == "sse":
                async for _ in resp.content:
                    pass
            else:
                await resp.read()

    async def run(self, count: int) -> None:
        remaining = count

        async def loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self._one()

        await asyncio.gather(*(loop() for _ in range(self.concurrency)))
        self.sent += count

    async def burst(self, count: int) -> tuple[float, float]:
        """µs per request, wall and process CPU (all threads), span export included."""
        self.provider.force_flush()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await self.run(count)
        self.provider.force_flush()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return wall / count * 1e6, cpu / count * 1e6

    async def close(self) -> None:
        await self.session.close()
        self.provider.shutdown()
        if self.tracer != "bare" and self.exporter.count < self.sent:
            raise RuntimeError(f"{self.name}: exported {self.exporter.count} < {self.sent}")


def _check_sessions(runners: list[_Mode]) -> None:
    """The instrumentor is off again, and only the inst mode's session carries its config."""
    import aiohttp

    from aiohttp_llm_tracing import AiohttpLLMInstrumentor, TracingTraceConfig

    instrumentor = AiohttpLLMInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry or hasattr(
        aiohttp.ClientSession.__init__, "__wrapped__"
    ):
        raise RuntimeError("the instrumentor is still on after the inst session was built")
    for mode in runners:
        configs = list(mode.session.trace_configs)
        instrumented = mode.tracer in ("inst", "instm")
        expected = mode.configs  # for the instrumented modes, the config instrument() built
        same = len(configs) == len(expected) and all(a is b for a, b in zip(configs, expected))
        if instrumented:
            same = same and isinstance(configs[0], TracingTraceConfig)
        if not same:
            raise RuntimeError(f"{mode.name}: session has {configs}, expected {expected}")


async def _worker(
    modes: list[str], url: str, concurrency: int, rounds: int, n: int, sse_n: int
) -> dict:
    """One client process: every mode warm side by side, bursts rotated round by round."""
    runners = [_Mode(name, url, concurrency) for name in modes]
    _check_sessions(runners)
    count = {m.name: sse_n if m.kind == "sse" else n for m in runners}
    for mode in runners:
        await mode.run(max(100, count[mode.name] // 2))
    samples: dict[str, list[tuple[float, float]]] = {m.name: [] for m in runners}
    for r in range(rounds):
        for mode in round_order(runners, r):
            samples[mode.name].append(await mode.burst(count[mode.name]))
    for mode in runners:
        await mode.close()
    return {
        name: {"us": [s[0] for s in runs], "cpu_us": [s[1] for s in runs]}
        for name, runs in samples.items()
    }


# -- runner ----------------------------------------------------------------------------------


def _run_worker(modes: list[str], url: str, concurrency: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        ",".join(modes),
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--rounds",
        str(args.rounds),
        "--requests",
        str(args.requests),
        "--sse-requests",
        str(args.sse_requests),
    ]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="client processes per concurrency")
    parser.add_argument("--rounds", type=int, default=12, help="bursts per mode in each process")
    parser.add_argument("--requests", type=int, default=300, help="requests per burst")
    parser.add_argument("--sse-requests", type=int, default=30, help="streams per SSE burst")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(HERE / "results" / "overhead.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = asyncio.run(
            _worker(
                args.worker.split(","),
                args.url,
                args.concurrency,
                args.rounds,
                args.requests,
                args.sse_requests,
            )
        )
        print(json.dumps(result))
        return 0

    from _common import server_process

    modes = args.modes.split(",")
    for kind in {MODES[m][1] for m in modes}:
        if f"bare_{kind}" not in modes:
            modes.insert(0, f"bare_{kind}")
    runs: dict[int, list[dict]] = {1: [], 50: []}
    with server_process(cpu=1) as url:
        for rep in range(args.reps):
            for concurrency in (1, 50):
                result = _run_worker(modes, url, concurrency, args)
                runs[concurrency].append(result)
                line = " ".join(f"{m}={statistics.median(v['us']):.0f}" for m, v in result.items())
                print(
                    f"rep {rep + 1} c{concurrency:<3} us/req: {line}", file=sys.stderr, flush=True
                )
    report = _report(runs, modes)
    from _common import write_report

    write_report(args.out, report)
    _print(report)
    return 0


def _report(runs: dict[int, list[dict]], modes: list[str]) -> dict:
    """Medians over client processes of each process's per-round paired differences."""
    rows: dict[str, dict] = {}
    for conc, reps in runs.items():
        for mode in modes:
            bare = f"bare_{MODES[mode][1]}"
            per_rep_us, ovh, cpu_ovh = [], [], []
            for rep in reps:
                us, base = rep[mode]["us"], rep[bare]["us"]
                per_rep_us.append(statistics.median(us))
                # Same round, same machine state: the difference cancels the drift.
                ovh.append(statistics.median(a - b for a, b in zip(us, base)))
                cpu, cpu_base = rep[mode]["cpu_us"], rep[bare]["cpu_us"]
                cpu_ovh.append(statistics.median(a - b for a, b in zip(cpu, cpu_base)))
            rows[f"{mode}@c{conc}"] = {
                "mode": mode,
                "concurrency": conc,
                "median_us": statistics.median(per_rep_us),
                "min_us": min(per_rep_us),
                "max_us": max(per_rep_us),
                "overhead_us": statistics.median(ovh),
                "overhead_us_by_rep": ovh,
                "cpu_overhead_us": statistics.median(cpu_ovh),
                "rounds": len(reps[0][mode]["us"]),
            }
    summary = {}
    for conc, reps in runs.items():
        inst, ours = rows.get(f"inst_plain@c{conc}"), rows.get(f"ours_plain@c{conc}")
        if inst is not None and ours is not None:
            # Paired like every overhead: inst minus ours in the same round, then median of reps.
            by_rep = [
                statistics.median(
                    a - b for a, b in zip(r["inst_plain"]["us"], r["ours_plain"]["us"])
                )
                for r in reps
            ]
            inst["minus_ours_us_by_rep"] = by_rep
            summary[f"c{conc}_inst_minus_ours_us"] = statistics.median(by_rep)
            if ours["overhead_us"]:
                summary[f"c{conc}_inst_to_ours_ratio"] = inst["overhead_us"] / ours["overhead_us"]
        floor = rows.get(f"floor_plain@c{conc}")
        for key in ("ours_plain", "inst_plain", "instm_plain", "lean_plain"):
            if floor is None or f"{key}@c{conc}" not in rows:
                continue
            # What we add above the SDK span itself, paired round by round like the rest.
            above = [
                statistics.median(a - b for a, b in zip(r[key]["us"], r["floor_plain"]["us"]))
                for r in reps
            ]
            rows[f"{key}@c{conc}"]["minus_floor_us_by_rep"] = above
            summary[f"c{conc}_{key}_minus_floor_us"] = statistics.median(above)
        pairs = (
            ("floorm_plain", "floor_plain"),
            ("instm_plain", "floorm_plain"),
            ("floorc_plain", "floor_plain"),
            ("ours_plain", "floorc_plain"),
        )
        for key, ref in pairs:
            if f"{key}@c{conc}" in rows and f"{ref}@c{conc}" in rows:
                # Paired like the rest: same-round differences, median of rounds, then of reps.
                summary[f"c{conc}_{key}_minus_{ref.split('_')[0]}_us"] = statistics.median(
                    statistics.median(a - b for a, b in zip(r[key]["us"], r[ref]["us"]))
                    for r in reps
                )
        contrib = rows.get(f"contrib_plain@c{conc}", {}).get("overhead_us")
        for row in rows.values():
            if row["concurrency"] == conc and contrib:
                row["ratio_to_contrib"] = row["overhead_us"] / contrib
        sse, chat = rows.get(f"ours_sse@c{conc}"), rows.get(f"ours_chat@c{conc}")
        if sse is not None and chat is not None:
            summary[f"c{conc}_sse_us_per_chunk"] = (
                sse["overhead_us"] - chat["overhead_us"]
            ) / SSE_CHUNKS
            # At 50 streams the server, not the client, sets the pace, so wall time hides the
            # client's cost: the CPU figure is the one that shows it.
            summary[f"c{conc}_sse_cpu_us_per_chunk"] = (
                sse["cpu_overhead_us"] - chat["cpu_overhead_us"]
            ) / SSE_CHUNKS
        if not contrib:
            continue
        for key in ("ours_plain", "inst_plain", "ours_chat", "floor_plain", "lean_plain"):
            row = rows.get(f"{key}@c{conc}")
            if row is not None:
                summary[f"c{conc}_{key}_ratio_to_contrib"] = row["ratio_to_contrib"]
    return {
        "machine": os.uname().machine,
        "python": sys.version.split()[0],
        "sse_chunks": SSE_CHUNKS,
        "method": "per concurrency, one client process per rep with every mode warm; bursts "
        "rotated and reversed round by round; overhead = median over rounds of (mode - bare) in "
        "the same round, then median over reps",
        "rows": rows,
        "summary": summary,
    }


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Overhead per request (paired with bare per round; median of reps)")
    for col in ("mode", "conc", "us/req", "min-max", "overhead us", "per rep", "cpu", "x contrib"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    order = {mode: i for i, mode in enumerate(MODES)}
    for row in sorted(report["rows"].values(), key=lambda r: (r["concurrency"], order[r["mode"]])):
        ovh = row["overhead_us"]
        ratio = row.get("ratio_to_contrib")
        table.add_row(
            row["mode"],
            str(row["concurrency"]),
            f"{row['median_us']:.1f}",
            f"{row['min_us']:.0f}-{row['max_us']:.0f}",
            "-" if ovh is None else f"{ovh:+.1f}",
            " ".join(f"{v:+.0f}" for v in row["overhead_us_by_rep"]),
            f"{row['cpu_overhead_us']:+.1f}",
            "-" if ratio is None else f"{ratio:.2f}",
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for key, value in report["summary"].items():
        console.print(f"{key:<32} {value:.3f}")
    for row in report["rows"].values():
        if "minus_ours_us_by_rep" in row:
            by_rep = " ".join(f"{v:+.1f}" for v in row["minus_ours_us_by_rep"])
            console.print(f"c{row['concurrency']} inst - ours us, per rep: {by_rep}")


if __name__ == "__main__":
    sys.exit(main())
