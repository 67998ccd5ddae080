"""The overhead, registry, session-creation and stalls benchmarks still run end to end (tiny
sizes; no timing asserted)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def _bench(name: str) -> ModuleType:
    """A benchmark script imported as a module, its folder on the path while it loads."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def test_overhead_benchmark_reports_every_mode_and_ratio(tmp_path: Path) -> None:
    report = _run(
        "overhead.py",
        *("--reps", "1", "--rounds", "2", "--requests", "20", "--sse-requests", "2"),
        out=tmp_path / "overhead.json",
    )
    modes = {row["mode"] for row in report["rows"].values()}
    assert modes == {
        "bare_plain",
        "ours_plain",
        "inst_plain",
        "instm_plain",
        "contrib_plain",
        "floor_plain",
        "floorm_plain",
        "floorc_plain",
        "lean_plain",
        "bare_chat",
        "ours_chat",
        "bare_sse",
        "ours_sse",
    }
    for conc in (1, 50):
        for key in ("ours_plain", "inst_plain", "instm_plain", "lean_plain"):
            assert f"c{conc}_{key}_minus_floor_us" in report["summary"]
        for key in ("ours_plain", "inst_plain", "ours_chat", "floor_plain", "lean_plain"):
            assert f"c{conc}_{key}_ratio_to_contrib" in report["summary"]
        assert f"c{conc}_sse_cpu_us_per_chunk" in report["summary"]
        assert f"c{conc}_floorm_plain_minus_floor_us" in report["summary"]
        assert f"c{conc}_instm_plain_minus_floorm_us" in report["summary"]
        assert f"c{conc}_floorc_plain_minus_floor_us" in report["summary"]
        assert f"c{conc}_ours_plain_minus_floorc_us" in report["summary"]
        assert f"c{conc}_inst_minus_ours_us" in report["summary"]
        assert f"c{conc}_inst_to_ours_ratio" in report["summary"]
        assert len(report["rows"][f"inst_plain@c{conc}"]["minus_ours_us_by_rep"]) == 1


def test_registry_benchmark_reports_the_ratio_and_sweeps(tmp_path: Path) -> None:
    report = _run("registry.py", "--pairs", "2000", "--reps", "1", out=tmp_path / "registry.json")
    assert report["ratio_registry_to_bare"] > 0
    assert report["ratio_registry_to_bare_contended"] > 0
    assert report["sweep_100k_none_expired_ms"] >= 0
    assert report["sweep_100k_1pct_expired_ms"] >= 0


def test_session_create_benchmark_reports_every_variant(tmp_path: Path) -> None:
    report = _run(
        "session_create.py",
        *("--reps", "2", "--rounds", "2", "--sessions", "20"),
        out=tmp_path / "session_create.json",
    )
    assert set(report["variants"]) == {"bare", "instrumented", "bare_list", "copy", "by_hand"}
    for row in report["variants"].values():
        assert row["us"] > 0
        assert len(row["us_by_rep"]) == 2
        assert all(v > 0 for v in row["us_by_rep"])
    summary = report["summary"]
    for name in report["variants"]:
        assert summary[f"{name}_us"] > 0
    for key in (
        "instrumented_to_bare",
        "copy_to_bare_list",
        "by_hand_to_bare",
        "instrumented_to_by_hand",
    ):
        assert summary[f"ratio_{key}"] > 0
        # A difference may come out either side of zero at these sizes; it must be there.
        assert isinstance(summary[key.replace("_to_", "_minus_") + "_us"], float)


