"""Cost of creating and closing an ``aiohttp.ClientSession``, bare and under the instrumentor.

    python benchmarks/session_create.py [--reps 5] [--rounds 30] [--sessions 1000]

Each figure is the wall time of ``ClientSession(...)`` followed by ``await session.close()``,
inside a running loop, no request, per session. Five variants:

* ``bare`` - ``ClientSession()`` with the instrumentor off;
* ``instrumented`` - the same call while ``instrument()`` is on (a provider whose exporter drops
  every span): the ``wrapt`` wrapper around ``__init__`` hands the session a one-item list;
* ``bare_list`` - ``ClientSession(trace_configs=caller_list)`` with the instrumentor off, where
  ``caller_list`` is one list holding a plain ``aiohttp.TraceConfig()``, passed to every session
  as litellm does;
* ``copy`` - that same call while instrumented: the wrapper copies the caller's list and
  appends ours (the copy path), never touching the caller's list;
* ``by_hand`` - ``ClientSession(trace_configs=[ours])`` with the instrumentor off, ``ours`` from
  ``create_trace_config`` with the same provider: what a session carrying our config costs
  without the patch, so ``instrumented - by_hand`` is the patch's own share.

One process (pinned to CPU 0 where the OS allows), every variant in it. Each rep is a number of
rounds; in each round every variant runs one burst of ``--sessions`` sessions, in an order rotated
(reversed every other round), with ``instrument()``/``uninstrument()`` and a ``gc.collect()``
between bursts, outside the timed window. Before each burst one probe session checks that the
variant gets exactly the trace configs it should. A variant's cost against a baseline (see
``PAIRS``) is the median over rounds of its burst minus the baseline's burst of the same round, and
the ratio the median of the same-round ratios: this machine's speed drifts over minutes, and only
figures taken side by side cancel it. Reported: the median of reps, with each rep's figure. Results
are printed and written to benchmarks/results/session_create.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aiohttp_llm_tracing import AiohttpLLMInstrumentor, create_trace_config, instrument

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import round_order  # noqa: E402

VARIANTS = {
    # name: (instrumented, what the caller passes as trace_configs)
    "bare": (False, None),
    "instrumented": (True, None),
    "bare_list": (False, "plain"),
    "copy": (True, "plain"),
    "by_hand": (False, "ours"),
}
PAIRS = [  # (variant, baseline)
    ("instrumented", "bare"),
    ("copy", "bare_list"),
    ("by_hand", "bare"),
    ("instrumented", "by_hand"),
]


async def _create_close(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        session = aiohttp.ClientSession()
        await session.close()
    return (time.perf_counter() - start) / n * 1e6


async def _create_close_with(n: int, caller_list: list) -> float:
    start = time.perf_counter()
    for _ in range(n):
        session = aiohttp.ClientSession(trace_configs=caller_list)
        await session.close()
    return (time.perf_counter() - start) / n * 1e6


class _Bench:
    """The provider, the caller's list and the instrumentor switch shared by every burst."""

    def __init__(self) -> None:
        from _common import CountingExporter

        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(CountingExporter()))
        self.plain = aiohttp.TraceConfig()
        self.ours = create_trace_config(tracer_provider=self.provider)
        self.lists = {"plain": [self.plain], "ours": [self.ours]}
        self.instrumentor = AiohttpLLMInstrumentor()

    async def _probe(self, instrumented: bool, caller_list: list | None) -> None:
        """One untimed session: it must carry exactly what this variant should give it."""
        before = list(caller_list or [])
        session = aiohttp.ClientSession(trace_configs=caller_list)
        configs = list(session.trace_configs)
        await session.close()
        expected = [*before, self.instrumentor.trace_config] if instrumented else before
        if len(configs) != len(expected) or not all(a is b for a, b in zip(configs, expected)):
            raise RuntimeError(f"session got {configs}, expected {expected}")
        if caller_list is not None and caller_list != before:
            raise RuntimeError(f"the caller's list was changed: {caller_list}")

    async def burst(self, name: str, n: int) -> float:
        """µs per session created and closed, for one variant."""
        instrumented, passed = VARIANTS[name]
        caller_list = None if passed is None else self.lists[passed]
        if instrumented:
            instrument(tracer_provider=self.provider)
        try:
            await self._probe(instrumented, caller_list)
            gc.collect()
            if caller_list is not None:
                return await _create_close_with(n, caller_list)
            return await _create_close(n)
        finally:
            if instrumented:
                self.instrumentor.uninstrument()

    def close(self) -> None:
        self.provider.shutdown()


