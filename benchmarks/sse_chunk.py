"""What one SSE chunk costs the tracer, against an earlier version of it in the same run.

    python benchmarks/sse_chunk.py [--ref 6e9d5cb] [--reps 8] [--rounds 30] [--instructions]

The SSE target ("at most 2 us per chunk") was met by the code of ``--ref`` in its day; this VM's
speed drifts by up to 4x between days, so a figure measured today is compared with that code
measured today, in the same run, not with a figure from the past. ``--ref`` is exported from
git (``git archive``) into a temporary folder and imported ahead of this tree's package.

Each rep runs two fresh client processes (CPU 0), one per tree, in alternating order, against
the loopback server of ``overhead.py`` (CPU 1). A client holds four sessions warm (bare and
traced, a chat completion and a 200-chunk SSE stream read line by line, as ``overhead.py``
reads them), freezes the heap after the warm-up, and runs bursts of each mode in rotated order
for ``--rounds`` rounds, timing process CPU. Per chunk is, per round, ``((ours_sse - bare_sse) -
(ours_chat - bare_chat)) / 200``: the stream's extra cost over a chat call, bare aiohttp's own
taken out. The median over rounds is the rep's figure; the median over reps is reported.

With ``--instructions`` (needs valgrind) the same per-chunk figure is also counted in
instructions under cachegrind, for both trees: each mode runs 2 and 12 requests and their
difference is ten requests' worth (``PYTHONHASHSEED=0``, heap frozen after the warm-up). Results
are printed and written to benchmarks/results/sse_chunk.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import CHAT_BODY, export_ref, round_order, server_process, write_report  # noqa: E402

RESULTS = HERE / "results" / "sse_chunk.json"
REF = "6e9d5cb"  # the last version whose overhead.py run met the 2 us target (1.50 us)
CHUNKS = 200
MODES = ("bare_chat", "ours_chat", "bare_sse", "ours_sse")
_IREFS = re.compile(rb"I\s+refs:\s+([\d,]+)")


# -- the client ----------------------------------------------------------------------------------


async def _client(url: str, modes: list[str], rounds: int, burst: int, warm: int) -> dict:  # type: ignore[type-arg]
    import aiohttp
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from _common import CountingExporter
    from aiohttp_llm_tracing import create_trace_config

    sessions = {}
    for mode in modes:
        tracer, _ = mode.split("_")
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(CountingExporter()))
        configs = [create_trace_config(tracer_provider=provider)] if tracer == "ours" else []
        sessions[mode] = aiohttp.ClientSession(trace_configs=configs)

    async def one(mode: str) -> None:
        session = sessions[mode]
        if mode.endswith("_sse"):
            body = {**CHAT_BODY, "stream": True}
            async with session.post(f"{url}/v1/chat/completions?chunks={CHUNKS}", json=body) as r:
                async for _ in r.content:
                    pass
        else:
            async with session.post(f"{url}/v1/chat/completions", json=CHAT_BODY) as r:
                await r.read()

    for mode in modes:
        for _ in range(warm):
            await one(mode)
    gc.collect()
    gc.freeze()
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in round_order(list(modes), r):
            start = time.process_time()
            for _ in range(burst):
                await one(mode)
            cpu[mode].append((time.process_time() - start) / burst * 1e6)
    for session in sessions.values():
        await session.close()
    return cpu


def _worker(args: argparse.Namespace) -> int:
    if args.calls:
        # One mode, N requests: for cachegrind, which counts the whole process.
        # Ten warm-up requests: CPython specialises a function's code after eight calls, which
        # must not land in the counted ones.
        mode, n = args.calls.split(":")
        asyncio.run(_client(args.url, [mode], 1, int(n), 10))
        return 0
    cpu = asyncio.run(_client(args.url, list(MODES), args.rounds, args.burst, 10))
    print(json.dumps(cpu))
    return 0


# -- the parent ----------------------------------------------------------------------------------


def per_chunk(cpu: dict[str, list[float]]) -> float:
    """The median over rounds of the stream's extra cost per chunk, bare aiohttp's taken out."""
    rounds = zip(cpu["bare_chat"], cpu["ours_chat"], cpu["bare_sse"], cpu["ours_sse"])
    return statistics.median(((os_ - bs) - (oc - bc)) / CHUNKS for bc, oc, bs, os_ in rounds)


def _run(cmd: list[str], src: Path | None, cpu: int | None = 0) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=1800, check=False)


def _timed(url: str, src: Path | None, rounds: int, burst: int) -> float:
    cmd = [sys.executable, __file__, "--worker", "--url", url]
    cmd += ["--rounds", str(rounds), "--burst", str(burst)]
    proc = _run(cmd, src)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-2000:])
    return per_chunk(json.loads(proc.stdout))


def _instructions(url: str, src: Path | None) -> int:
    counts = {}
    for mode in MODES:
        refs = []
        for n in (2, 12):
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
            cmd += ["--cachegrind-out-file=/dev/null", sys.executable, __file__]
            cmd += ["--worker", "--url", url, "--calls", f"{mode}:{n}"]
            proc = _run(cmd, src)
            found = _IREFS.search(proc.stderr)
            if proc.returncode != 0 or found is None:
                raise RuntimeError(proc.stderr.decode(errors="replace")[-2000:])
            refs.append(int(found.group(1).replace(b",", b"")))
        counts[mode] = (refs[1] - refs[0]) / 10
    extra = (counts["ours_sse"] - counts["bare_sse"]) - (counts["ours_chat"] - counts["bare_chat"])
    return round(extra / CHUNKS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", default=REF, help="git ref of the version to compare with")
    p.add_argument("--reps", type=int, default=8, help="client processes per tree")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--burst", type=int, default=20, help="requests per mode per round")
    p.add_argument("--instructions", action="store_true", help="also count them (valgrind)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--calls", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.instructions and shutil.which("valgrind") is None:
        p.error("--instructions needs valgrind")
    os.environ["PYTHONHASHSEED"] = "0"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, server_process(cpu=1) as url:
        trees: dict[str, Path | None] = {"this": None, args.ref: export_ref(args.ref, Path(tmp))}
        figures: dict[str, list[float]] = {name: [] for name in trees}
        for rep in range(args.reps):
            for name in list(trees)[:: 1 if rep % 2 == 0 else -1]:
                figure = _timed(url, trees[name], args.rounds, args.burst)
                figures[name].append(figure)
                print(f"rep {rep + 1}: {name:<8} {figure:6.2f} us per chunk", flush=True)
        instructions = (
            {name: _instructions(url, src) for name, src in trees.items()}
            if args.instructions
            else None
        )
    medians = {name: statistics.median(values) for name, values in figures.items()}
    ratio = medians["this"] / medians[args.ref] if medians[args.ref] > 0 else None
    report = {
        "benchmark": "sse_chunk",
        "ref": args.ref,
        "method": (
            f"process CPU per request, bursts of {args.burst} in rotated order, {args.rounds} "
            f"rounds per client, {args.reps} clients per tree alternating; per chunk = median "
            "over rounds of ((ours_sse - bare_sse) - (ours_chat - bare_chat)) / 200"
        ),
        "python": sys.version.split()[0],
        "us_per_chunk": {name: round(m, 3) for name, m in medians.items()},
        "us_per_chunk_by_rep": {n: [round(v, 3) for v in vs] for n, vs in figures.items()},
        "this_over_ref": round(ratio, 3) if ratio is not None else None,
        "instructions_per_chunk": instructions,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    print(
        f"per chunk: this tree {medians['this']:.2f} us, {args.ref} {medians[args.ref]:.2f} us "
        f"({report['this_over_ref']} x)"
    )
    if instructions:
        print(f"instructions per chunk: {instructions}")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