def test_stalls_benchmark_reports_every_case_and_the_lag(tmp_path: Path) -> None:
    report = _run(
        "stalls.py",
        *("--calls", "2", "--size", "20000", "--streams", "4", "--rounds", "1"),
        *("--lag-min-kib", "4", "--lag-max-kib", "8", "--lag-delay", "0.001"),
        out=tmp_path / "stalls.json",
    )
    assert set(report["cases"]) == {
        "chat_json",
        "chat_sse",
        "chat_sse_general",
        "chat_json_gzip",
        "anthropic_sse",
        "bedrock_converse_stream",
    }
    for row in report["cases"].values():
        assert row["calls"] == 2
        assert row["bytes"] > 10_000
        assert row["on_event_loop"]
        assert row["flags"] == []  # parsed whole: nothing cut, no parse error, output recorded
        for key in ("median_ms", "max_ms", "gc_young_ms_max", "gc_full_ms_max"):
            assert row[key] >= 0
        assert set(row["phases_median_ms"]) == {
            "request_parse",
            "response_parse",
            "attributes",
            "finish_rest",
            "gate",
            "sdk",
        }
    for mode in ("traced", "untraced"):
        lag = report["lag"][mode]
        assert lag["rounds"] == 1
        assert lag["samples"] > 0
        assert len(lag["p99_ms_by_round"]) == 1
        for key in ("p50_ms", "p99_ms", "max_ms"):
            assert lag[key] >= -1  # lateness; a wake-up may come a hair early
        for key in ("p99", "max"):
            assert f"lag_{key}_{mode}_ms" in report["summary"]
    traced = report["lag"]["traced"]
    # CPU time is at most the wall time it was taken in (the loop thread's own, preemption out).
    assert 0 <= traced["end_cpu_max_ms"] <= traced["end_max_ms"] + 0.05
    summary = report["summary"]
    assert 0 <= summary["end_cpu_max_ms"] <= summary["end_max_ms"] + 0.05
    assert isinstance(summary["cases_over_budget"], list)


def test_callbacks_benchmark_reports_every_difference(tmp_path: Path) -> None:
    report = _run(
        "callbacks.py", "--reps", "2", "--requests", "50", out=tmp_path / "callbacks.json"
    )
    assert set(report["min_us"]) == {"floor", "floorc", "floorm", "ours", "oursm", "lean"}
    assert all(v > 0 for v in report["min_us"].values())
    for key in ("floorc_minus_floor_us", "ours_minus_floorc_us", "oursm_minus_floorm_us"):
        assert key in report["summary"]


def test_instructions_summary_splits_our_cost_and_checks_the_targets() -> None:
    # The valgrind runs themselves take minutes; the arithmetic on their counts is checked here.
    instructions = _bench("instructions")
    per = {
        "bare": {"json": 100.0, "stream": 1000.0, "plain": 10.0},
        "empty": {"json": 110.0, "stream": 1010.0, "plain": 20.0},
        "floor": {"json": 130.0, "stream": 1030.0, "plain": 40.0},
        "floorm": {"plain": 50.0},
        "floorc": {"plain": 45.0},
        "ours_http": {"json": 150.0, "stream": 1060.0},
        "ours": {"json": 190.0, "stream": 1100.0, "plain": 60.0},
        "openai_v2": {"json": 150.0, "stream": 1200.0},
        "langfuse": {"json": 170.0, "stream": 1150.0},
    }
    report = instructions.summarise(per, ("json", "stream", "plain"))
    assert report["rows"]["ours"]["json"] == {"per_call": 190, "overhead": 90}
    assert report["rows"]["ours"]["per_chunk"] == round(10 / 51)
    assert "per_chunk" not in report["rows"]["floorm"]
    assert "plain" not in report["rows"]["openai_v2"]
    json_target = report["targets"]["json"]
    assert json_target["ratio_to_openai_v2"] == 1.8 and not json_target["pass"]
    assert json_target["budget_above_floor"] == round(0.85 * 50 - 30)
    assert json_target["ours_above_floor"] == 60
    stream_target = report["targets"]["stream"]
    assert stream_target["pass"] and stream_target["best_peer"] == "langfuse"
    assert "plain" not in report["targets"]
    assert report["split_of_ours"]["json"] == {
        "aiohttp_trace_machinery": 10,
        "sdk_span": 20,
        "ours_http_above_floor": 20,
        "ours_llm_layer": 40,
        "ours_above_floor": 60,
    }
    assert report["split_of_ours"]["plain"]["content_in_sdk"] == 5
    assert report["split_of_ours"]["plain"]["one_histogram_record"] == 10
    assert report["split_of_ours"]["plain"]["ours_above_content_floor"] == 15
    # A stream's extra cost over a JSON call, per chunk: (600 - 90) / 51.
    chunked = instructions.summarise(
        {"bare": {"json": 100.0, "stream": 1000.0}, "ours": {"json": 190.0, "stream": 1600.0}},
        ("json", "stream"),
    )
    assert chunked["rows"]["ours"]["per_chunk"] == 10
    text = instructions._table(report | {"kinds": ["json", "stream", "plain"]})
    assert "NOT met" in text and "leaves" in text