async def _measure(names: list[str], reps: int, rounds: int, n: int) -> list[dict]:
    """Per rep, each variant's µs per burst, round by round."""
    bench = _Bench()
    for name in names:  # warm every path once
        await bench.burst(name, n)
    runs = []
    for _ in range(reps):
        samples: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in round_order(names, r):
                samples[name].append(await bench.burst(name, n))
        runs.append(samples)
    bench.close()
    return runs


def _report(runs: list[dict], args: argparse.Namespace) -> dict:
    variants: dict[str, dict] = {}
    for name in VARIANTS:
        per_rep = [statistics.median(rep[name]) for rep in runs]
        variants[name] = {
            "us": statistics.median(per_rep),
            "us_by_rep": per_rep,
            "min_us": min(per_rep),
            "max_us": max(per_rep),
        }
    pairs: dict[str, dict] = {}
    for name, base in PAIRS:
        # Same round, same machine state: the difference and the ratio cancel the drift.
        diffs = [statistics.median(a - b for a, b in zip(r[name], r[base])) for r in runs]
        ratios = [statistics.median(a / b for a, b in zip(r[name], r[base])) for r in runs]
        pairs[f"{name}_vs_{base}"] = {
            "variant": name,
            "baseline": base,
            "minus_us": statistics.median(diffs),
            "minus_us_by_rep": diffs,
            "ratio": statistics.median(ratios),
            "ratio_by_rep": ratios,
        }
    summary = {f"{name}_us": row["us"] for name, row in variants.items()}
    for pair in pairs.values():
        summary[f"{pair['variant']}_minus_{pair['baseline']}_us"] = pair["minus_us"]
        summary[f"ratio_{pair['variant']}_to_{pair['baseline']}"] = pair["ratio"]
    return {
        "machine": os.uname().machine,
        "python": sys.version.split()[0],
        "aiohttp": aiohttp.__version__,
        "sessions_per_burst": args.sessions,
        "rounds": args.rounds,
        "reps": args.reps,
        "method": "one process; per rep, rounds of one burst per variant in rotated order, "
        "reversed every other round, "
        "instrument()/uninstrument() and gc.collect() outside the timed window; cost = median "
        "over rounds of (variant - baseline) in the same round, ratio = median of same-round "
        "ratios, then median over reps",
        "variants": variants,
        "pairs": pairs,
        "summary": summary,
    }


def _print(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    table = Table(title="Session create + close, µs each (median of reps)")
    for col in ("variant", "us/session", "min-max", "per rep"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, row in report["variants"].items():
        table.add_row(
            name,
            f"{row['us']:.2f}",
            f"{row['min_us']:.2f}-{row['max_us']:.2f}",
            " ".join(f"{v:.2f}" for v in row["us_by_rep"]),
        )
    console.print(table)
    table = Table(title="Paired with the baseline per round (median of reps)")
    for col in ("variant", "baseline", "+us", "per rep", "ratio", "ratio per rep"):
        table.add_column(col, justify="left" if col in ("variant", "baseline") else "right")
    for pair in report["pairs"].values():
        table.add_row(
            pair["variant"],
            pair["baseline"],
            f"{pair['minus_us']:+.2f}",
            " ".join(f"{v:+.2f}" for v in pair["minus_us_by_rep"]),
            f"{pair['ratio']:.3f}",
            " ".join(f"{v:.3f}" for v in pair["ratio_by_rep"]),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="sets of rounds, each one figure")
    parser.add_argument("--rounds", type=int, default=30, help="bursts per variant in each rep")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions per burst")
    parser.add_argument("--out", default=str(HERE / "results" / "session_create.json"))
    args = parser.parse_args(argv)
    from _common import pin_to_cpu

    pin_to_cpu(0)
    runs = asyncio.run(_measure(list(VARIANTS), args.reps, args.rounds, args.sessions))
    report = _report(runs, args)
    from _common import write_report

    write_report(args.out, report)
    _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
