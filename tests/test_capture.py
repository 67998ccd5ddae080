"""BodyCapture's direct-append window (``room``) agrees with ``feed()`` byte for byte."""

from __future__ import annotations

import pytest

from aiohttp_llm_tracing._capture import BodyCapture


def _fed(capture: BodyCapture, chunks: list[bytes], direct: bool) -> BodyCapture:
    for chunk in chunks:
        # What the stream proxy does per line: append directly while the window allows.
        if direct and len(chunk) <= capture.room:
            capture.room -= len(chunk)
            capture.total += len(chunk)
            capture.head += chunk
        else:
            capture.feed(chunk)
    return capture


@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize("limit", [0, 5, 100, 10_000])
def test_direct_appends_equal_feed(timed: bool, limit: int) -> None:
    chunks = [b"data: %d\n" % i if i % 2 else b"\n" for i in range(120)]
    a = _fed(BodyCapture(limit, tail_limit=16, timed=timed), chunks, direct=True)
    b = _fed(BodyCapture(limit, tail_limit=16, timed=timed), chunks, direct=False)
    assert (a.head, a.tail, a.total, a.truncated) == (b.head, b.tail, b.total, b.truncated)
    assert len(a.head) <= limit and a.total == sum(map(len, chunks))
    # The same reads are timed either way (the times themselves differ run to run).
    assert [offset for offset, _ in a.marks] == [offset for offset, _ in b.marks]


def test_no_direct_appends_while_reads_are_timed_or_past_the_cap() -> None:
    capture = BodyCapture(10, timed=True)
    assert capture.room == 0  # the first reads are timed: through feed()
    for _ in range(40):
        capture.feed(b"abc")
    assert capture.room == 0 and capture.truncated  # past the cap: the tail's work, feed()'s
    fresh = BodyCapture(10)
    fresh.feed(b"abcd")
    assert fresh.room == 6