def test_instructions_repetitions_give_medians_and_paired_ratios() -> None:
    # --repeat: a stream's count moves between runs, so each mode's median is the figure, and
    # each repetition's ratio is taken against that repetition's own bare run.
    instructions = _bench("instructions")
    samples = {
        "bare": {"stream": [1000.0, 1100.0, 1050.0]},
        "ours": {"stream": [1060.0, 1150.0, 1400.0]},
        "openai_v2": {"stream": [1100.0, 1200.0, 1150.0]},
    }
    assert instructions.medians(samples)["ours"]["stream"] == 1150.0
    assert instructions.ratios_by_rep(samples, "stream") == [0.6, 0.5, 3.5]
    assert instructions.ratios_by_rep(samples, "json") == []


def test_sse_chunk_benchmark_compares_two_trees_in_one_run(tmp_path: Path) -> None:
    inside_git = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, check=False
    )
    if inside_git.returncode != 0:
        pytest.skip("needs the git history to export the reference tree")
    report = _run(
        "sse_chunk.py",
        *("--ref", "HEAD", "--reps", "1", "--rounds", "2", "--burst", "2"),
        out=tmp_path / "sse_chunk.json",
    )
    assert set(report["us_per_chunk"]) == {"this", "HEAD"}
    assert all(len(reps) == 1 for reps in report["us_per_chunk_by_rep"].values())
    this, ref = report["us_per_chunk"]["this"], report["us_per_chunk"]["HEAD"]
    if ref > 0:  # tiny runs can measure nothing at all
        assert report["this_over_ref"] == pytest.approx(this / ref, rel=0.02, abs=0.002)


def test_sse_chunk_takes_bare_aiohttp_and_the_chat_call_out_of_each_round() -> None:
    per_chunk = _bench("sse_chunk").per_chunk
    # Round 1: the stream's extra over chat is (900 - 500) - (300 - 100) = 200 us, 1 us a chunk;
    # round 2: 3 us a chunk; round 3: 2 us. The median is 2.
    cpu = {
        "bare_chat": [100, 100, 100],
        "ours_chat": [300, 300, 300],
        "bare_sse": [500, 500, 500],
        "ours_sse": [900, 1300, 1100],
    }
    assert per_chunk(cpu) == 2.0


