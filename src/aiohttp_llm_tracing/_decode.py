"""Undo ``Content-Encoding`` on captured bytes, bounded by a size limit.

Clients that set ``auto_decompress=False`` (the openai SDK does) read compressed bytes, so the
capture holds them compressed. Decompression happens once, at the end, and never yields more
than ``limit`` bytes, so a compression bomb costs at most the cap.
"""

from __future__ import annotations

import zlib

__all__ = ["decode_body"]

try:  # brotli is optional, as it is for aiohttp itself
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None


def decode_body(data: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``data`` decoded per ``content_encoding``; the input unchanged if it is not encoded.

    Bodies that aiohttp already decompressed still carry the header, so anything that fails to
    decode is taken to be plain.
    """
    encoding = (content_encoding or "").strip().lower()
    if not data or encoding in ("", "identity"):
        return data
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            if encoding == "deflate" and data[:1] != b"\x78":
                wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send
            else:
                wbits = zlib.MAX_WBITS | 32  # zlib or gzip header, detected
            if encoding != "deflate" and data[:2] != b"\x1f\x8b":
                return data
            return zlib.decompressobj(wbits).decompress(data, limit)
        if encoding == "br" and _brotli is not None:
            out = _brotli.Decompressor().process(data)
            return out[:limit]
    except Exception:
        return data
    return data
