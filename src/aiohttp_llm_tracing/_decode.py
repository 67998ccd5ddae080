"""Undo ``Content-Encoding`` on captured bytes, bounded by a size limit.

Clients that set ``auto_decompress=False`` (the openai SDK does) read compressed bytes, so the
capture holds them compressed; clients that keep aiohttp's default read them decoded, although
the header still names the encoding. Which one happened is not visible from the response, so it
is told from the bytes: a gzip or zlib header is unambiguous, and a body that does not decode to
anything is taken to be plain. Decompression happens once, at the end, and never yields more
than ``limit`` bytes, so a compression bomb costs at most the cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = ["Decoded", "decode"]

try:  # brotli is optional, as it is for aiohttp itself
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None

# How decoded JSON and SSE bodies begin (after optional whitespace): never compressed data that
# could be mistaken for them, except raw deflate, which is only tried when this does not match.
_PLAIN_STARTS = (b"{", b"[", b'"', b"data:", b"event:", b"id:", b"retry:", b":", b"\xef\xbb\xbf")


class Decoded(NamedTuple):
    """The decoded bytes, whether they had to be decoded, and decoded sizes at given cuts."""

    data: bytes
    encoded: bool
    sizes: list[int]
    """Bytes decoded from ``data[:cut]`` for each requested cut (capped at the limit)."""
    truncated: bool = False
    """The decoded body ran past ``limit``: ``data`` is its head only."""
    tail: bytes = b""
    """The last ``tail_limit`` decoded bytes when ``truncated`` (empty if not recoverable)."""


def decode(
    data: bytes,
    content_encoding: str | None,
    limit: int,
    cuts: Sequence[int] = (),
    *,
    tail_limit: int = 0,
) -> Decoded:
    """Decode ``data`` (at most ``limit`` bytes out) and say how much each prefix ``cuts`` gave.

    The sizes map a position in the decoded body back to the read that delivered it, which is
    how a compressed stream still gets its time to first chunk. A body that decodes past
    ``limit`` is marked ``truncated``; with ``tail_limit`` its last bytes are kept too (gzip and
    deflate: decoding goes on into a rolling window, up to ``_TAIL_BUDGET`` times the limit, so
    a bomb still costs a bounded amount), where usage and finish reasons are.
    """
    plain = Decoded(data, False, [min(cut, len(data)) for cut in cuts])
    if not content_encoding or not data:
        return plain  # nearly every body: nothing to decode
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return plain
    step = _decoder(encoding, data)
    if step is None:
        return plain
    out = bytearray()
    sizes: list[int] = []
    pos = 0
    full = False
    try:
        for cut in (*cuts, len(data)):
            cut = max(pos, min(cut, len(data)))
            if cut > pos:
                if len(out) < limit:
                    out += step(data[pos:cut], limit - len(out))
                else:
                    full = True
                    break
            pos = cut
            sizes.append(len(out))
    except Exception:
        # Corrupt or cut-off compressed data keeps what decoded before the damage.
        pass
    sizes += [len(out)] * (len(cuts) + 1 - len(sizes))
    if not out:
        # Nothing came out: aiohttp decoded the body already and these bytes are plain.
        return plain
    if len(out) >= limit:
        # Full: whether more was to come is told by decoding on (into the tail window).
        tail, more = _decode_tail(step, data[pos:] if full else b"", tail_limit, limit)
        if more:
            return Decoded(bytes(out[:limit]), True, sizes[: len(cuts)], True, tail)
    return Decoded(bytes(out[:limit]), True, sizes[: len(cuts)])


_TAIL_BUDGET = 8
_TAIL_STEP = 64 * 1024


def _decode_tail(
    step: Callable[[bytes, int], bytes], rest: bytes, tail_limit: int, limit: int
) -> tuple[bytes, bool]:
    """Decode what follows a full head: ``(its last tail_limit bytes, whether there was any)``."""
    tail = bytearray()
    more = False
    budget = _TAIL_BUDGET * limit
    try:
        piece = step(rest, _TAIL_STEP)
        while piece:
            more = True
            budget -= len(piece)
            if tail_limit:
                tail += piece
                if len(tail) > 2 * tail_limit:
                    del tail[: len(tail) - tail_limit]
            if budget <= 0:
                return b"", True  # a bomb: past the budget the end is not worth finding
            piece = step(b"", _TAIL_STEP)
    except Exception:
        # Damaged past the head, or a decoder that cannot go on: if input was left, the body
        # was longer than the head.
        more = more or bool(rest)
    return bytes(tail[-tail_limit:]) if tail_limit else b"", more


def _decoder(encoding: str, data: bytes) -> Callable[[bytes, int], bytes] | None:
    """A function ``(chunk, room) -> at most room decoded bytes``, or None if ``data`` is plain."""
    if encoding in ("gzip", "x-gzip"):
        if data[:2] != b"\x1f\x8b":
            return None
        return _zlib_step(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        if len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0:
            return _zlib_step(zlib.MAX_WBITS)  # zlib-wrapped, as the standard says
        if _looks_plain(data):
            return None
        return _zlib_step(-zlib.MAX_WBITS)  # raw deflate, as some servers send
    if encoding == "br" and _brotli is not None:
        if data.lstrip()[:1] == b"{":
            return None  # 0x7B opens an empty brotli stream, so this is JSON
        return _brotli_step()
    return None


def _looks_plain(data: bytes) -> bool:
    return data[:64].lstrip().startswith(_PLAIN_STARTS)


def _zlib_step(wbits: int) -> Callable[[bytes, int], bytes]:
    decompressor = zlib.decompressobj(wbits)

    def step(chunk: bytes, room: int) -> bytes:
        # max_length bounds the output; input it leaves unconsumed goes first next time.
        pending = decompressor.unconsumed_tail
        return decompressor.decompress(pending + chunk if pending else chunk, room)

    return step


def _brotli_step() -> Callable[[bytes, int], bytes]:
    decompressor = _brotli.Decompressor()

    def step(chunk: bytes, room: int) -> bytes:
        try:
            return decompressor.process(chunk, output_buffer_limit=room)[:room]
        except TypeError:  # brotli < 1.2 has no output limit
            return decompressor.process(chunk)[:room]

    return step
