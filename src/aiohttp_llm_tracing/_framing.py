"""Every stream framing an LLM API uses, turned into the one event list adapters read.

* ``sse`` - server-sent events (OpenAI, Anthropic, Gemini with ``alt=sse``, Cohere, TGI...).
* ``ndjson`` - one JSON value per line (Ollama): each non-blank line is an event.
* ``eventstream`` - AWS's binary ``application/vnd.amazon.eventstream`` framing (Bedrock):
  each frame is decoded and checked by botocore's own parser; the event's name is its
  ``:event-type`` header (for an exception frame, its ``:exception-type``) and its data the
  payload as text.

Each event keeps the byte offset where it starts in the body, so the arrival time of the first
content event can be told. A stream cut off mid-event, or a frame that fails its checksum, is
reported as a problem next to the events read before it; it never raises.
"""

from __future__ import annotations

from typing import NamedTuple

from ._sse import SSEEvent, parse_sse

__all__ = ["CUT_OFF", "Framed", "frame", "stream_kind"]

CUT_OFF = "event stream cut off mid-event"
_PRELUDE = 12  # total length, headers length, prelude CRC: 4 bytes each
_MIN_FRAME = 16  # prelude plus the message CRC


class Framed(NamedTuple):
    """The events found, and what went wrong reading them (``None`` when nothing did)."""

    events: list[SSEEvent]
    problem: str | None


def stream_kind(content_type: str) -> str | None:
    """The framing a ``Content-Type`` names, or ``None`` for a plain (JSON) body."""
    ct = content_type.lower()
    if "vnd.amazon.eventstream" in ct:
        return "eventstream"
    if "event-stream" in ct:
        return "sse"
    if "ndjson" in ct or "jsonl" in ct:
        return "ndjson"
    return None


def frame(kind: str, body: bytes, *, tail: bytes = b"", tail_offset: int = 0) -> Framed:
    """The events of ``body`` in framing ``kind``, plus those of a tail window if given.

    A tail window (the last bytes of a body longer than the capture cap) usually starts inside
    an event, so its first partial event is dropped. Eventstream frames cannot be found from an
    arbitrary offset without the bytes before it, so for them the tail is not used.
    """
    if kind == "eventstream":
        return _eventstream(body)
    if kind == "ndjson":
        events = _ndjson(body)
        if tail:
            events += _ndjson(tail, base_offset=tail_offset, partial_head=True)
        last = tail or body
        cut = not last.endswith(b"\n") and bool(last.strip()) and _unfinished(events)
        return Framed(events, CUT_OFF if cut else None)
    events = parse_sse(body)
    if tail:
        events += parse_sse(tail, base_offset=tail_offset, partial_head=True)
    return Framed(events, None)


def _ndjson(body: bytes, *, base_offset: int = 0, partial_head: bool = False) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    pos = base_offset
    for i, line in enumerate(body.split(b"\n")):
        start = pos
        pos += len(line) + 1
        if partial_head and i == 0:
            continue
        text = line.strip()
        if text:
            events.append(SSEEvent(start, "", text.decode("utf-8", "replace")))
    return events


def _unfinished(events: list[SSEEvent]) -> bool:
    from ._json import INVALID, loads

    return bool(events) and loads(events[-1].data) is INVALID


def _eventstream(body: bytes) -> Framed:
    try:
        from botocore.eventstream import EventStreamBuffer, ParserError
    except ImportError:
        return Framed([], "eventstream not decoded: botocore is not installed")
    events: list[SSEEvent] = []
    pos, size = 0, len(body)
    while pos < size:
        if size - pos < _PRELUDE:
            return Framed(events, CUT_OFF)
        total = int.from_bytes(body[pos : pos + 4], "big")
        if total < _MIN_FRAME:
            return Framed(events, "eventstream frame with an invalid length")
        if pos + total > size:
            return Framed(events, CUT_OFF)
        # One frame per buffer: botocore's buffer re-slices what is left after every message,
        # which is quadratic over a long stream fed whole.
        buffer = EventStreamBuffer()
        buffer.add_data(body[pos : pos + total])
        try:
            message = next(buffer)
        except ParserError as exc:
            return Framed(events, f"eventstream frame rejected: {type(exc).__name__}")
        except StopIteration:
            return Framed(events, CUT_OFF)
        headers = message.headers
        if headers.get(":message-type") == "exception":
            name = headers.get(":exception-type")
        else:
            name = headers.get(":event-type")
        payload = message.payload
        events.append(SSEEvent(pos, str(name or ""), payload.decode("utf-8", "replace")))
        pos += total
    return Framed(events, None)
