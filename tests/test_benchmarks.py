"""The overhead and registry benchmarks still run end to end (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        "contrib_plain",
        "floor_plain",
        "lean_plain",
        "bare_chat",
        "ours_chat",
        "bare_sse",
        "ours_sse",
    }
    for conc in (1, 50):
        for key in ("ours_plain", "ours_chat", "floor_plain", "lean_plain"):
            assert f"c{conc}_{key}_ratio_to_contrib" in report["summary"]
        assert f"c{conc}_sse_cpu_us_per_chunk" in report["summary"]


def test_registry_benchmark_reports_the_ratio_and_sweeps(tmp_path: Path) -> None:
    report = _run("registry.py", "--pairs", "2000", "--reps", "1", out=tmp_path / "registry.json")
    assert report["ratio_registry_to_bare"] > 0
    assert report["ratio_registry_to_bare_contended"] > 0
    assert report["sweep_100k_none_expired_ms"] >= 0
    assert report["sweep_100k_1pct_expired_ms"] >= 0
