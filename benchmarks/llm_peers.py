"""Cost of one openai-SDK chat call over aiohttp: our trace config against the LLM-tracing peers.

    python benchmarks/llm_peers.py              # every mode at once on CPU 0, CPU time per call
                                                # (about 8 min on a 2-core VM, capped at 15)
    python benchmarks/llm_peers.py --quick      # ~1-minute smoke run
    python benchmarks/llm_peers.py --setup      # only (re)install the peers venv, then exit
    python benchmarks/llm_peers.py --sequential # the older method: one mode's burst at a time

Any Python 3.10+ can start it (``make bench`` uses the main venv's). The peers live in their own
venv, ``.venv-peers`` at the repository root, so they cannot disturb the main one: if it is missing
or ``peers-constraints.txt``/``pyproject.toml`` changed since it was built, it is (re)built with
``python3 -m venv .venv-peers`` and ONE pip command constrained by
``benchmarks/peers-constraints.txt``, followed by ``pip check``; then this script re-executes
itself inside that venv. ``--refresh-constraints`` installs without the constraints file and
regenerates it from ``pip freeze`` (after ``pip check`` passed).

Modes (one span per call each, all exporting through a BatchSpanProcessor into a counting no-op
exporter that is flushed inside the timed window; see ``_peers_worker.py``):

* ``bare``: no instrumentation.
* ``ours``: ``create_trace_config(tracer_provider=tp)`` on the SDK's aiohttp session, via
  ``DefaultAioHttpClient(transport=AiohttpTransport(
  client=lambda: aiohttp.ClientSession(trace_configs=[cfg])))``.
  Every mode builds its client that way (the others with no trace config), so the HTTP stack is
  identical. Content capture on (the default).
* ``openai_v2``: opentelemetry-instrumentation-openai-v2 with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY`` (util-genai 1.1b0 rejects
  ``true``); ``openai_v2_nocontent`` (not run by default) is the same with ``NO_CONTENT``.
* ``ours_http`` (not run by default): ours with ``llm=False``, the HTTP span alone, so that
  ``ours - ours_http`` is what the LLM layer costs in the same run; ``ours_general`` (not run
  by default): ours with the one-pass end of plain JSON chat calls off, so that
  ``ours_general - ours`` is what it saves. ``ours_noend`` and ``ours_noparse`` (bounds, not
  run by default) reuse the first call's end, or its stream parse, for every later call: what a
  faster end or parse could at best save. The reference points ``floor`` (an SDK span
  only), ``floorc`` (the floor writing our HTTP span's content) and ``floorg`` (``floorc`` also
  writing the generation's attributes, worked out once in advance) split what our span's content
  costs in the SDK from what our lifecycle, capture and parse cost.
* ``openllmetry``: opentelemetry-instrumentation-openai (content on by default).
* ``openinference``: openinference-instrumentation-openai (content on by default).
* ``langfuse``: ``from langfuse.openai import AsyncOpenAI``; its OTLP/HTTP export goes to a stub on
  the mock server, and ``flush()`` runs inside the timed window.

Method (the VM's speed drifts up to 4x, so one process per run is too noisy): a loopback mock
server (``_peers_server.py``: 1037 B JSON, 50 x ~290 B SSE chunks + a usage chunk, no sleeps) is
pinned to CPU 1; each repetition starts ONE warm worker per mode pinned to CPU 0 (in an order
that rotates every repetition, so no mode keeps the first or last start), driven over
stdin/stdout JSON lines; each worker first checks that the SDK really runs on an
``aiohttp.ClientSession`` and that the mode really traces (one span per call, prompt recorded,
Langfuse's spans arriving at the stub), then warms up. Each round runs a JSON burst in every mode,
then a stream burst in every mode, the order rotating every round; bursts run at concurrency 20.
The bursts run in one of two ways: at once (the default, below), or one mode's after another
(``--sequential``), which the rest of this paragraph describes. Per repetition and mode,
us/call = total burst wall time / calls. Reported per mode: the median over repetitions of
us/call, and the overhead = median over repetitions of the difference from
``bare`` within the same repetition; per-chunk = (stream - JSON overhead) / 51. Cross-checks: the
same from client CPU time, and the median over rounds of the burst's ratio to ``bare`` in the same
round (``--metric cpu`` makes client CPU time the headline: steadier when other work shares
CPU 0, which the report flags when client cpu/wall < 0.85). Every burst fails loudly unless exactly
one span per call was exported (and, for Langfuse, reached the stub).

At once (the default, also ``--parallel``; its headline is client CPU time): each burst is a window
(``--window`` seconds, 2 by default, streams 1.5 x) that every mode's worker runs at the same
time, all on CPU 0, each keeping its 20 calls in flight until the window closes; a mode's figure
is its worker's own CPU time per call. The scheduler switches between the workers every few
milliseconds, so a change in the machine's speed lands on every mode alike: the repetitions'
overheads agree within about 10 %, where the sequential bursts' differ by up to 3 x. It also
measures a different case: every worker resumes on caches the others have just filled, as a
traced call does in a busy process (or after seconds of waiting for a model), so the code and
data a tracer touches per call weigh more than on the warm caches of the sequential method.
Wall time per call is shared there, and reported only. Two workers of the same code
(``ours_again``) can differ by tens of us a call in every round of a repetition, in either
direction, so a difference between two modes is settled by repetitions (new workers), not rounds.

Bounds: every worker reply has a timeout; the run has a global deadline (``--deadline``, 13 min
from start by default, venv setup included; nothing new starts past it and the run aborts 90 s
later). Once a round's duration is known, the rounds per repetition shrink evenly so that every
repetition fits, and the report says so. The server and workers bind/talk to 127.0.0.1 only and are
stopped by PID in ``finally`` blocks. Output: rich tables and
benchmarks/results/llm_peers_parallel.json (``llm_peers.json`` with ``--sequential``).

Targets: ours' JSON overhead <= 0.85 x openai-v2's; ours' stream overhead <= 0.6 x openai-v2's; and
ahead of the cheapest peer beyond the run's spread, i.e. in every repetition (``x best per rep``).
The targets table also gives the ratio of ours' and openai-v2's median overheads over all rounds
(each round's burst minus bare's in that round) with its 90 % bootstrap interval (repetitions
resampled, then rounds within them): a ratio is resolved at a limit only when the interval lies
on one side of it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _peers_worker import (  # noqa: E402
    DEFAULT_MODES,
    LABELS,
    MODES,
    PEERS,
    RUSAGE,
    STREAM_CHUNKS,
    mode_env,
)

VENV = ROOT / ".venv-peers"
CONSTRAINTS = HERE / "peers-constraints.txt"
RESULTS = HERE / "results" / "llm_peers_parallel.json"
RESULTS_SEQUENTIAL = HERE / "results" / "llm_peers.json"
# One pip command installs all of these together (with ``-e .``), constrained by CONSTRAINTS.
# opentelemetry-instrumentation-aiohttp-client aligns the OTel stack (its newest release pins it);
# openai-v2 2.4b0 breaks with util-genai >= 1.2b0 (``opentelemetry.util.genai.instruments`` moved).
PACKAGES = (
    "openai[aiohttp]",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-instrumentation-openai",
    "openinference-instrumentation-openai",
    "langfuse",
    "opentelemetry-instrumentation-aiohttp-client",
    "opentelemetry-util-genai==1.1b0",
    "psutil",
    "rich",
)
TARGETS = {"json": 0.85, "stream": 0.6}  # ours' overhead <= this x openai-v2's
BASELINE, OURS, REFERENCE = "bare", "ours", "openai_v2"
DEFAULTS = dict(
    reps=3,
    rounds=20,
    json_burst=150,
    stream_burst=50,
    warmup_json=300,
    warmup_stream=100,
    deadline=13 * 60,
)
QUICK = dict(
    reps=2,
    rounds=2,
    json_burst=60,
    stream_burst=20,
    warmup_json=60,
    warmup_stream=20,
    deadline=100,
)
STREAM_WINDOW = 1.5  # a stream window is this many JSON windows (a stream call is ~6 x longer)
HARD_GRACE_S = 90  # past the soft deadline nothing new starts; past this, abort
STOP_MARGIN_S = 20  # time kept for stopping workers and writing results


# -- the peers venv --------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, timeout=timeout, check=True, cwd=ROOT, **kw)


def _stamp(venv: Path) -> tuple[Path, str]:
    digest = hashlib.sha256()
    for f in (CONSTRAINTS, ROOT / "pyproject.toml"):
        digest.update(f.read_bytes() if f.exists() else b"-")
    digest.update(repr(PACKAGES).encode())
    return venv / ".llm-peers-installed", digest.hexdigest()


def ensure_venv(venv: Path, *, force: bool = False, refresh: bool = False) -> Path:
    """Create/refresh the peers venv; return its python. Idempotent and quick when up to date."""
    python = venv / "bin" / "python"
    stamp, digest = _stamp(venv)
    fresh = stamp.exists() and stamp.read_text().strip() == digest
    if python.exists() and fresh and not (force or refresh):
        return python
    if refresh and (venv / "pyvenv.cfg").exists():
        shutil.rmtree(venv)  # a fresh resolution: pip would keep what is already installed
    if not python.exists():
        # --upgrade-deps: the pip that ensurepip bundles with 3.11 (23.2) backtracks for many
        # minutes over this set, a current one resolves it in seconds.
        py = os.environ.get("PEERS_PYTHON", "python3")
        _run([py, "-m", "venv", "--upgrade-deps", str(venv)], timeout=600)
    use_constraints = CONSTRAINTS.exists() and not refresh
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if use_constraints:
        cmd += ["-c", str(CONSTRAINTS.relative_to(ROOT))]
    _run([*cmd, "-e", ".", *PACKAGES], timeout=1800)
    _run([str(python), "-m", "pip", "check"], timeout=300)
    if refresh or not CONSTRAINTS.exists():
        freeze = subprocess.run(
            [str(python), "-m", "pip", "freeze", "--exclude-editable"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout.splitlines()
        pins = [ln for ln in freeze if "==" in ln and not ln.startswith(("#", "-e"))]
        header = (
            "# Pins for the peers venv of benchmarks/llm_peers.py (.venv-peers), from\n"
            "# `pip freeze` after a clean install and `pip check`.\n"
            "# Regenerate: python benchmarks/llm_peers.py --refresh-constraints\n"
        )
        CONSTRAINTS.write_text(header + "\n".join(pins) + "\n")
        print(f"wrote {CONSTRAINTS} ({len(pins)} pins)", file=sys.stderr)
    _, digest = _stamp(venv)
    stamp.write_text(digest + "\n")
    return python


def _in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


# -- processes -------------------------------------------------------------------------------


def _pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def _stop(proc: subprocess.Popen, wait: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait)


@contextlib.contextmanager
def server_process(cpu: int | None, log_dir: Path) -> Iterator[str]:
    """Start ``_peers_server.py`` pinned to ``cpu``; yield its base URL; stop it by PID."""
    port_file = log_dir / "server.port"
    log = open(log_dir / "server.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [*_pin(cpu), sys.executable, str(HERE / "_peers_server.py"), str(port_file)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mock server did not start: {_tail(log_dir / 'server.log')}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        _stop(proc)
        log.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Deadline:
    def __init__(self, start: float, soft_s: float) -> None:
        self.soft = start + soft_s
        self.hard = self.soft + HARD_GRACE_S

    def left(self) -> float:
        return self.soft - time.time()

    def bound(self, timeout: float) -> float:
        left = self.hard - time.time()
        if left <= 0:
            raise TimeoutError("global deadline passed")
        return min(timeout, left)


class WorkerProc:
    """One mode's warm client process; every reply is awaited with a timeout."""

    def __init__(self, mode: str, url: str, cpu: int | None, log_dir: Path, dl: Deadline) -> None:
        self.mode, self.dl = mode, dl
        self.log_path = log_dir / f"worker-{mode}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [*_pin(cpu), sys.executable, str(HERE / "_peers_worker.py"), "--mode", mode]
        self.proc = subprocess.Popen(
            [*cmd, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=mode_env(mode, url),
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError(f"{self.mode}: worker gone\n{_tail(self.log_path)}") from None

    def recv(self, timeout: float) -> dict:
        try:
            line = self._replies.get(timeout=self.dl.bound(timeout))
        except queue.Empty:
            raise TimeoutError(f"{self.mode}: no reply within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"{self.mode}: worker exited\n{_tail(self.log_path)}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.mode}: worker failed\n{reply.get('error')}")
        return reply

    def call(self, msg: dict, timeout: float) -> dict:
        self.send(msg)
        return self.recv(timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.send({"cmd": "quit"})
                self.proc.wait(10)
        _stop(self.proc)
        self._log.close()


# -- the run ---------------------------------------------------------------------------------


def _burst_timeout(kind: str, n: int) -> float:
    return 30 + n * (0.25 if kind == "stream" else 0.05)


class Planner:
    """Fits the run into the deadline: rounds shrink evenly over the repetitions still to run.

    With R rounds per rep, the current rep's rounds left plus ``k`` more reps (start-up + R
    rounds each) must fit in the time left: (R - done)·t + k·(s + R·t) <= T.
    """

    def __init__(self, args: argparse.Namespace, dl: Deadline) -> None:
        self.reps, self.rounds, self.dl = args.reps, args.rounds, dl
        self.startup: list[float] = []
        self.round_times: list[float] = []

    def _time_left(self) -> float:
        return self.dl.soft - time.time() - STOP_MARGIN_S

    def _round(self) -> float:
        return statistics.mean(self.round_times[-12:])

    def can_start_rep(self) -> bool:
        if not self.round_times:
            return True
        return self._time_left() >= statistics.mean(self.startup) + self._round()

    def rounds_for(self, rep: int, done: int) -> int:
        """Rounds the current rep should reach (``done`` means: stop now)."""
        if not self.round_times:
            return self.rounds
        t, k = self._round(), self.reps - rep - 1
        if self._time_left() < t:  # not even one more round fits
            return done
        budget = self._time_left() + done * t - k * statistics.mean(self.startup)
        fit = int(budget // (t * (1 + k))) if budget > 0 else 0
        return max(done or 1, min(self.rounds, fit))  # a started rep gets at least one round


_KEYS = ("wall_s", "cpu_s", "spans", "stub_spans", "rss_mb", *RUSAGE)


def _sample(worker: WorkerProc, kind: str, reply: dict) -> dict:
    # ``n`` from the worker: a window's calls are counted there.
    return {"kind": kind, "mode": worker.mode, "n": reply["n"], **{k: reply.get(k) for k in _KEYS}}


def _burst(worker: WorkerProc, kind: str, n: int, concurrency: int) -> dict:
    msg = {"cmd": "burst", "kind": kind, "n": n, "concurrency": concurrency}
    return _sample(worker, kind, worker.call(msg, _burst_timeout(kind, n)))


WINDOW_LEAD_S = 0.5  # for every worker's gc.collect() and the messages, before the window opens


def _window(workers: list[WorkerProc], kind: str, seconds: float, concurrency: int) -> list[dict]:
    """Every worker calls for the same ``seconds`` at once, sharing CPU 0 (``--parallel``).

    The scheduler interleaves them every few milliseconds, so a change in the machine's speed
    lands on every mode alike; each worker's own CPU time per call is its figure.
    """
    start = time.monotonic() + WINDOW_LEAD_S
    msg = {"cmd": "burst", "kind": kind, "concurrency": concurrency,
           "start_at": start, "until": start + seconds}  # fmt: skip
    for w in workers:
        w.send(msg)
    timeout = WINDOW_LEAD_S + seconds + 60 * len(workers)
    return [_sample(w, kind, w.recv(timeout)) for w in workers]


def run(args: argparse.Namespace, t_start: float) -> dict:
    modes: list[str] = args.modes
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2 and not args.no_pin
    client_cpu, server_cpu = (0, 1) if pin else (None, None)
    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # keep this driver off the client CPU
    dl = Deadline(t_start, args.deadline)
    plan = Planner(args, dl)
    samples: list[dict] = []
    checks: dict[str, dict] = {}
    versions: dict[str, str] = {}
    rounds_done: list[int] = []
    init = {"cmd": "init", "warmup_json": args.warmup_json, "warmup_stream": args.warmup_stream}
    with tempfile.TemporaryDirectory(prefix="llm-peers-") as tmp:
        log_dir = Path(tmp)
        with server_process(server_cpu, log_dir) as url:
            for rep in range(args.reps):
                if not plan.can_start_rep():
                    print(f"deadline: stopping after {rep} repetition(s)", file=sys.stderr)
                    break
                t_rep = time.time()
                workers: dict[str, WorkerProc] = {}
                try:
                    # Started in an order rotated every repetition: in some runs the slot a
                    # worker started in favoured it by tens of us a call in every round.
                    first = rep % len(modes)
                    for mode in modes[first:] + modes[:first]:  # all start (import) at once ...
                        workers[mode] = WorkerProc(mode, url, client_cpu, log_dir, dl)
                    for w in workers.values():  # ... and warm up one at a time
                        reply = w.call(init, timeout=300)
                        checks.setdefault(w.mode, reply["check"])
                        versions.update(reply["versions"])
                    plan.startup.append(time.time() - t_rep)
                    print(
                        f"rep {rep + 1}: {len(modes)} workers checked and warm in "
                        f"{plan.startup[-1]:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    done = 0
                    while done < plan.rounds_for(rep, done):
                        t_round = time.time()
                        shift = (rep * args.rounds + done) % len(modes)
                        order = modes[shift:] + modes[:shift]  # rotates every round
                        for kind, n in (("json", args.json_burst), ("stream", args.stream_burst)):
                            if args.parallel:
                                window = args.window * (STREAM_WINDOW if kind == "stream" else 1)
                                got = _window([workers[m] for m in order], kind, window,
                                              args.concurrency)  # fmt: skip
                            else:
                                got = [_burst(workers[m], kind, n, args.concurrency) for m in order]
                            for pos, sample in enumerate(got):
                                samples.append({"rep": rep, "round": done, "position": pos,
                                                **sample})  # fmt: skip
                        plan.round_times.append(time.time() - t_round)
                        _progress(samples, rep, done, plan.round_times[-1],
                                  "cpu_s" if args.parallel else "wall_s")  # fmt: skip
                        done += 1
                    rounds_done.append(done)
                finally:
                    for w in workers.values():
                        w.stop()
    truncated = len(rounds_done) < args.reps or any(r < args.rounds for r in rounds_done)
    if truncated:
        print(f"deadline: ran {rounds_done} rounds of {args.rounds} x {args.reps}", file=sys.stderr)
    return {
        "samples": samples,
        "checks": checks,
        "versions": versions,
        "rounds_done": rounds_done,
        "truncated": truncated,
        "pinned": pin,
    }


def _progress(samples: list[dict], rep: int, rnd: int, secs: float, field: str) -> None:
    cur = [s for s in samples if s["rep"] == rep and s["round"] == rnd]
    parts = []
    for kind in ("json", "stream"):
        per = {s["mode"]: s[field] / s["n"] * 1e6 for s in cur if s["kind"] == kind}
        parts.append(kind + " " + " ".join(f"{m}={v:.0f}" for m, v in per.items()))
    print(
        f"rep {rep + 1} round {rnd + 1} ({secs:.1f} s) {field[:-2]} us/call: " + " | ".join(parts),
        file=sys.stderr,
        flush=True,
    )


# -- aggregation -----------------------------------------------------------------------------


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def aggregate(samples: list[dict], modes: list[str], field: str = "wall_s") -> dict:
    """Per mode and call kind, from ``field`` (``wall_s`` or ``cpu_s``) of every burst.

    us = median over reps of the rep's total / calls; overhead = median over reps of the
    difference from bare in the same rep; paired = median over rounds of the burst's us/call
    divided by bare's in the same round (a drift-robust cross-check).
    """
    reps = sorted({s["rep"] for s in samples})
    rows: dict[str, dict] = {m: {} for m in modes}
    for kind in ("json", "stream"):
        per_rep: dict[int, dict[str, float]] = {}
        for rep in reps:
            tot: dict[str, list[float]] = {}
            for s in samples:
                if s["rep"] == rep and s["kind"] == kind:
                    acc = tot.setdefault(s["mode"], [0.0, 0])
                    acc[0] += s[field]
                    acc[1] += s["n"]
            per_rep[rep] = {m: t / n * 1e6 for m, (t, n) in tot.items()}
        bursts = {(s["rep"], s["round"], s["mode"]): s for s in samples if s["kind"] == kind}
        for mode in modes:
            both = [r for r in reps if mode in per_rep[r] and BASELINE in per_rep[r]]
            diffs = [per_rep[r][mode] - per_rep[r][BASELINE] for r in both]
            ratios = [
                (s[field] / s["n"]) / (b[field] / b["n"])
                for (rep, rnd, m), s in bursts.items()
                if m == mode and (b := bursts.get((rep, rnd, BASELINE)))
            ]
            # The burst minus bare's in the same round, keyed by round: what the interval of
            # the targets resamples.
            by_round = {
                f"{rep}.{rnd}": (s[field] / s["n"] - b[field] / b["n"]) * 1e6
                for (rep, rnd, m), s in bursts.items()
                if m == mode and (b := bursts.get((rep, rnd, BASELINE)))
            }
            bare_us = _median([per_rep[r][BASELINE] for r in both])
            ovh, paired = _median(diffs), _median(ratios)
            rows[mode][kind] = {
                "us": _median([per_rep[r][mode] for r in reps if mode in per_rep[r]]),
                "us_by_rep": [per_rep[r].get(mode) for r in reps],
                "overhead_us": ovh,
                "overhead_pct": 100 * ovh / bare_us if ovh is not None and bare_us else None,
                "overhead_us_by_rep": diffs,
                "paired_ratio": paired,
                "paired_overhead_us": (paired - 1) * bare_us if paired and bare_us else None,
                "paired_bursts": len(ratios),
                "overhead_us_by_round": by_round,
            }
    for mode in modes:
        j, s = rows[mode]["json"], rows[mode]["stream"]
        for key, src in (
            ("per_chunk_us", "overhead_us"),
            ("per_chunk_paired_us", "paired_overhead_us"),
        ):
            if j.get(src) is not None and s.get(src) is not None:
                rows[mode][key] = (s[src] - j[src]) / STREAM_CHUNKS
    return {"rows": rows, "targets": _targets(rows)}


def _ratio(a: float | None, b: float | None) -> float | None:
    # Undefined when the reference's overhead is not positive (lost in the noise).
    return a / b if a is not None and b is not None and b > 0 else None


def _targets(rows: dict) -> dict:
    out = {}
    if OURS not in rows or REFERENCE not in rows:
        return out
    for kind, limit in TARGETS.items():
        ours, ref = rows[OURS][kind], rows[REFERENCE][kind]
        ratio = _ratio(ours["overhead_us"], ref["overhead_us"])
        by_rep = [
            _ratio(o, v) for o, v in zip(ours["overhead_us_by_rep"], ref["overhead_us_by_rep"])
        ]
        out[kind] = {
            "ours_overhead_us": ours["overhead_us"],
            "openai_v2_overhead_us": ref["overhead_us"],
            "ratio": ratio,
            "limit": limit,
            "pass": ratio is not None and ratio <= limit,
            "ratio_by_rep": by_rep,
            "ratio_paired": _ratio(ours["paired_overhead_us"], ref["paired_overhead_us"]),
            **_round_interval(ours["overhead_us_by_round"], ref["overhead_us_by_round"]),
            **_ahead_of_best_peer(rows, kind),
        }
    return out


def _round_interval(ours: dict, ref: dict, resamples: int = 2000) -> dict:
    """The ratio of the median per-round overheads, and its 90 % bootstrap interval.

    Keys are ``"rep.round"``. Each resample draws repetitions, then rounds within each drawn
    repetition (ours and openai-v2 always from the same rounds): rounds of one repetition share
    their worker processes, whose memory layout and hash seed move every round of that
    repetition alike, so resampling rounds alone would call a run steadier than it is. Seeded,
    so a report reproduces from its samples.
    """
    keys = sorted(set(ours) & set(ref))
    if len(keys) < 5:
        return {}
    reps: dict[str, list[str]] = {}
    for key in keys:
        reps.setdefault(key.split(".")[0], []).append(key)
    groups = list(reps.values())
    rng = random.Random(13)
    point = _ratio(
        statistics.median(ours[k] for k in keys), statistics.median(ref[k] for k in keys)
    )
    boots = []
    for _ in range(resamples):
        pick = []
        for _ in groups:
            group = groups[rng.randrange(len(groups))]
            pick += [group[rng.randrange(len(group))] for _ in group]
        r = _ratio(
            statistics.median(ours[k] for k in pick), statistics.median(ref[k] for k in pick)
        )
        boots.append(float("inf") if r is None else r)
    boots.sort()
    return {
        "ratio_rounds": point,
        "ratio_rounds_ci90": [boots[int(0.05 * resamples)], boots[int(0.95 * resamples) - 1]],
        "rounds": len(keys),
        "reps": len(groups),
    }


def _ahead_of_best_peer(rows: dict, kind: str) -> dict:
    """Ours against the cheapest peer on ``kind``: ahead beyond the run's own spread means
    ahead in every repetition (each repetition's ratio is taken within that repetition, so the
    machine's drift between repetitions cancels, and the worst one still has to be below 1)."""
    peers = {
        m: r[kind]["overhead_us"]
        for m, r in rows.items()
        if m in PEERS and r.get(kind, {}).get("overhead_us") is not None
    }
    if not peers or OURS not in rows:
        return {}
    best = min(peers, key=lambda m: peers[m])
    by_rep = [
        _ratio(o, b)
        for o, b in zip(
            rows[OURS][kind]["overhead_us_by_rep"], rows[best][kind]["overhead_us_by_rep"]
        )
    ]
    known = [r for r in by_rep if r is not None]
    return {
        "best_peer": best,
        "best_peer_overhead_us": peers[best],
        "ratio_to_best_by_rep": by_rep,
        "ahead_of_best_beyond_spread": bool(known) and len(known) == len(by_rep) and max(known) < 1,
    }


def cpu_share(samples: list[dict]) -> dict[str, float]:
    """Median client CPU time / wall time per mode: ~1.0 when the client had CPU 0 to itself."""
    out = {}
    for mode in dict.fromkeys(s["mode"] for s in samples):
        out[mode] = statistics.median(
            s["cpu_s"] / s["wall_s"] for s in samples if s["mode"] == mode and s["wall_s"] > 0
        )
    return out


# -- output ----------------------------------------------------------------------------------

SAMPLE_FIELDS = ("rep", "round", "position", "kind", "mode", "n", "wall_s", "cpu_s", "spans",
                 "stub_spans", "rss_mb", *RUSAGE)  # fmt: skip


def write_report(report: dict, path: Path) -> None:
    """Write the report; the raw bursts go one per line as rows under ``samples.fields``."""
    rows = [
        [round(v, 6) if isinstance(v, float) else v for v in (s.get(f) for f in SAMPLE_FIELDS)]
        for s in report["samples"]
    ]
    text = json.dumps({**report, "samples": "@SAMPLES@"}, indent=2)
    table = ",\n".join("      " + json.dumps(r) for r in rows)
    samples = f'{{\n    "fields": {json.dumps(SAMPLE_FIELDS)},\n    "rows": [\n{table}\n    ]\n  }}'
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text.replace('"@SAMPLES@"', samples, 1) + "\n")
    tmp.replace(path)


def _f(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _ci(target: dict) -> str:
    lo_hi = target.get("ratio_rounds_ci90")
    if not lo_hi:
        return "-"
    return f"{_f(target['ratio_rounds'], '{:.2f}')} ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})"


SHORT = {
    "bare": "bare",
    "ours": "ours",
    "openai_v2": "openai-v2",
    "openllmetry": "OpenLLMetry",
    "openinference": "OpenInference",
    "langfuse": "langfuse",
    "openai_v2_nocontent": "openai-v2 no content",
    "ours_http": "ours HTTP only",
    "ours_general": "ours, general end",
    "ours_noend": "ours, free end",
    "ours_noparse": "ours, free stream parse",
    "ours_again": "ours again",
    "ours_inline": "ours, end inline",
    "ours_checked": "ours, SDK checks",
    "ours_ref": "ours at --ref",
}


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg, metric = report["config"], report["metric"]
    other = "cpu" if metric == "wall" else "wall"
    main, alt = report[metric], report[other]
    console = Console(width=max(130, shutil.get_terminal_size().columns))
    console.print(
        f"[bold]openai SDK over aiohttp, one chat call[/]: {metric} time per call and overhead vs "
        f"bare; median of {len(report['rounds_done'])} rep(s) x {report['rounds_done']} rounds; "
        + (
            f"every mode at once in windows of {cfg['window']:g} s JSON / "
            f"{cfg['window'] * STREAM_WINDOW:g} s streams of {STREAM_CHUNKS} chunks"
            if cfg.get("parallel")
            else f"bursts of {cfg['json_burst']} JSON / {cfg['stream_burst']} streams of "
            f"{STREAM_CHUNKS} chunks"
        )
        + f" at concurrency {cfg['concurrency']}"
    )
    for kind, label in (("json", "JSON chat (1037 B)"), ("stream", "stream (50 + usage chunks)")):
        table = Table(title=f"{label}, {metric} us/call", title_justify="left")
        for name in ("mode", "us/call", "overhead", "ovh %", "per-rep ovh", f"{other} ovh",
                     "paired x"):  # fmt: skip
            table.add_column(name, justify="left" if name == "mode" else "right", no_wrap=True)
        if kind == "stream":
            table.add_column("per chunk", justify="right", no_wrap=True)
            table.add_column("RSS MB", justify="right", no_wrap=True)
        table.add_column(
            "span: attrs/events" if kind == "json" else "attrs/events", justify="left", no_wrap=True
        )
        for mode, row in main["rows"].items():
            r, base = row[kind], mode == BASELINE
            cells = [
                SHORT.get(mode, mode),
                _f(r["us"]),
                "-" if base else _f(r["overhead_us"], "{:+.0f}"),
                "-" if base else _f(r["overhead_pct"], "{:+.1f}%"),
                "-" if base else " ".join(f"{d:+.0f}" for d in r["overhead_us_by_rep"]),
                "-" if base else _f(alt["rows"][mode][kind]["overhead_us"], "{:+.0f}"),
                _f(r["paired_ratio"], "{:.3f}"),
            ]
            if kind == "stream":
                cells.append("-" if base else _f(row.get("per_chunk_us"), "{:+.1f}"))
                cells.append(_f(report["rss_mb"].get(mode)))
            spans = report["checks"].get(mode, {}).get("spans") or []
            span = spans[0 if kind == "json" else -1] if spans else None
            shape = f"{span['attributes']}/{span['events']}" if span else "-"
            cells.append(f"{span['name']}: {shape}" if span and kind == "json" else shape)
            table.add_row(*cells)
        console.print(table)
    if main["targets"]:
        t2 = Table(
            title=f"Targets ({metric}): ours' overhead / openai-v2's overhead", title_justify="left"
        )
        for name in ("call", "ours ovh", "openai-v2 ovh", "ratio", "target", "pass",
                     "per-rep ratios", "paired", "rounds (90% CI)", other, "best peer",
                     "x best per rep", "ahead every rep"):  # fmt: skip
            t2.add_column(name, justify="left" if name == "call" else "right", no_wrap=True)
        for kind, t in main["targets"].items():
            ok = "[green]PASS[/]" if t["pass"] else "[red]FAIL[/]"
            t2.add_row(
                kind,
                _f(t["ours_overhead_us"], "{:+.0f}"),
                _f(t["openai_v2_overhead_us"], "{:+.0f}"),
                _f(t["ratio"], "{:.2f}"),
                f"<= {t['limit']}",
                ok,
                " ".join(_f(r, "{:.2f}") for r in t["ratio_by_rep"]) or "-",
                _f(t["ratio_paired"], "{:.2f}"),
                _ci(t),
                _f(alt["targets"][kind]["ratio"], "{:.2f}"),
                SHORT.get(t.get("best_peer", "-"), t.get("best_peer", "-")),
                " ".join(_f(r, "{:.2f}") for r in t.get("ratio_to_best_by_rep", [])) or "-",
                "[green]yes[/]" if t.get("ahead_of_best_beyond_spread") else "[red]no[/]",
            )
        console.print(t2)
    share = report["cpu_share"]
    console.print(
        "overhead = median over reps of (mode - bare) in the same rep; paired x = median over "
        "rounds of the burst's us/call / bare's in the same round; per chunk = (stream - JSON "
        f"overhead) / {STREAM_CHUNKS}. Modes: "
        + "; ".join(f"{SHORT.get(m, m)} = {LABELS[m]}" for m in main["rows"])
    )
    console.print(
        f"elapsed {report['elapsed_s']:.0f} s; client on CPU 0, servers on CPU 1: "
        f"{report['pinned']}; client cpu/wall {min(share.values()):.2f}-{max(share.values()):.2f}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    )
    if min(share.values()) < 0.85 and not cfg.get("parallel"):
        console.print(
            "[yellow]The client was not CPU-bound (cpu/wall < 0.85): CPU 0 was shared with other "
            "work, so wall times include waiting; the cpu columns (--metric cpu) are the steadier "
            "figure.[/]"
        )
    if report["truncated"]:
        console.print("[yellow]The global deadline cut the run short: fewer rounds than asked.[/]")


# -- entry point -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="~1-minute smoke run")
    p.add_argument("--setup", action="store_true", help="(re)install the peers venv and exit")
    p.add_argument(
        "--refresh-constraints",
        action="store_true",
        help="rebuild the venv without the constraints file, rewrite it from pip freeze; exit",
    )
    p.add_argument("--venv", type=Path, default=VENV, help="peers venv (default: .venv-peers)")
    p.add_argument("--modes", default=None, help=f"comma list from {','.join(MODES)}")
    p.add_argument(
        "--ref", help="git ref of another version for the ours_ref mode (A/B in the same run)"
    )
    p.add_argument("--reps", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--json-burst", type=int)
    p.add_argument("--stream-burst", type=int)
    p.add_argument("--warmup-json", type=int)
    p.add_argument("--warmup-stream", type=int)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--deadline", type=float, help="seconds from start before no new round starts")
    p.add_argument(
        "--metric",
        choices=("wall", "cpu"),
        default=None,
        help="time the headline and the targets use (both are always reported; default cpu, "
        "wall with --sequential)",
    )
    method = p.add_mutually_exclusive_group()
    method.add_argument(
        "--parallel",
        action="store_true",
        help="(the default) run every mode's bursts at once on CPU 0, for --window seconds "
        f"each (streams {STREAM_WINDOW} x), and compare their CPU time per call",
    )
    method.add_argument(
        "--sequential",
        action="store_true",
        help="run one mode's burst at a time, rotating, and compare wall time (the older "
        "method: its repetitions differ by up to 3 x on this VM)",
    )
    p.add_argument("--window", type=float, default=2.0, help="--parallel: JSON window, seconds")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument(
        "--out", type=Path, help=f"default {RESULTS} ({RESULTS_SEQUENTIAL} with --sequential)"
    )
    p.add_argument(
        "--from-samples",
        type=Path,
        metavar="REPORT",
        help="run nothing: aggregate REPORT's samples again with this code, write --out",
    )
    args = p.parse_args(argv)
    args.parallel = not args.sequential
    if args.out is None:
        args.out = RESULTS if args.parallel else RESULTS_SEQUENTIAL
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.metric is None:
        args.metric = "cpu" if args.parallel else "wall"
    args.modes = args.modes.split(",") if args.modes else list(DEFAULT_MODES)
    unknown = set(args.modes) - set(MODES)
    if unknown or BASELINE not in args.modes:
        p.error(f"--modes must include {BASELINE!r} and only names from {MODES}")
    if ("ours_ref" in args.modes) != (args.ref is not None):
        p.error("--ref and the ours_ref mode go together")
    return args


def reaggregate(source: Path, out: Path) -> int:
    """Recompute a report's figures from its own samples (after a change to the statistics)."""
    report = json.loads(source.read_text())
    fields = report["samples"]["fields"]
    samples = [dict(zip(fields, row)) for row in report["samples"]["rows"]]
    modes = report["config"]["modes"]
    report["samples"] = samples
    report["wall"] = aggregate(samples, modes, "wall_s")
    report["cpu"] = aggregate(samples, modes, "cpu_s")
    report["cpu_share"] = cpu_share(samples)
    metric = report["metric"]
    report["rows"], report["targets"] = report[metric]["rows"], report[metric]["targets"]
    write_report(report, out)
    print_report(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_samples:
        return reaggregate(args.from_samples, args.out)
    t_start = float(os.environ.get("LLM_PEERS_T0") or time.time())
    venv = args.venv.resolve()
    if args.setup or args.refresh_constraints:
        ensure_venv(venv, force=True, refresh=args.refresh_constraints)
        return 0
    if not _in_venv(venv):
        python = ensure_venv(venv)
        env = {**os.environ, "LLM_PEERS_T0": repr(t_start)}
        env.pop("PYTHONHOME", None)
        os.execve(str(python), [str(python), str(Path(__file__).resolve()), *argv], env)
    from _common import ref_source

    with ref_source(args.ref):
        result = run(args, t_start)
    report = {
        "benchmark": "llm_peers",
        "machine": {"arch": os.uname().machine, "cpus": os.cpu_count()},
        "python": sys.version.split()[0],
        "config": {
            k: getattr(args, k)
            for k in (
                "reps",
                "rounds",
                "json_burst",
                "stream_burst",
                "warmup_json",
                "warmup_stream",
                "concurrency",
                "deadline",
                "quick",
                "metric",
                "parallel",
                "window",
                "ref",
            )
        }
        | {"modes": args.modes, "stream_chunks": STREAM_CHUNKS},
        "targets_definition": {
            k: f"ours overhead <= {v} x openai_v2 overhead" for k, v in TARGETS.items()
        },
        "metric": args.metric,
        "wall": aggregate(result["samples"], args.modes, "wall_s"),
        "cpu": aggregate(result["samples"], args.modes, "cpu_s"),
        "cpu_share": cpu_share(result["samples"]),
        "rss_mb": {
            m: max(s["rss_mb"] for s in result["samples"] if s["mode"] == m) for m in args.modes
        },
        "elapsed_s": time.time() - t_start,
        **result,
    }
    # The headline figures, in the chosen metric, at the top level.
    report["rows"], report["targets"] = report[args.metric]["rows"], report[args.metric]["targets"]
    write_report(report, args.out)
    print_report(report)
    print(f"wrote {args.out}", file=sys.stderr)
    missed = [k for k, t in report["targets"].items() if not t["pass"]]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
