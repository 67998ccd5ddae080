"""The registry alone: register-and-end pairs per second against a bare locked TTLCache.

    python benchmarks/registry.py

Also with a second thread contending for the lock, and the cost of one sweep over 100,000
entries when none and when 1% have expired. Results go to benchmarks/results/registry.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

from cachetools import TTLCache

from aiohttp_llm_tracing import EndReason, SpanRegistry

HERE = Path(__file__).resolve().parent


class _Entry:
    __slots__ = ()

    def end(self, reason: str, error: BaseException | None = None) -> None:
        pass


def bare_pairs(n: int) -> float:
    cache: TTLCache = TTLCache(maxsize=10_000, ttl=900)
    lock = threading.Lock()
    entry = _Entry()
    keys = [f"{i:032x}" for i in range(n)]
    start = time.perf_counter()
    for key in keys:
        with lock:
            cache[key] = entry
        with lock:
            cache.pop(key, None)
    return n / (time.perf_counter() - start)


def registry_pairs(n: int) -> float:
    registry = SpanRegistry(maxsize=10_000, sweep_interval=None)
    entry = _Entry()
    keys = [f"{i:032x}" for i in range(n)]
    register, end, reason = registry.register, registry.end, EndReason.RESPONSE
    start = time.perf_counter()
    for key in keys:
        register(key, entry)
        end(key, reason)
    rate = n / (time.perf_counter() - start)
    registry.close()
    return rate


def with_contention(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    stop = threading.Event()

    def other() -> None:
        # The same work on another thread: both fight for the GIL and the lock.
        while not stop.is_set():
            fn(2_000)

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    try:
        return fn(n)
    finally:
        stop.set()
        thread.join()


def sweep_cost(expired_fraction: float, size: int = 100_000) -> float:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    registry = SpanRegistry(ttl=100, maxsize=size, sweep_interval=None, timer=clock)
    entry = _Entry()
    n_old = int(size * expired_fraction)
    for i in range(size):
        if i == n_old:
            clock.now = 50.0
        registry.register(f"{i:032x}", entry)
    clock.now = 100.0 + (0.0 if n_old else -1.0)
    start = time.perf_counter()
    ended = registry.sweep()
    cost = time.perf_counter() - start
    assert ended == n_old, (ended, n_old)
    registry.close()
    return cost * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "results" / "registry.json"))
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    for _ in range(args.reps):  # interleaved, so drift hits both alike
        for name, fn in (
            ("bare_ttlcache", lambda: bare_pairs(args.pairs)),
            ("registry", lambda: registry_pairs(args.pairs)),
            ("bare_ttlcache_contended", lambda: with_contention(bare_pairs, args.pairs)),
            ("registry_contended", lambda: with_contention(registry_pairs, args.pairs)),
        ):
            results.setdefault(name, []).append(fn())
    sweeps = {
        "sweep_100k_none_expired_ms": statistics.median(sweep_cost(0.0) for _ in range(5)),
        "sweep_100k_1pct_expired_ms": statistics.median(sweep_cost(0.01) for _ in range(5)),
    }
    medians = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "pairs_per_second": {k: {"median": medians[k], "runs": v} for k, v in results.items()},
        "ratio_registry_to_bare": medians["registry"] / medians["bare_ttlcache"],
        "ratio_registry_to_bare_contended": (
            medians["registry_contended"] / medians["bare_ttlcache_contended"]
        ),
        **sweeps,
    }
    from _common import write_report

    write_report(args.out, report)
    for name, value in medians.items():
        print(f"{name:<26} {value:>12,.0f} pairs/s")
    print(f"{'registry / bare':<26} {report['ratio_registry_to_bare']:>12.2f}")
    print(f"{'registry / bare, contended':<26} {report['ratio_registry_to_bare_contended']:>12.2f}")
    for name, value in sweeps.items():
        print(f"{name:<26} {value:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
