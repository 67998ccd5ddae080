"""The ``aiohttp-llm-tracing`` command: ``demo`` and ``receive``.

``demo`` runs a traced agent against an embedded mock LLM and prints what an OTLP receiver got;
``receive`` is that receiver on its own, for looking at what your application sends.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from rich.console import Console

from ._version import __version__

if TYPE_CHECKING:
    from .receiver import ReceivedSpan

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo()
    if args.command == "receive":
        return _receive(args.port, args.json, args.max_seconds)
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiohttp-llm-tracing",
        description="OpenTelemetry and Langfuse tracing for LLM calls made with aiohttp.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="trace a small agent against an embedded mock LLM and show what was exported",
        description="Runs offline in a few seconds; no network or accounts needed.",
    )
    receive = commands.add_parser(
        "receive",
        help="run a local OTLP/gRPC receiver and print each trace it gets",
        description=(
            "Point your application at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT "
            'and setup_tracing(exporter="otlp"). Ctrl-C stops it.'
        ),
    )
    receive.add_argument(
        "--port", type=int, default=4317, help="port on 127.0.0.1 (default 4317; 0 picks one)"
    )
    receive.add_argument(
        "--json", metavar="FILE", help="also append every span to FILE as one JSON object a line"
    )
    receive.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="N",
        help="stop by itself after N seconds",
    )
    return parser


def _demo() -> int:
    from ._demo import run_demo

    return 0 if run_demo(Console()).ok else 1


class _BatchPrinter:
    """The receiver's ``on_spans`` callback: print each batch as trees, log it as JSON lines.

    gRPC calls it from several worker threads, so output is serialised under one lock.
    """

    def __init__(self, console: Console, out: TextIO | None) -> None:
        self._console = console
        self._out = out
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, spans: list[ReceivedSpan]) -> None:
        from .render import print_trees, spans_to_json

        with self._lock:
            self.count += len(spans)
            print_trees(spans, self._console)
            if self._out is not None:
                for record in spans_to_json(spans):
                    self._out.write(json.dumps(record) + "\n")
                # Flushed per batch so the file is complete whenever the exporter's call returns.
                self._out.flush()


def _receive(port: int, json_path: str | None, max_seconds: float | None) -> int:
    from .receiver import OTLPGrpcReceiver

    console = Console()
    out = open(json_path, "a", encoding="utf-8") if json_path else None  # noqa: SIM115
    try:
        printer = _BatchPrinter(console, out)
        # keep=False: a receiver left running for days must not hold every span it printed.
        receiver = OTLPGrpcReceiver(port=port, on_spans=printer, keep=False)
        try:
            bound = receiver.start()
        except RuntimeError as exc:
            console.print(f"[red]Could not listen on 127.0.0.1:{port}: {exc}[/red]")
            return 1
        try:
            console.print(
                f"Listening for OTLP/gRPC on [bold]127.0.0.1:{bound}[/bold]. "
                f"Send spans with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{bound}. "
                "Ctrl-C stops.",
                soft_wrap=True,
            )
            _wait(max_seconds)
        finally:
            receiver.stop(grace=1.0)
        console.print(f"Stopped; received {printer.count} spans.")
        return 0
    finally:
        if out is not None:
            out.close()


def _wait(max_seconds: float | None) -> None:
    """Block until Ctrl-C, SIGTERM or ``max_seconds``; all of them are a clean stop."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    try:
        # Event.wait with a timeout wakes for signals on the main thread, unlike a bare join.
        stop.wait(max_seconds)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
