"""The end of a large LLM call, done off the event loop.

Parsing a 1 MiB stream (thousands of events, each its own JSON; or AWS eventstream frames, which
botocore decodes in Python) takes tens of milliseconds, and the end signal comes from inside the
caller's read, on the event loop. So when an LLM call's captured bodies are large the span is
handed, already popped from the registry (exactly once still holds), to one daemon thread that
parses, writes the attributes and ends it with the end time taken at the signal. The loop then
waits at most the interpreter's switch interval (5 ms) for the lock that thread holds, never the
whole parse. Small calls, nearly all of them, end inline as before: a thread hop would cost more
than their parse.

``drain()`` waits for the thread to catch up; the provider's ``flush``/``shutdown``, the exit
hook and the test fixtures call it, so nothing is exported before it is finished.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["OFFLOAD_BYTES", "drain", "submit"]

OFFLOAD_BYTES = 256 * 1024
"""Captured body bytes (request and response together) from which the end moves off the loop."""

_logger = logging.getLogger("aiohttp_llm_tracing")
_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_idle = threading.Condition()
_pending = 0
_thread: threading.Thread | None = None


def submit(work: Callable[[], None]) -> None:
    """Run ``work`` on the finisher thread (started on first use)."""
    global _pending, _thread
    with _idle:
        _pending += 1
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(
                target=_run, name="aiohttp-llm-tracing-finisher", daemon=True
            )
            try:
                _thread.start()
            except RuntimeError:
                # No new threads at interpreter exit (3.12+): finish inline.
                _thread = None
                _pending -= 1
                _call(work)
                return
    _queue.put(work)


def drain(timeout: float | None = 10.0) -> bool:
    """Wait until every submitted end has run; ``False`` if ``timeout`` ran out first."""
    with _idle:
        return _idle.wait_for(lambda: _pending == 0, timeout)


def _call(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # HttpSpan.end guards itself; this is the last line of defence
        _logger.exception("aiohttp-llm-tracing: ending a span off the loop failed")


def _run() -> None:
    global _pending
    while True:
        work = _queue.get()
        _call(work)
        with _idle:
            _pending -= 1
            if _pending == 0:
                _idle.notify_all()
