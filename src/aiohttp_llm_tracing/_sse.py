"""Server-sent events, parsed once, from captured bytes (never while the caller streams)."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["SSEEvent", "parse_sse"]

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class SSEEvent(NamedTuple):
    """One event: byte offset of its first byte in the body, its ``event:`` name, its data."""

    offset: int
    event: str
    data: str


def parse_sse(body: bytes, *, base_offset: int = 0, partial_head: bool = False) -> list[SSEEvent]:
    """Split ``body`` into events per the WHATWG SSE rules (data lines joined by newlines).

    An unterminated last event is kept: a stream cut off mid-event still yields what arrived, and
    a half JSON payload is the adapter's to reject. With ``partial_head`` the first block is
    dropped, because a tail window usually starts inside an event.
    """
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
            events.append(SSEEvent(base_offset + start, name, "\n".join(data)))
    return events
