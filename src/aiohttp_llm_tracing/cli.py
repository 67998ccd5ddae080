"""The ``aiohttp-llm-tracing`` command: ``demo``, ``receive`` and ``mock``.

``demo`` runs a traced agent against an embedded mock LLM and prints what an OTLP receiver got;
``receive`` is that receiver on its own (OTLP/gRPC, or OTLP/HTTP with ``--http``), for looking
at what your application sends; ``mock`` serves the embedded mock LLM for your own code.

``demo`` needs the ``[demo]`` extra and ``receive`` the ``[cli]`` extra; ``mock`` runs on the
core install. A command whose extra is missing says which one to install and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from ._version import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from .receiver import ReceivedSpan

__all__ = ["main"]

PROG = "aiohttp-llm-tracing"
_DEFAULT_GRPC_PORT = 4317
_DEFAULT_HTTP_PORT = 4318
# The extra each command needs, and the modules that extra brings.
_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo": ("demo", ("rich", "openai")),
    "receive": ("cli", ("rich",)),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    missing = _missing_extra(args.command)
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    if args.command == "demo":
        return _demo(args.content)
    if args.command == "receive":
        return _receive(
            args.port, args.json, args.max_seconds, http=args.http, content=args.content
        )
    if args.command == "mock":
        return _mock(args.port, args.chunk_delay, args.max_seconds)
    parser.print_help()  # pragma: no cover - argparse rejects unknown commands
    return 2


def _missing_extra(command: str) -> str | None:
    """The one-line message for a command whose extra is not installed, else None."""
    if command not in _NEEDS:
        return None
    extra, modules = _NEEDS[command]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{PROG} {command} needs the [{extra}] extra: pip install '{PROG}[{extra}]'"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OpenTelemetry and Langfuse tracing for LLM calls made with aiohttp.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="trace a small agent against an embedded mock LLM and show what was exported",
        description="Runs offline in a few seconds; no network or accounts needed. "
        f"Needs the [demo] extra: pip install '{PROG}[demo]'.",
    )
    _content_flag(demo)
    receive = commands.add_parser(
        "receive",
        help="run a local OTLP receiver (gRPC, or HTTP with --http) and print each trace",
        description=(
            "gRPC: point your application at it with "
            "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT and "
            'setup_tracing(exporter="otlp"). --http: OTLP/HTTP protobuf on /v1/traces and on '
            "Langfuse's /api/public/otel/v1/traces, so "
            'setup_tracing(exporter="langfuse", langfuse_host="http://127.0.0.1:PORT") '
            "previews what Langfuse would get. Ctrl-C stops it. "
            f"Needs the [cli] extra: pip install '{PROG}[cli]'."
        ),
    )
    receive.add_argument(
        "--http",
        action="store_true",
        help="receive OTLP/HTTP (protobuf, gzip or not) instead of OTLP/gRPC",
    )
    receive.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port on 127.0.0.1 (default {_DEFAULT_GRPC_PORT}, {_DEFAULT_HTTP_PORT} with "
        "--http; 0 picks one)",
    )
    receive.add_argument(
        "--json", metavar="FILE", help="also append every span to FILE as one JSON object a line"
    )
    _content_flag(receive)
    _max_seconds_flag(receive)
    mock = commands.add_parser(
        "mock",
        help="serve the embedded mock LLM (OpenAI, Anthropic, Gemini, Bedrock, ...) locally",
        description=(
            "Deterministic answers in each provider's wire format, on 127.0.0.1, until Ctrl-C. "
            "The request's model picks misbehaviours (error-500, truncated-sse, slow-headers...)."
        ),
    )
    mock.add_argument(
        "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)"
    )
    mock.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between stream chunks (default 0)",
    )
    _max_seconds_flag(mock)
    return parser


def _content_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--content",
        action="store_true",
        help="show a short preview of each generation's input and output under it",
    )


def _max_seconds_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="N",
        help="stop by itself after N seconds",
    )


def _demo(content: bool) -> int:
    from rich.console import Console

    from ._demo import run_demo

    return 0 if run_demo(Console(), content=content).ok else 1


class _BatchPrinter:
    """The receiver's ``on_spans`` callback: print each batch as trees, log it as JSON lines.

    gRPC calls it from several worker threads, so output is serialised under one lock.
    """

    def __init__(self, console: Console, out: TextIO | None, content: bool = False) -> None:
        self._console = console
        self._out = out
        self._content = content
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, spans: list[ReceivedSpan]) -> None:
        from .render import print_trees, spans_to_json

        with self._lock:
            self.count += len(spans)
            print_trees(spans, self._console, content=self._content)
            if self._out is not None:
                for record in spans_to_json(spans):
                    self._out.write(json.dumps(record) + "\n")
                # Flushed per batch so the file is complete whenever the exporter's call returns.
                self._out.flush()


def _receive(
    port: int | None,
    json_path: str | None,
    max_seconds: float | None,
    *,
    http: bool = False,
    content: bool = False,
) -> int:
    from rich.console import Console

    from .receiver import (
        LANGFUSE_OTLP_TRACES_PATH,
        OTLP_HTTP_TRACES_PATH,
        OTLPGrpcReceiver,
        OTLPHttpReceiver,
    )

    if port is None:
        port = _DEFAULT_HTTP_PORT if http else _DEFAULT_GRPC_PORT
    console = Console()
    out = open(json_path, "a", encoding="utf-8") if json_path else None  # noqa: SIM115
    try:
        printer = _BatchPrinter(console, out, content)
        # keep=False: a receiver left running for days must not hold every span it printed.
        receiver: OTLPGrpcReceiver | OTLPHttpReceiver
        if http:
            receiver = OTLPHttpReceiver(
                port=port,
                on_spans=printer,
                keep=False,
                paths=(OTLP_HTTP_TRACES_PATH, LANGFUSE_OTLP_TRACES_PATH),
            )
        else:
            receiver = OTLPGrpcReceiver(port=port, on_spans=printer, keep=False)
        try:
            bound = receiver.start()
        except (RuntimeError, OSError) as exc:
            console.print(f"[red]Could not listen on 127.0.0.1:{port}: {exc}[/red]")
            return 1
        try:
            console.print(_banner(bound, http), soft_wrap=True)
            _wait(max_seconds)
        finally:
            if isinstance(receiver, OTLPGrpcReceiver):
                receiver.stop(grace=1.0)
            else:
                receiver.stop()
        console.print(f"Stopped; received {printer.count} spans.")
        return 0
    finally:
        if out is not None:
            out.close()


def _banner(port: int, http: bool) -> str:
    url = f"http://127.0.0.1:{port}"
    if not http:
        return (
            f"Listening for OTLP/gRPC on [bold]127.0.0.1:{port}[/bold]. "
            f"Send spans with OTEL_EXPORTER_OTLP_ENDPOINT={url}. Ctrl-C stops."
        )
    return (
        f"Listening for OTLP/HTTP on [bold]127.0.0.1:{port}[/bold] "
        "(POST /v1/traces and /api/public/otel/v1/traces, protobuf, gzip or not). "
        f"Send spans with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={url}/v1/traces, or preview what "
        f'Langfuse would get with setup_tracing(exporter="langfuse", langfuse_host="{url}") '
        "(any LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY). Ctrl-C stops."
    )


def mock_base_urls(port: int) -> list[tuple[str, str]]:
    """``(API shape, base URL and paths)`` for each API the mock speaks on ``port``."""
    origin = f"http://127.0.0.1:{port}"
    return [
        ("OpenAI", f"{origin}/v1  (chat/completions, completions, embeddings, responses)"),
        ("Azure OpenAI", f"{origin}  (/openai/deployments/{{deployment}}/chat/completions...)"),
        ("Groq", f"{origin}  (/openai/v1/chat/completions...)"),
        ("Anthropic", f"{origin}  (/v1/messages)"),
        ("Gemini", f"{origin}  (/v1beta/models/{{model}}:generateContent...)"),
        ("Vertex AI", f"{origin}  (/v1/projects/{{p}}/locations/{{l}}/publishers/...)"),
        ("Bedrock Runtime", f"{origin}  (/model/{{modelId}}/converse...)"),
        ("Cohere v2", f"{origin}  (/v2/chat, /v2/embed, /v2/rerank)"),
        ("Ollama", f"{origin}  (/api/chat, /api/generate, /api/embed)"),
        ("TGI / SGLang", f"{origin}  (/generate, /generate_stream)"),
    ]


def _mock(port: int, chunk_delay: float, max_seconds: float | None) -> int:
    from .mock_llm import run_in_thread

    try:
        server = run_in_thread(port=port, chunk_delay=chunk_delay)
    except OSError as exc:
        print(f"Could not listen on 127.0.0.1:{port}: {exc}", flush=True)
        return 1
    try:
        rows = mock_base_urls(server.port)
        width = max(len(name) for name, _ in rows)
        lines = [f"Mock LLM server on http://127.0.0.1:{server.port}. Ctrl-C stops."]
        lines += [f"  {name:<{width}}  {url}" for name, url in rows]
        lines.append(
            "  Models pick misbehaviours: error-400|429|500, gzip|deflate|br, invalid-json, "
            "truncated-sse, binary, huge, unknown-shape, slow-headers, never-ending."
        )
        print("\n".join(lines), flush=True)
        _wait(max_seconds)
    finally:
        server.stop()
    print("Stopped.", flush=True)
    return 0


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
