"""Instructions per LLM call under cachegrind: the tracers' costs without this machine's noise.

    python benchmarks/instructions.py [--modes bare,ours,...] [--kinds json,stream] [--quick]
                                      [--repeat K]

Wall and CPU time on this VM drift by up to 4x within minutes, so the per-rep ratios of
``llm_peers.py`` spread wider than the gaps between the tracers (0.31 to 1.71 in one run). The
instructions a process executes do not drift: the same run twice differs by well under 1 %. This
counts them with valgrind's cachegrind (``--cache-sim=no``; every thread, user space only), the
method CodSpeed and CPython's own performance work use where timings are noisy.

Each mode and kind runs ``_peers_worker.py --calls KIND:N`` twice, with N small and large, in the
peers venv of ``llm_peers.py`` (same client, same server, same checks that the mode traces). Both
runs share start-up, imports, instrumentation and warm-up, so their difference divided by the
difference in N is what one more call costs; a mode's overhead is that minus bare's. Calls are
sequential against the server of ``llm_peers.py`` (its own process on CPU 1), with
``PYTHONHASHSEED=0``, the span processors' timers out of the way (spans leave at the final
flush) and, after the warm-up, ``gc.collect()`` and ``gc.freeze()``: otherwise a full collection
of the warm heap (about a million instructions per call when spread over 40 calls) lands whole
in one of the two runs or in neither, and decides the figure. What the counted calls leave alive
is still collected, so garbage a tracer makes is still its cost.

The server writes a stream's chunks back to back; ``--pace-ms`` makes it wait after each chunk,
as a model's tokens arrive. Counted under valgrind without it, the chunks already arrive one
read each (7,592 and 7,573 ``data_received`` calls in two runs of ``--calls stream:120``, about
53 a call).

A JSON call is one read and its count repeats within 0.02 %. A stream's count moves by up to
100,000 instructions a call between runs of the same code, as much as the gap to a target, and
not by its number of reads (above): something timing-dependent in the client's loop, not pinned
down. ``--repeat K`` runs every mode K times, the repetitions interleaved, and takes each
count's median; the targets then also give the ratio of each repetition (its own bare, ours and
openai-v2 runs) and their range.

Instructions are not time (cache misses, system calls and thread hand-offs are not in them), so
this is the deterministic cross-check of the timed benchmarks, not a replacement. The modes
``empty`` (a TraceConfig with no callbacks: what aiohttp itself spends on tracing) and ``floor``
(an SDK span per request and nothing else) split what any TraceConfig-based tracer pays before
its own work. Results go to benchmarks/results/instructions.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import _server, ref_source, write_report  # noqa: E402
from _peers_worker import LABELS, MODES, STREAM_CHUNKS, mode_env  # noqa: E402
from llm_peers import TARGETS, VENV, ensure_venv  # noqa: E402

RESULTS = HERE / "results" / "instructions.json"
PEERS = ("openai_v2", "openllmetry", "openinference", "langfuse")
# Which modes each kind of call is counted for: the peers trace the SDK, not plain requests,
# and the floors with content or metrics only matter for the plain-request target.
MODES_FOR = {
    "json": ("bare", "empty", "floor", "ours_http", "ours", "ours_general", "instm", *PEERS),
    "stream": ("bare", "empty", "floor", "ours_http", "ours", "ours_general", "instm", *PEERS),
    "plain": ("bare", "empty", "floor", "floorm", "floorc", "ours", "instm"),
}
# Counted only when named: the split of a JSON call into the content floor (floorc, floorg),
# our lifecycle and capture (ours_noend) and the end, the end done inside the caller's read
# (ours_inline) and the end's attributes checked by the SDK again (ours_checked); see
# _peers_worker.LABELS.
SPLIT_MODES = ("floorc", "floorg", "ours_noend", "ours_inline", "ours_checked", "ours_ref")
# Of those, the ones counted for every kind named, not for JSON calls alone.
SPLIT_EVERY_KIND = ("ours_inline", "ours_checked", "ours_ref")
# ours_general (what the one-pass end of chat calls saves) only when asked for.
DEFAULT_MODES = tuple(
    dict.fromkeys(m for modes in MODES_FOR.values() for m in modes if m != "ours_general")
)
KINDS = ("json", "stream", "plain")
_IREFS = re.compile(rb"I\s+refs:\s+([\d,]+)")


def instructions(
    python: Path, url: str, mode: str, kind: str, n: int, pin: bool, concurrency: int = 1
) -> int:
    """Instructions executed by one worker run of ``n`` calls (start-up included)."""
    cmd = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        str(python),
        str(HERE / "_peers_worker.py"),
        "--mode",
        mode,
        "--url",
        url,
        "--calls",
        f"{kind}:{n}",
        "--concurrency",
        str(concurrency),
    ]
    if pin and hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    # Spans are exported by the flush at the end, not by the processors' timers: a timer that
    # fires more often under valgrind's slowdown would count as work the calls did.
    env = mode_env(mode, url) | {
        "PYTHONHASHSEED": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "LANGFUSE_FLUSH_INTERVAL": "600",
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=1800, check=False)
    found = _IREFS.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{mode} {kind}:{n} failed (exit {proc.returncode}):\n{tail}")
    return int(found.group(1).replace(b",", b""))


def medians(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Each mode's and kind's median over its repetitions."""
    return {
        mode: {kind: statistics.median(values) for kind, values in by_kind.items()}
        for mode, by_kind in samples.items()
    }


