"""Span ends queued and done on the event loop's next turn, out of the caller's read.

An end signal fires inside the caller's own code: the caller read a body's last byte, and the
openai SDK, say, is between reading the body and parsing it. The end's work (parse both bodies,
build the attributes, end the span) done right there runs on caches full of the caller's
working set, and evicts it in turn. The same work queued and done once the caller's step
yields to the loop costs less CPU, for the caller and for the end (docs/performance.md, "Where
the end runs"), though the turn itself adds a few instructions.

The entry has already been popped from the registry when its end is queued, so exactly once
holds, and the span's end time is the signal's own. A queued end is done by:

* the callback that the first end queued on a loop schedules there with ``loop.call_soon``;
  ``asyncio.run()`` and ``run_until_complete()`` run it before they return;
* :func:`drain`, from any thread: the provider's ``force_flush()`` and ``shutdown()`` (a span
  processor put first in its list does it, see :func:`watch`), ``TracingProvider``'s ``flush()``
  and ``shutdown()``, the exit hook and the test helpers.

Only LLM calls' ends are queued. An end signalled with no running loop in its thread (the
sweeper, the exit hook), a plain request's, the end of a request that failed with an exception
and the end of a call with more than :data:`DEFER_MAX_BYTES` of bodies are done at once
(``HttpSpan.end`` says why). A turn does every end queued so far: capped per turn, the queue
outgrew the turns under sustained load (the leak harness's RSS rose 13 MB in 300,000 requests
with a 0.5 ms cap, 1.1 MB without), and with big bodies ending at once, a turn does no more
than the signals would have done inline in the same loop iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry.sdk.trace import SpanProcessor

__all__ = ["DEFER_MAX_BYTES", "defer", "drain", "pending", "watch"]

DEFER_MAX_BYTES = 32 * 1024
"""Captured body bytes (request and response together) from which an end is done at once: a
big body's end is mostly its parse, which gains nothing from waiting and, queued with others,
adds up to longer stalls."""


class Deferred(Protocol):
    """An end queued for the next turn: it carries what its finish needs itself."""

    def finish_deferred(self) -> None:
        """Do the end's work; called once, by whichever drain takes it off the queue."""


_logger = logging.getLogger("aiohttp_llm_tracing")
# The ends themselves, not (callable, arguments) tuples: whatever a queued end frees, it frees in
# its turn, which follows the caller's own parse of the response; that parse often sets off a
# young collection just before (half the turns in gc_cost.py), and CPython does not count frees
# below zero, so each object freed there brings the next collection closer.
_queue: deque[Deferred] = deque()
# None rather than an exception where no loop runs (the sweeper, the exit hook): the form of
# get_running_loop() that asyncio itself, uvloop and anyio call, stable since Python 3.7.
_get_running_loop: Callable[[], asyncio.AbstractEventLoop | None] = getattr(
    asyncio, "_get_running_loop", asyncio.events._get_running_loop
)


class _Local(threading.local):
    # The loop this thread has a drain scheduled on (one running loop per thread).
    loop: asyncio.AbstractEventLoop | None = None


_local = _Local()


def defer(item: Deferred) -> bool:
    """Queue ``item.finish_deferred()`` for the running loop's next turn; ``False``, and
    nothing queued, when this thread runs no loop (the caller then finishes at once)."""
    loop = _get_running_loop()
    if loop is None:
        return False
    _queue.append(item)
    local = _local
    if local.loop is not loop:
        # Also when the loop a drain was scheduled on was closed before running it: the ends
        # it left are in the queue, which this loop's drain empties.
        local.loop = loop
        loop.call_soon(_drain_turn, loop)
    return True


def pending() -> int:
    """Ends queued and not yet done."""
    return len(_queue)


def drain() -> None:
    """Do every queued end now, in this thread."""
    queue = _queue
    while True:
        try:
            # popleft is atomic: each end is taken by exactly one drainer, whatever the thread.
            item = queue.popleft()
        except IndexError:
            return
        try:
            item.finish_deferred()
        except Exception:  # HttpSpan._finish guards itself; this is the last line of defence
            _logger.exception("aiohttp-llm-tracing: a queued span end failed")


def _drain_turn(loop: asyncio.AbstractEventLoop) -> None:
    local = _local
    if local.loop is loop:
        local.loop = None
    drain()


class _DrainFirst(SpanProcessor):
    """Put first among a provider's span processors: its flush and shutdown do the queued ends
    before the exporting processors after it flush."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        drain()
        return True

    def shutdown(self) -> None:
        drain()


_DRAIN_FIRST = _DrainFirst()
_MARK = "_aiohttp_llm_tracing_drains"
_watch_lock = threading.Lock()


def watch(span: Any) -> None:
    """Make sure the provider that ``span`` came from does the queued ends when flushed or
    shut down, so ``provider.force_flush()`` right after a call still exports its span.

    The SDK calls a provider's span processors in the order they were added and offers no way
    to add one first, so this puts one in front of its list (``_span_processors``, the same
    from SDK 1.0 to 1.45) once per provider. Anything else (another SDK, a provider without
    that list) is left alone: our own flush, shutdown and exit hook still drain.
    """
    multi = getattr(span, "_span_processor", None)
    if multi is None or getattr(multi, _MARK, False):
        return
    with _watch_lock:
        if getattr(multi, _MARK, False):
            return
        try:
            lock = multi._lock
            with lock:
                processors = multi._span_processors
                if isinstance(processors, tuple):
                    multi._span_processors = (_DRAIN_FIRST, *processors)
            setattr(multi, _MARK, True)
        except Exception:  # not the SDK's multi-processor: nothing to put ourselves into
            with contextlib.suppress(Exception):
                setattr(multi, _MARK, True)