def test_llm_peers_interval_resamples_whole_rounds() -> None:
    # The run itself needs the peers venv and minutes; the interval on its rounds is checked here.
    llm_peers = _bench("llm_peers")
    rounds = [f"0.{i}" for i in range(20)]
    # Ours costs half of openai-v2's overhead in every round, whatever the round's drift.
    ref = {k: 100.0 + 40 * (i % 4) for i, k in enumerate(rounds)}
    ours = {k: v / 2 for k, v in ref.items()}
    steady = llm_peers._round_interval(ours, ref)
    assert steady["rounds"] == 20
    assert steady["ratio_rounds"] == pytest.approx(0.5)
    # Paired rounds: a drift common to both moves neither end of the interval much.
    lo, hi = steady["ratio_rounds_ci90"]
    assert 0.4 < lo <= 0.5 <= hi < 0.6
    # Noise of ours' own widens it, and the same samples give the same interval.
    noisy = {k: v + (60 if i % 2 else -60) for i, (k, v) in enumerate(ours.items())}
    wide = llm_peers._round_interval(noisy, ref)
    assert wide["ratio_rounds_ci90"][1] - wide["ratio_rounds_ci90"][0] > hi - lo
    assert llm_peers._round_interval(noisy, ref) == wide
    # Repetitions resampled whole: a shift shared by one repetition's rounds widens the interval
    # that the same rounds give when they all come from one repetition.
    split = {f"{i % 3}.{i}": v for i, v in enumerate(ours.values())}
    shifted = {k: v * (1.6 if k.startswith("0.") else 1.0) for k, v in split.items()}
    ref3 = {f"{i % 3}.{i}": v for i, v in enumerate(ref.values())}
    one_rep = llm_peers._round_interval(dict(zip(rounds, shifted.values())), ref)
    three_reps = llm_peers._round_interval(shifted, ref3)
    assert three_reps["reps"] == 3 and one_rep["reps"] == 1
    assert three_reps["ratio_rounds"] == one_rep["ratio_rounds"]
    width = lambda r: r["ratio_rounds_ci90"][1] - r["ratio_rounds_ci90"][0]  # noqa: E731
    assert width(three_reps) > width(one_rep)
    # Too few paired rounds for an interval; rounds missing on one side are left out.
    assert llm_peers._round_interval(ours, {k: ref[k] for k in rounds[:4]}) == {}
    assert llm_peers._round_interval(ours, {k: ref[k] for k in rounds[:8]})["rounds"] == 8


def test_llm_peers_parallel_windows_are_shared_and_counted_per_worker() -> None:
    # --parallel: every worker gets the same window, and each sample carries the calls that
    # worker made in it (they differ by mode), which the per-call figures divide by.
    llm_peers = _bench("llm_peers")

    class FakeWorker:
        def __init__(self, mode: str, calls: int) -> None:
            self.mode, self.calls, self.sent = mode, calls, []

        def send(self, msg: dict) -> None:
            self.sent.append(msg)

        def recv(self, timeout: float) -> dict:
            return {"ok": True, "n": self.calls, "wall_s": 2.5, "cpu_s": 0.5 * self.calls / 100,
                    "spans": self.calls, "rss_mb": 70.0}  # fmt: skip

    workers = [FakeWorker("bare", 300), FakeWorker("ours", 240)]
    samples = llm_peers._window(workers, "json", 2.0, 20)  # type: ignore[arg-type]
    (a,), (b,) = workers[0].sent, workers[1].sent
    assert a == b and a["until"] - a["start_at"] == 2.0 and a["concurrency"] == 20
    assert [(s["mode"], s["n"]) for s in samples] == [("bare", 300), ("ours", 240)]
    rows = [{"rep": 0, "round": 0, "position": i, **s} for i, s in enumerate(samples)]
    cpu = llm_peers.aggregate(rows, ["bare", "ours"], "cpu_s")["rows"]
    assert cpu["bare"]["json"]["us"] == pytest.approx(5000.0)
    assert cpu["ours"]["json"]["overhead_us"] == pytest.approx(0.0)


def test_llm_peers_parallel_window_runs_real_workers_at_once(tmp_path: Path) -> None:
    # The real thing, small: the mock server and two worker processes (bare and ours) through
    # the openai SDK over aiohttp, one shared window; each counts its own calls and spans.
    import time

    llm_peers = _bench("llm_peers")
    deadline = llm_peers.Deadline(time.time(), 200)
    with llm_peers.server_process(None, tmp_path) as url:
        workers = [
            llm_peers.WorkerProc(mode, url, None, tmp_path, deadline) for mode in ("bare", "ours")
        ]
        try:
            for w in workers:
                w.call({"cmd": "init", "warmup_json": 4, "warmup_stream": 2}, timeout=120)
            samples = llm_peers._window(workers, "json", 0.3, 4)
        finally:
            for w in workers:
                w.stop()
    bare, ours = samples
    assert (bare["mode"], ours["mode"]) == ("bare", "ours")
    # Four loops each, every one calling until the window closed; one span per call for ours.
    assert bare["n"] >= 4 and ours["n"] >= 4
    assert (bare["spans"], ours["spans"]) == (0, ours["n"])
    # The worker's own CPU time, with getrusage's split beside it.
    assert all(s["cpu_s"] > 0 and s["ru_utime"] > 0 for s in samples)
    # Each ran the window, from about its start (a late wake-up shortens it) to its close.
    assert all(0.15 < s["wall_s"] < 10 for s in samples)


