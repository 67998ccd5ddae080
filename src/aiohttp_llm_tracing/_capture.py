"""A bounded copy of a body as it passes: the head up to a cap, plus a short tail.

LLM responses put what matters at both ends: the answer starts at the head, and a stream's usage
and finish reason come in its last events. Keeping the head up to ``limit`` and a rolling tail of
``tail_limit`` bytes bounds memory whatever the body's size while still recovering both.
"""

from __future__ import annotations

import time
from bisect import bisect_right

__all__ = ["BodyCapture"]

# Arrival times are kept for the first reads only: the first content chunk comes early, and a
# long stream must not grow this list (nor pay a clock read per chunk).
_MAX_MARKS = 32


class BodyCapture:
    """Bytes seen so far (bounded), the total size, and when the first reads arrived."""

    __slots__ = (
        "_marks",
        "_marks_left",
        "head",
        "limit",
        "room",
        "tail",
        "tail_limit",
        "total",
        "truncated",
    )

    def __init__(self, limit: int, *, tail_limit: int = 65_536, timed: bool = False) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.limit = limit
        self.tail_limit = tail_limit
        self.total = 0
        self.truncated = False
        self._marks: list[tuple[int, int]] | None = [] if timed else None
        self._marks_left = _MAX_MARKS if timed else 0
        self.room = 0 if timed else limit
        """Bytes the next reads may append to ``head`` directly, adding them to ``total``, with
        no other bookkeeping: zero while reads are being timed. A stream's per-line reader
        (``_stream``) appends this way, sparing a call per line."""

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Record ``data``; never holds more than ``limit + 2 * tail_limit`` bytes.

        Nor does it allocate more: a single 50 MB read is sliced, not copied, so recording it
        costs the cap, not the read.
        """
        n = len(data)
        # Reads of a line ending alone (between SSE events) carry no news; no clock read.
        if self._marks_left and n > 2:
            self._marks_left -= 1
            self._marks.append((self.total, time.time_ns()))  # type: ignore[union-attr]
        self.total += n
        head = self.head
        if len(head) + n <= self.limit:
            head += data
            if not self._marks_left:
                self.room = self.limit - len(head)
            return
        self.room = 0
        self._overflow(data)

    def _overflow(self, data: bytes | bytearray | memoryview) -> None:
        head = self.head
        room = self.limit - len(head)
        view = memoryview(data)
        if room > 0:
            head += view[:room]
            view = view[room:]
        self.truncated = True
        keep = self.tail_limit
        if keep <= 0:
            return
        tail = self.tail
        if len(view) >= keep:
            tail[:] = view[-keep:]
            return
        tail += view
        if len(tail) > 2 * keep:
            del tail[: len(tail) - keep]

    @property
    def marks(self) -> list[tuple[int, int]]:
        """``(offset, wall-clock ns)`` of the first reads, if timed; the list is capped."""
        return self._marks or []

    @property
    def marks_complete(self) -> bool:
        """Whether marking never stopped (the last mark's read runs to the end of the body)."""
        return self._marks is not None and self._marks_left > 0

    def arrival_ns(self, offset: int) -> int | None:
        """Wall-clock time at which the byte at ``offset`` arrived, if it was timed."""
        marks = self._marks
        if not marks:
            return None
        i = bisect_right(marks, (offset, 1 << 63)) - 1
        if i < 0 or (i == len(marks) - 1 and not self._marks_left):
            return None
        return marks[i][1]
