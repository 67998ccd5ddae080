"""Server-sent events, parsed once, from captured bytes (never while the caller streams)."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["SSEEvent", "parse_sse"]

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
# Byte values, not one-byte strings, for ``in``: CPython's bytes.__contains__ first tries its
# argument as an integer, and for a bytes argument raises and clears a TypeError to find out,
# which costs ten times the scan of a short body.
CR, LF = 0x0D, 0x0A


class SSEEvent(NamedTuple):
    """One event: byte offset of its first byte in the body, its ``event:`` name, its data."""

    offset: int
    event: str
    data: str


_new_event = tuple.__new__


def parse_sse(body: bytes, *, base_offset: int = 0, partial_head: bool = False) -> list[SSEEvent]:
    """Split ``body`` into events per the WHATWG SSE rules (data lines joined by newlines).

    An unterminated last event is kept: a stream cut off mid-event still yields what arrived, and
    a half JSON payload is the adapter's to reject. With ``partial_head`` the first block is
    dropped, because a tail window usually starts inside an event.
    """
    if CR in body:
        return _parse_general(body, base_offset, partial_head)
    # The common case, fast: blank-line separated events with one `data:` line each. Splitting
    # bytes keeps offsets in bytes (they map to arrival times) and is one C call for the body.
    events: list[SSEEvent] = []
    pos = base_offset
    skip = partial_head
    for block in body.split(b"\n\n"):
        start = pos
        pos += len(block) + 2
        if skip:
            skip = False
            continue
        if not block:
            continue
        if block[:6] == b"data: " and LF not in block:
            # tuple.__new__ skips the named tuple's Python-level __new__: once per event.
            data = block[6:].decode("utf-8", "replace")
            events.append(_new_event(SSEEvent, (start, "", data)))
        else:
            event = _parse_block(block, start)
            if event is not None:
                events.append(event)
    return events


def _parse_block(block: bytes, start: int) -> SSEEvent | None:
    name = ""
    data: list[str] = []
    for raw in block.splitlines():
        line = raw.decode("utf-8", "replace")
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data or name:
        return SSEEvent(start, name, "\n".join(data))
    return None


def _parse_general(body: bytes, base_offset: int, partial_head: bool) -> list[SSEEvent]:
    # Any line endings (CR, LF, CRLF), per the WHATWG rules.
    events: list[SSEEvent] = []
    pos = 0
    blocks: list[tuple[int, bytes]] = []
    for match in _BOUNDARY.finditer(body):
        blocks.append((pos, body[pos : match.start()]))
        pos = match.end()
    if pos < len(body):
        blocks.append((pos, body[pos:]))
    if partial_head and blocks:
        blocks = blocks[1:]
    for start, block in blocks:
        event = _parse_block(block, base_offset + start)
        if event is not None:
            events.append(event)
    return events
