"""The leak harness, small: 5,000 requests over every end path, run as `make test` runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "leak.py"


def test_leak_harness_5000_requests():
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--requests", "5000", "--no-tracemalloc"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "in flight         0 after the final sweep" in out
    assert "spans started     5,000" in out and "spans exported    5,000" in out
    assert "no leak" in out