def test_peers_worker_runs_until_the_window_closes() -> None:
    import asyncio
    import time

    worker = _bench("_peers_worker").Worker("bare", "http://127.0.0.1:1")
    started = 0

    async def call() -> str:
        nonlocal started
        started += 1
        await asyncio.sleep(0)
        return "Paris"

    worker._json = call
    # A count: exactly n calls, however long they take.
    assert asyncio.run(worker._run("json", 7, 3)) == (7, 7)
    # A window: every one of the concurrent loops keeps calling until it closes, then stops.
    started = 0
    calls, got = asyncio.run(worker._run("json", 0, 3, time.monotonic() + 0.05))
    assert calls == got == started >= 3


def test_gc_cost_summary_takes_medians_per_generation() -> None:
    gc_cost = _bench("gc_cost")
    runs = [
        {
            "mode": "ours",
            "us_per_call": us,
            "gc_us_per_call": [g0, 1.0, g2],
            "collections_per_1000": [40.0, 4.0, c2],
        }
        for us, g0, g2, c2 in (
            (100.0, 20.0, 0.0, 0.0),
            (300.0, 30.0, 60.0, 0.3),
            (200.0, 25.0, 0.0, 0.0),
        )
    ]
    row = gc_cost.summarise(runs)["ours"]
    assert row["us_per_call"] == 200.0
    assert row["gc_us_per_call"] == [25.0, 1.0, 0.0]
    assert row["collections_per_1000"] == [40.0, 4.0, 0.0]
    assert row["gc_us_per_call_total"] == 26.0
    assert row["gc_us_per_call_by_rep"] == [21.0, 91.0, 26.0]


def test_gc_cost_summary_pools_the_turns_of_queued_ends() -> None:
    gc_cost = _bench("gc_cost")
    base = {"us_per_call": 1.0, "gc_us_per_call": [1.0] * 3, "collections_per_1000": [1.0] * 3}
    drains = ((10, 5, -4.0), (30, 0, -6.0), (20, 10, -5.0))
    runs = [
        base
        | {"mode": "ours", "drain_turns": t, "drain_turns_at_zero": z}
        | {"count_change_per_queued_end": c}
        for t, z, c in drains
    ]
    runs.append(base | {"mode": "bare"})
    rows = gc_cost.summarise(runs)
    assert rows["ours"]["drain_turns_at_zero_share"] == 0.25  # 15 of 60 turns, pooled
    assert rows["ours"]["count_change_per_queued_end"] == -5.0
    assert "drain_turns_at_zero_share" not in rows["bare"]


def test_the_ref_mode_imports_the_exported_version_first(monkeypatch: pytest.MonkeyPatch) -> None:
    common, worker = _bench("_common"), _bench("_peers_worker")
    monkeypatch.delenv(common.REF_SRC_ENV, raising=False)
    with pytest.raises(ValueError, match="--ref"):
        worker.mode_env("ours_ref", "http://127.0.0.1:1")
    if subprocess.run(["git", "-C", str(BENCH), "rev-parse"], capture_output=True).returncode:
        pytest.skip("needs the git history to export the reference tree")
    with common.ref_source("HEAD"):
        src = Path(worker.mode_env("ours_ref", "http://127.0.0.1:1")["PYTHONPATH"].split(":")[0])
        assert (src / "aiohttp_llm_tracing" / "__init__.py").is_file()
    assert common.REF_SRC_ENV not in os.environ
    assert not src.exists()  # the export is removed with the block