def ratios_by_rep(samples: dict[str, dict[str, list[float]]], kind: str) -> list[float]:
    """Ours' overhead over openai-v2's, each repetition against its own bare run."""
    try:
        bare, ours, ref = (samples[m][kind] for m in ("bare", "ours", "openai_v2"))
    except KeyError:
        return []
    return [round((o - b) / (r - b), 3) for b, o, r in zip(bare, ours, ref, strict=False) if r > b]


def summarise(per: dict[str, dict[str, float]], kinds: tuple[str, ...]) -> dict:  # type: ignore[type-arg]
    """Overheads over bare, the ratios the targets name, and the split of ours."""
    rows: dict[str, dict] = {}  # type: ignore[type-arg]
    for mode, by_kind in per.items():
        rows[mode] = {}
        for kind in kinds:
            if kind not in by_kind or kind not in per["bare"]:
                continue
            over = by_kind[kind] - per["bare"][kind]
            rows[mode][kind] = {"per_call": round(by_kind[kind]), "overhead": round(over)}
        if "json" in rows[mode] and "stream" in rows[mode]:
            # What a stream costs beyond a JSON call, per chunk.
            extra = rows[mode]["stream"]["overhead"] - rows[mode]["json"]["overhead"]
            rows[mode]["per_chunk"] = round(extra / STREAM_CHUNKS)
    targets = {}
    for kind in (k for k in kinds if k in TARGETS):
        ours = rows.get("ours", {}).get(kind)
        ref = rows.get("openai_v2", {}).get(kind)
        if ours and ref and ref["overhead"] > 0:
            ratio = ours["overhead"] / ref["overhead"]
            peers = {m: r[kind]["overhead"] for m, r in rows.items() if m in PEERS and kind in r}
            best = min(peers, key=peers.__getitem__)
            targets[kind] = {
                "ratio_to_openai_v2": round(ratio, 3),
                "limit": TARGETS[kind],
                "pass": ratio <= TARGETS[kind],
                "best_peer": best,
                "ratio_to_best_peer": round(ours["overhead"] / peers[best], 3),
            }
            floor = rows.get("floor", {}).get(kind)
            if floor:
                # What the target leaves for our own work once any TraceConfig's span is paid.
                targets[kind]["budget_above_floor"] = round(
                    TARGETS[kind] * ref["overhead"] - floor["overhead"]
                )
                targets[kind]["ours_above_floor"] = ours["overhead"] - floor["overhead"]
    split = {}
    for kind in kinds:

        def over(mode: str, k: str = kind) -> int | None:
            return rows.get(mode, {}).get(k, {}).get("overhead")

        parts = {
            "aiohttp_trace_machinery": over("empty"),
            "sdk_span": _minus(over("floor"), over("empty")),
            "ours_http_above_floor": _minus(over("ours_http"), over("floor")),
            "ours_llm_layer": _minus(over("ours"), over("ours_http")),
            "ours_above_floor": _minus(over("ours"), over("floor")),
            "instm_above_floor": _minus(over("instm"), over("floor")),
            "content_in_sdk": _minus(over("floorc"), over("floor")),
            "one_histogram_record": _minus(over("floorm"), over("floor")),
            "ours_above_content_floor": _minus(over("ours"), over("floorc")),
        }
        split[kind] = {k: v for k, v in parts.items() if v is not None}
    return {"rows": rows, "targets": targets, "split_of_ours": split}


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _table(report: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"{'mode':<14}"
        + "".join(f"{k + ' overhead':>20}" for k in report["kinds"])
        + f"{'per chunk':>12}"
    ]
    for mode, row in report["rows"].items():
        cells = "".join(
            f"{row[k]['overhead']:>20,}" if k in row else f"{'-':>20}" for k in report["kinds"]
        )
        chunk = row.get("per_chunk")
        lines.append(f"{mode:<14}{cells}{'-' if chunk is None else f'{chunk:,}':>12}")
    for kind, t in report["targets"].items():
        lines.append(
            f"{kind}: ours / openai-v2 = {t['ratio_to_openai_v2']:.2f} (target <= {t['limit']}, "
            f"{'met' if t['pass'] else 'NOT met'}); best peer {t['best_peer']}: "
            f"{t['ratio_to_best_peer']:.2f} x"
        )
        if "ratio_range" in t:
            low, high = t["ratio_range"]
            lines.append(f"  {kind}: by repetition {low:.2f} to {high:.2f} ({t['ratio_by_rep']})")
        if "budget_above_floor" in t:
            lines.append(
                f"  {kind}: the target leaves {t['budget_above_floor']:,} above the span floor; "
                f"ours spends {t['ours_above_floor']:,} there"
            )
    for kind, parts in report["split_of_ours"].items():
        lines.append(f"{kind} split: " + ", ".join(f"{k} {v:,}" for k, v in parts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"from {','.join(MODES)}")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--small", type=int, default=10, help="calls in the short run")
    p.add_argument("--large", type=int, default=90, help="calls in the long run")
    p.add_argument("--quick", action="store_true", help="bare and ours, 5 and 15 calls")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="calls in flight at once, as llm_peers.py runs them (20); give --small and "
        "--large as multiples of it",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="valgrind runs side by side (timing moves counts)"
    )
    p.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="server waits this long after each SSE chunk, so each arrives in a read of its own",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of every mode, interleaved; medians taken"
    )
    p.add_argument("--venv", type=Path, default=VENV, help="peers venv (default: .venv-peers)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--ref", help="git ref of another version for the ours_ref mode")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions.py needs valgrind (apt install valgrind)", file=sys.stderr)
        return 2
    modes = ["bare", "ours"] if args.quick else args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}")
    if "bare" not in modes:
        modes.insert(0, "bare")
    if ("ours_ref" in modes) != (args.ref is not None):
        p.error("--ref and the ours_ref mode go together")
    kinds = tuple(args.kinds.split(","))
    small, large = (5, 15) if args.quick else (args.small, args.large)
    python = ensure_venv(args.venv)
    t0 = time.monotonic()
    samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    jobs = [
        (mode, kind)
        for _ in range(max(1, args.repeat))
        for mode in modes
        for kind in kinds
        if mode in MODES_FOR[kind]
        or (mode in SPLIT_MODES and (kind == "json" or mode in SPLIT_EVERY_KIND))
    ]
    # Bare's first kind once more at the end: how far two runs of identical work differ.
    jobs.append(("bare", kinds[0]))
    with (
        ref_source(args.ref),
        _server(HERE / "_peers_server.py", ["--pace-ms", str(args.pace_ms)], [], 1) as url,
        concurrent.futures.ThreadPoolExecutor(args.jobs) as pool,
    ):
        # Side by side (--jobs 2) is twice as fast, but a server that shares its CPU answers
        # later, the client loop turns more often, and a figure moves by up to 40,000.
        runs = {
            (i, n): pool.submit(
                instructions, python, url, mode, kind, n, args.jobs == 1, args.concurrency
            )
            for i, (mode, kind) in enumerate(jobs)
            for n in (small, large)
        }
        counts = [
            (runs[i, large].result() - runs[i, small].result()) / (large - small)
            for i in range(len(jobs))
        ]
    for (mode, kind), count in zip(jobs[:-1], counts[:-1]):
        samples[mode].setdefault(kind, []).append(count)
        print(f"{mode:<14} {kind:<6} {count:>14,.0f} instructions/call")
    per = medians(samples)
    repeat = counts[-1]
    summary = summarise(per, kinds)
    for kind, target in summary["targets"].items():
        by_rep = ratios_by_rep(samples, kind)
        if len(by_rep) > 1:
            target["ratio_by_rep"] = by_rep
            target["ratio_range"] = [min(by_rep), max(by_rep)]
    report = {
        "benchmark": "instructions",
        "method": (
            "valgrind cachegrind --cache-sim=no, whole process, PYTHONHASHSEED=0; "
            f"per call = (I refs of {large} calls - I refs of {small}) / {large - small}, "
            + (
                "sequential calls"
                if args.concurrency == 1
                else f"calls {args.concurrency} at a time"
            )
            + " through the openai SDK (plain: a GET on the SDK's own session); "
            "overhead = mode - bare"
            + (
                f"; the server waits {args.pace_ms:g} ms after each SSE chunk"
                if args.pace_ms
                else ""
            )
        ),
        "pace_ms": args.pace_ms,
        "ref": args.ref,
        "python": sys.version.split()[0],
        "kinds": list(kinds),
        "labels": {m: LABELS[m] for m in modes},
        "repeat": max(1, args.repeat),
        "samples": {
            m: {k: [round(v) for v in vs] for k, vs in by.items()} for m, by in samples.items()
        },
        "repeat_check": {
            "kind": kinds[0],
            "first": round(samples["bare"][kinds[0]][0]),
            "again": round(repeat),
            "difference": round(abs(repeat - samples["bare"][kinds[0]][0])),
            "relative_difference": round(abs(repeat / samples["bare"][kinds[0]][0] - 1), 5),
        },
        "elapsed_s": round(time.monotonic() - t0, 1),
        **summary,
    }
    print(_table(report))
    rc = report["repeat_check"]
    print(
        f"repeat check ({rc['kind']}, bare): {rc['difference']:,} instructions, "
        f"{rc['relative_difference']:.3%} apart"
    )
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
