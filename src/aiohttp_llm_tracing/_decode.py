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


def decode(
    data: bytes, content_encoding: str | None, limit: int, cuts: Sequence[int] = ()
) -> Decoded:
    """Decode ``data`` (at most ``limit`` bytes out) and say how much each prefix ``cuts`` gave.

    The sizes map a position in the decoded body back to the read that delivered it, which is
    how a compressed stream still gets its time to first chunk.
    """
    plain = Decoded(data, False, [min(cut, len(data)) for cut in cuts])
    encoding = (content_encoding or "").strip().lower()
    if not data or encoding in ("", "identity"):
        return plain
    step = _decoder(encoding, data)
    if step is None:
        return plain
    out = bytearray()
    sizes: list[int] = []
    pos = 0
    try:
        for cut in (*cuts, len(data)):
            cut = max(pos, min(cut, len(data)))
            if len(out) < limit and cut > pos:
                out += step(data[pos:cut], limit - len(out))
            pos = cut
            sizes.append(len(out))
    except Exception:
        # Corrupt or cut-off compressed data keeps what decoded before the damage.
        sizes += [len(out)] * (len(cuts) + 1 - len(sizes))
    if not out:
        # Nothing came out: aiohttp decoded the body already and these bytes are plain.
        return plain
    return Decoded(bytes(out[:limit]), True, sizes[: len(cuts)])


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
        # max_length bounds the output; what is left unconsumed is beyond the cap anyway.
        return decompressor.decompress(chunk, room)

    return step


def _brotli_step() -> Callable[[bytes, int], bytes]:
    decompressor = _brotli.Decompressor()  # type: ignore[union-attr]

    def step(chunk: bytes, room: int) -> bytes:
        try:
            return decompressor.process(chunk, output_buffer_limit=room)[:room]
        except TypeError:  # brotli < 1.2 has no output limit
            return decompressor.process(chunk)[:room]

    return step
