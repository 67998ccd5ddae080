"""CPU per request spent in the trace config's own callbacks, with no network in the way.

    python benchmarks/callbacks.py [--reps 15] [--requests 4000]

``overhead.py`` measures what a user sees (wall time of real requests), but on this VM its
per-process figures move by +-15 us, more than the differences it has to show on a plain
request. This one drives each mode's ``on_request_start`` and ``on_request_end`` callbacks
directly, as aiohttp would for a ``GET`` whose body came with the headers, with the same SDK
``TracerProvider`` and ``BatchSpanProcessor`` into a no-op exporter (flushed inside the timed
block), in one process pinned to one CPU. Blocks of each mode take turns in rotated order;
a mode's figure is the minimum over blocks of CPU us per request (the least interference the
run saw), and each difference is taken between those minima.

Modes: ``floor`` (an SDK span with two attributes), ``floorc`` (the floor writing our span's very
content and headers), ``floorm`` (the floor plus one SDK histogram record), ``ours``
(``create_trace_config`` defaults), ``oursm`` (the same with a ``MeterProvider``, as the
instrumentor runs with metrics on) and ``lean`` (``propagate=False``,
``request_id_header=None``, ``llm=False``). Results: benchmarks/results/callbacks.json.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import round_order  # noqa: E402

MODES = ("floor", "floorc", "floorm", "ours", "oursm", "lean")


def _config(mode: str, provider: Any) -> Any:
    from _common import content_floor_trace_config, floor_trace_config, null_meter_provider
    from aiohttp_llm_tracing import create_trace_config

    if mode == "floor":
        return floor_trace_config(provider)
    if mode == "floorc":
        return content_floor_trace_config(provider)
    if mode == "floorm":
        return floor_trace_config(provider, null_meter_provider())
    if mode == "ours":
        return create_trace_config(tracer_provider=provider)
    if mode == "oursm":
        return create_trace_config(tracer_provider=provider, meter_provider=null_meter_provider())
    return create_trace_config(
        tracer_provider=provider, propagate=False, request_id_header=None, llm=False
    )


class _Content:
    """A response body that came whole with the headers, as a small JSON reply's does."""

    def is_eof(self) -> bool:
        return True


class _Response:
    def __init__(self) -> None:
        import aiohttp
        from multidict import CIMultiDict, CIMultiDictProxy

        self.status = 200
        self.version = aiohttp.HttpVersion11
        self.headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
        self.content = _Content()


def _drive(coro: Any) -> None:
    # The callbacks never await: one send runs each to completion, with no event loop cost.
    with contextlib.suppress(StopIteration):
        coro.send(None)


class _Mode:
    def __init__(self, name: str) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from _common import CountingExporter

        self.name = name
        self.exporter = CountingExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.config = _config(name, self.provider)
        self.config.freeze()
        self.sent = 0

    def block(self, n: int) -> float:
        """CPU us per request over ``n`` requests, export included."""
        import aiohttp
        from multidict import CIMultiDict
        from yarl import URL

        config, response = self.config, _Response()
        starts, ends = list(config.on_request_start), list(config.on_request_end)
        url = URL("http://127.0.0.1:8080/v1/items?page=2")
        self.provider.force_flush()
        t0 = time.process_time()
        for i in range(n):
            ctx = config.trace_config_ctx()
            headers: CIMultiDict[str] = CIMultiDict()
            start = aiohttp.TraceRequestStartParams("GET", url, headers)
            for callback in starts:
                _drive(callback(None, ctx, start))
            end = aiohttp.TraceRequestEndParams("GET", url, headers, response)  # type: ignore[arg-type]
            for callback in ends:
                _drive(callback(None, ctx, end))
            if i % 512 == 511:  # as the processor's worker would, before its queue fills
                self.provider.force_flush()
        self.provider.force_flush()
        self.sent += n
        return (time.process_time() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="blocks per mode")
    parser.add_argument("--requests", type=int, default=4000, help="requests per block")
    parser.add_argument("--out", default=str(HERE / "results" / "callbacks.json"))
    args = parser.parse_args(argv)
    from _common import pin_to_cpu

    pin_to_cpu(0)
    modes = [_Mode(name) for name in MODES]
    for mode in modes:
        mode.block(max(200, args.requests // 4))
    samples: dict[str, list[float]] = {m.name: [] for m in modes}
    for r in range(args.reps):
        for mode in round_order(modes, r):
            samples[mode.name].append(mode.block(args.requests))
    for mode in modes:
        mode.provider.shutdown()
        if mode.exporter.count < mode.sent:
            raise RuntimeError(f"{mode.name}: exported {mode.exporter.count} < {mode.sent}")
    best = {name: min(values) for name, values in samples.items()}
    summary = {
        "floorc_minus_floor_us": best["floorc"] - best["floor"],
        "floorm_minus_floor_us": best["floorm"] - best["floor"],
        "ours_minus_floor_us": best["ours"] - best["floor"],
        "ours_minus_floorc_us": best["ours"] - best["floorc"],
        "oursm_minus_floor_us": best["oursm"] - best["floor"],
        "oursm_minus_floorm_us": best["oursm"] - best["floorm"],
        "lean_minus_floor_us": best["lean"] - best["floor"],
    }
    report = {
        "python": sys.version.split()[0],
        "method": "callbacks driven directly, one process on one CPU, blocks rotated; "
        "min over blocks of CPU us per request",
        "reps": args.reps,
        "requests": args.requests,
        "min_us": best,
        "samples_us": samples,
        "summary": summary,
    }
    from _common import write_report

    write_report(args.out, report)
    width = max(map(len, MODES))
    for name in MODES:
        print(f"{name:<{width}}  {best[name]:6.2f} us/request (CPU, min of {args.reps} blocks)")
    for key, value in summary.items():
        print(f"{key:<24} {value:+6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
