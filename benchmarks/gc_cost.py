"""What the cyclic garbage collector costs per LLM call, for bare aiohttp, ours and the peers.

    python benchmarks/gc_cost.py [--modes bare,ours,openai_v2] [--kind json] [--calls 3000]
                                 [--modes ours,ours_ref --ref <git ref>]

``instructions.py`` freezes the warm heap (``gc.freeze()``) so that one full collection cannot
land in one of its two runs and decide the figure; that also keeps full collections of the warm
heap out of its counts. This measures them instead, in the worker of ``llm_peers.py`` (same
client, same server, same checks that the mode traces): after the warm-up, bursts of 150 calls
at concurrency 20 with the spans flushed after each burst, as ``llm_peers.py`` runs them, and no
freeze. A ``gc.callbacks`` hook times every collection. Per mode and repetition (fresh worker
processes in rotated order, client on CPU 0, server on CPU 1): collections per 1,000 calls and
the time spent in them per call, by generation; the median over repetitions is reported.

For our modes it also watches every loop turn that does queued ends (``_deferred``): the share
that leaves the young generation's allocation count at zero, and the count's change per end.
CPython counts a container's allocation up and its free down, but not below zero, so frees done
right after a collection are not counted, and the next collection comes that much sooner.
``ours_ref`` runs another version (``--ref``, exported from git) beside this one.

Timing is in wall time, so the usual drift of this machine applies to the microseconds; the
collection counts do not drift. Results: benchmarks/results/gc_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import _server, ref_source, write_report  # noqa: E402
from _peers_worker import LABELS, MODES, mode_env  # noqa: E402

RESULTS = HERE / "results" / "gc_cost.json"
BURST = 150
GENERATIONS = 3


async def _measure(mode: str, url: str, kind: str, calls: int) -> dict:  # type: ignore[type-arg]
    from _peers_worker import Worker

    spent = [0.0] * GENERATIONS
    count = [0] * GENERATIONS
    started = [0.0]

    def hook(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            count[info["generation"]] += 1

    worker = Worker(mode, url)
    worker._instrument()
    turns = _watch_drains(mode)
    await worker._check()
    await worker._run(kind, 2 * BURST, 20)
    gc.collect()
    turns.clear()
    tracked = len(gc.get_objects())
    bursts = max(1, calls // BURST)
    gc.callbacks.append(hook)
    t0 = time.perf_counter()
    try:
        for _ in range(bursts):
            await worker._run(kind, BURST, 20)
            worker._flush()
    finally:
        gc.callbacks.remove(hook)
    wall = time.perf_counter() - t0
    await worker.close()
    n = bursts * BURST
    ends = sum(k for k, _, _ in turns)
    return {
        "mode": mode,
        "calls": n,
        # Turns that did queued ends: how many, how many left the young generation's count at
        # zero (its allocator stops counting frees there), and the count's change per end.
        "drain_turns": len(turns),
        "drain_turns_at_zero": sum(1 for _, _, after in turns if after == 0),
        "count_change_per_queued_end": (
            round(sum(after - before for _, before, after in turns) / ends, 2) if ends else None
        ),
        "us_per_call": wall / n * 1e6,
        "gc_us_per_call": [s / n * 1e6 for s in spent],
        "collections_per_1000": [c * 1000 / n for c in count],
        "tracked_after_warmup": tracked,
    }


def _watch_drains(mode: str) -> list[tuple[int, int, int]]:
    """Record ``(ends done, young count before, after)`` for every turn that does queued ends
    (``_deferred``), for modes of ours; the list stays empty for the others."""
    turns: list[tuple[int, int, int]] = []
    if not mode.startswith("ours"):
        return turns
    from aiohttp_llm_tracing import _deferred

    turn = _deferred._drain_turn

    def watched(loop: object) -> None:
        ends, before = len(_deferred._queue), gc.get_count()[0]
        turn(loop)  # type: ignore[arg-type]
        turns.append((ends, before, gc.get_count()[0]))

    _deferred._drain_turn = watched  # type: ignore[assignment]
    return turns


def _worker(python: Path, mode: str, url: str, kind: str, calls: int) -> dict:  # type: ignore[type-arg]
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", mode, "--url", url]
    cmd += ["--kind", kind, "--calls", str(calls)]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.run(
        cmd, env=mode_env(mode, url), capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:  # type: ignore[type-arg]
    """Median over repetitions, per mode, of every figure a worker reports."""
    out: dict[str, dict] = {}  # type: ignore[type-arg]
    for mode in dict.fromkeys(r["mode"] for r in runs):
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {
            "us_per_call": statistics.median(r["us_per_call"] for r in mine),
            "gc_us_per_call": [
                statistics.median(r["gc_us_per_call"][g] for r in mine) for g in range(GENERATIONS)
            ],
            "collections_per_1000": [
                statistics.median(r["collections_per_1000"][g] for r in mine)
                for g in range(GENERATIONS)
            ],
            "gc_us_per_call_by_rep": [round(sum(r["gc_us_per_call"]), 2) for r in mine],
        }
        out[mode]["gc_us_per_call_total"] = sum(out[mode]["gc_us_per_call"])
        turns = sum(r.get("drain_turns", 0) for r in mine)
        if turns:
            out[mode]["drain_turns_at_zero_share"] = round(
                sum(r["drain_turns_at_zero"] for r in mine) / turns, 3
            )
            out[mode]["count_change_per_queued_end"] = statistics.median(
                r["count_change_per_queued_end"] for r in mine
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="bare,ours,openai_v2", help=f"from {','.join(MODES)}")
    p.add_argument("--kind", default="json", choices=("json", "stream"))
    p.add_argument("--calls", type=int, default=3000, help="calls per worker after the warm-up")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--ref", help="git ref of another version for the ours_ref mode")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(_measure(args.worker, args.url, args.kind, args.calls))))
        return 0
    from llm_peers import VENV, ensure_venv

    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}")
    python = ensure_venv(VENV)
    t0 = time.monotonic()
    runs = []
    if ("ours_ref" in modes) != (args.ref is not None):
        p.error("--ref and the ours_ref mode go together")
    with ref_source(args.ref), _server(HERE / "_peers_server.py", [], [], 1) as url:
        for rep in range(args.reps):
            for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
                runs.append(_worker(python, mode, url, args.kind, args.calls) | {"rep": rep})
    rows = summarise(runs)
    print(f"{args.kind}: median of {args.reps} reps; bursts of {BURST} at concurrency 20")
    print(f"{'mode':<14} {'us/call':>8} {'gc us/call':>11}  by generation (collections/1000)")
    for mode, r in rows.items():
        gens = "  ".join(
            f"{us:6.2f} ({n:4.1f})" for us, n in zip(r["gc_us_per_call"], r["collections_per_1000"])
        )
        drains = ""
        if "drain_turns_at_zero_share" in r:
            drains = (
                f"  queued-end turns leaving the count at 0: {r['drain_turns_at_zero_share']:.0%},"
                f" count change per end {r['count_change_per_queued_end']:+.1f}"
            )
        print(
            f"{mode:<14} {r['us_per_call']:8.0f} {r['gc_us_per_call_total']:11.2f}  {gens}{drains}"
        )
    write_report(
        args.out,
        {
            "benchmark": "gc_cost",
            "method": (
                f"bursts of {BURST} calls at concurrency 20, spans flushed after each, no "
                "gc.freeze(); gc.callbacks times each collection; median over reps"
            ),
            "python": sys.version.split()[0],
            "kind": args.kind,
            "calls_per_worker": args.calls,
            "ref": args.ref,
            "labels": {m: LABELS[m] for m in modes},
            "elapsed_s": round(time.monotonic() - t0, 1),
            "rows": rows,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
