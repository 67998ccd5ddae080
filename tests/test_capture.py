"""The stream proxy's per-line capture (appended in place within ``BodyCapture.room``) keeps the
bytes ``feed()`` keeps, read through the real proxy over a real aiohttp ``StreamReader``."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import EmptyStreamReader, StreamReader

from aiohttp_llm_tracing._capture import BodyCapture
from aiohttp_llm_tracing._stream import TracedStream


class _Entry:
    """What the proxy reports to: the capture, and the end signals, counted."""

    def __init__(self, capture: BodyCapture) -> None:
        self.capture = capture
        self.completed = 0
        self.errors: list[str] = []

    def body_complete(self) -> None:
        self.completed += 1

    def internal_error(self, site: str, error: BaseException) -> None:
        self.errors.append(site)


def _reader(lines: list[bytes]) -> StreamReader:
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    for line in lines:
        reader.feed_data(line)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize("limit", [0, 5, 100, 10_000])
async def test_lines_read_through_the_proxy_are_captured_as_feed_captures_them(
    timed: bool, limit: int
) -> None:
    lines = [b"data: %d\n" % i if i % 2 else b"\n" for i in range(120)]
    entry = _Entry(BodyCapture(limit, tail_limit=16, timed=timed))
    read = [line async for line in TracedStream(_reader(lines), entry)]  # type: ignore[arg-type]
    assert read == lines  # the caller gets exactly what was sent
    reference = BodyCapture(limit, tail_limit=16, timed=timed)
    for line in lines:
        reference.feed(line)
    a, b = entry.capture, reference
    assert (a.head, a.tail, a.total, a.truncated) == (b.head, b.tail, b.total, b.truncated)
    # The same reads are timed either way (the times themselves differ run to run).
    assert [offset for offset, _ in a.marks] == [offset for offset, _ in b.marks]
    assert entry.completed == 1 and entry.errors == []


def test_no_direct_appends_while_reads_are_timed_or_past_the_cap() -> None:
    capture = BodyCapture(10, timed=True)
    assert capture.room == 0  # the first reads are timed: through feed()
    for _ in range(40):
        capture.feed(b"abc")
    assert capture.room == 0 and capture.truncated  # past the cap: the tail's work, feed()'s
    fresh = BodyCapture(10)
    fresh.feed(b"abcd")
    assert fresh.room == 6


async def test_the_end_of_a_reader_that_is_not_aiohttps_own_is_asked_through_at_eof() -> None:
    # aiohttp's StreamReader has its end read off its fields; a subclass, or the
    # EmptyStreamReader of a body-less response (whose fields are never set), goes through
    # at_eof() and still ends exactly once.
    class Subclass(StreamReader):
        pass

    loop = asyncio.get_running_loop()
    sub = Subclass(BaseProtocol(loop), 2**16, loop=loop)
    sub.feed_data(b"data: 1\n\n")
    sub.feed_eof()
    for reader, expected in ((sub, [b"data: 1\n", b"\n"]), (EmptyStreamReader(), [])):
        entry = _Entry(BodyCapture(100))
        read = [line async for line in TracedStream(reader, entry)]  # type: ignore[arg-type]
        assert read == expected
        assert entry.completed == 1 and entry.errors == []
