"""Hypothesis strategies for tests/test_fuzz.py: LLM response bodies (tests/fuzz_shapes.py)
framed, optionally corrupted, and a loopback server that sends them as planned.

Corruption happens at three levels: JSON values swapped for random JSON in known fields (before
serialising), bytes of one serialised event cut, flipped or inserted (before framing, so an
eventstream frame stays valid around a broken payload), and bytes of the whole wire body cut,
flipped or replaced by garbage. The server then sends the body whole, in pieces, cut off with
the connection dropped, or stalled without an end, optionally compressed (and the compressed
stream optionally corrupted).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from hypothesis import strategies as st

from aiohttp_llm_tracing.mock_llm._eventstream import encode_message
from aiohttp_llm_tracing.mock_llm._wire import compressor
from fuzz_shapes import Shape

CONTENT_TYPES = {
    "json": "application/json",
    "jsonarray": "application/json",
    "sse": "text/event-stream",
    "sse_crlf": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "eventstream": "application/vnd.amazon.eventstream",
    "invoke_eventstream": "application/vnd.amazon.eventstream",
}

# -- serialising and framing ---------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    if isinstance(value, str):  # "[DONE]" and the like: raw event data
        return value.encode("utf-8", "surrogatepass")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: as a JSON escape, the way servers send it
        return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def frame(framing: str, events: list[tuple[str, bytes]]) -> bytes:
    """Wire bytes for serialised ``events`` (payloads already bytes)."""
    if framing == "jsonarray":
        return b"[" + b",\r\n".join(p for _, p in events) + b"]"
    if framing == "ndjson":
        return b"".join(p + b"\n" for _, p in events)
    if framing in ("sse", "sse_crlf"):
        nl = b"\r\n" if framing == "sse_crlf" else b"\n"
        out = bytearray()
        for name, payload in events:
            if name:
                out += b"event: " + name.encode() + nl
            out += b"data: " + payload + nl + nl
        return bytes(out)
    out = bytearray()
    for name, payload in events:
        if framing == "invoke_eventstream":
            payload = dumps({"bytes": base64.b64encode(payload).decode()})
        headers = {":event-type": name or "x", ":content-type": "application/json"}
        out += encode_message({**headers, ":message-type": "event"}, payload)
    return bytes(out)


# -- the random parts ----------------------------------------------------------------------------

# Short texts over a biased alphabet: JSON and SSE metacharacters, multi-byte UTF-8, astral.
TEXT = st.text(
    alphabet=st.sampled_from(list('ab "\\\n\r\t/:{}[],é日\u2028\U0001f600\x00'))
    | st.characters(exclude_categories=["Cs"]),  # valid text; lone surrogates: JSON_VALUES
    max_size=6,
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
    | st.sampled_from(["\ud800", "\udfff", "x\udbff"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


def _slots(value: Any, out: list[tuple[Any, Any]]) -> None:
    """Every (container, key) in ``value``: the places a random JSON value can go."""
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((value, key))
            _slots(item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((value, i))
            _slots(item, out)


def _mangle(data: st.DataObject, raw: bytes) -> bytes:
    how = data.draw(st.sampled_from(["cut", "flip", "insert"]))
    if not raw:
        return data.draw(st.binary(max_size=8))
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        return raw[:at]
    if how == "insert":
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)


@dataclass
class Body:
    shape: Shape
    wire: bytes  # the decoded body, as the caller reads it
    corruption: str
    texts: list[str] = field(default_factory=list)


def draw_body(data: st.DataObject, shape: Shape) -> Body:
    texts = data.draw(st.lists(TEXT, max_size=5), label="texts")
    tokens = data.draw(st.integers(0, 50), label="tokens")
    value = shape.build(texts, tokens)
    corruption = data.draw(
        st.sampled_from(["none", "none", "types", "event", "wire", "garbage"]), label="corruption"
    )
    if corruption == "types":
        slots: list[tuple[Any, Any]] = []
        for _, obj in [("", value)] if shape.framing == "json" else value:
            _slots(obj, slots)
        for _ in range(data.draw(st.integers(1, 3))):
            if slots:
                container, key = slots[data.draw(st.integers(0, len(slots) - 1))]
                container[key] = data.draw(JSON_VALUES)
    if shape.framing == "json":
        events = [("", dumps(value))]
    else:
        events = [(name, dumps(obj)) for name, obj in value]
    if corruption == "event" and events:
        i = data.draw(st.integers(0, len(events) - 1))
        events[i] = (events[i][0], _mangle(data, events[i][1]))
    wire = events[0][1] if shape.framing == "json" else frame(shape.framing, events)
    if corruption == "wire":
        wire = _mangle(data, wire)
    elif corruption == "garbage":
        wire = data.draw(st.binary(max_size=64))
    return Body(shape, wire, corruption, texts)


# -- the loopback server ----------------------------------------------------------------------


@dataclass
class Plan:
    """How the server sends one body."""

    body: Body
    status: int
    encoding: str | None  # Content-Encoding: gzip, deflate, br, or one nothing decodes
    mode: str  # whole | chunked | cut | stall
    cuts: tuple[int, ...] = ()
    cut_at: int = 0
    cut_length: bool = True  # a cut body: Content-Length (else chunked transfer encoding)
    content_type: str | None = None  # None: the framing's own
    bad_compression_at: int | None = None  # flip a byte of the compressed stream here

    def pieces(self) -> list[bytes]:
        """The writes the server makes, encoded (each compressed piece flushed)."""
        sent = self.body.wire[: self.cut_at] if self.mode == "cut" else self.body.wire
        bounds = [0, *sorted(c for c in self.cuts if c < len(sent)), len(sent)]
        if self.mode == "whole":
            bounds = [0, len(sent)]
        pieces = [sent[a:b] for a, b in itertools.pairwise(bounds)]
        comp = compressor(self.encoding or "")
        if comp is None:
            return pieces
        pieces = [comp[0](p) for p in pieces]
        if self.mode in ("whole", "chunked"):
            pieces.append(comp[1]())
        if self.bad_compression_at is not None:
            data = b"".join(pieces)
            at = self.bad_compression_at % len(data)
            pieces = [data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]]
        return pieces


class LoopbackServer:
    """One aiohttp app on 127.0.0.1, in a thread of its own, serving ``plans[X-Fuzz-Key]``."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return self.runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        plan = self.plans.pop(request.headers["X-Fuzz-Key"])
        headers = {"Content-Type": plan.content_type or CONTENT_TYPES[plan.body.shape.framing]}
        if plan.encoding:
            headers["Content-Encoding"] = plan.encoding
        pieces = plan.pieces()
        if plan.mode == "whole":
            return web.Response(status=plan.status, body=b"".join(pieces), headers=headers)
        resp = web.StreamResponse(status=plan.status, headers=headers)
        if plan.mode == "cut" and plan.cut_length:  # promise more than is sent, then drop
            resp.content_length = sum(map(len, pieces)) + 10
        await resp.prepare(request)
        try:
            for piece in pieces:
                if piece:
                    await resp.write(piece)
            if plan.mode == "cut":
                assert request.transport is not None
                request.transport.close()
            elif plan.mode == "stall":  # no end of body until the client goes away (bounded)
                for _ in range(1000):
                    if request.transport is None or request.transport.is_closing():
                        break
                    await asyncio.sleep(0.01)
            else:
                await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp
