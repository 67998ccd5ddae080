"""A minimal encoder for AWS's binary ``application/vnd.amazon.eventstream`` framing.

Every message (frame) is::

    prelude   total length u32 | headers length u32 | CRC32 of those 8 bytes
    headers   repeated: name length u8 | name | value type u8 | value length u16 | value
    payload   raw bytes (JSON for Bedrock)
    trailer   CRC32 of everything before it, prelude CRC included

All integers are big-endian. Only string header values (type 7) are written: they are the only
kind Bedrock's runtime streams use. Decoding is left to botocore (``EventStreamBuffer``), which is
exactly what the tests check these frames against.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "CONTENT_TYPE",
    "corrupt_crc",
    "encode_headers",
    "encode_message",
    "event_frame",
    "exception_frame",
]

CONTENT_TYPE = "application/vnd.amazon.eventstream"
STRING = 7  # header value type: UTF-8 string with a u16 length
PRELUDE = 12  # total length, headers length, prelude CRC: three u32
TRAILER = 4  # the message CRC


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Encode ``headers`` as string-typed eventstream headers, in the mapping's order."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        # The wire widths are one byte for a name length and two for a value length.
        if not 0 < len(raw_name) <= 0xFF:
            raise ValueError(f"header name must be 1-255 bytes: {name!r}")
        if len(raw_value) > 0xFFFF:
            raise ValueError(f"header value too long for {name!r}")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes = b"") -> bytes:
    """Return one complete, valid eventstream frame carrying ``headers`` and ``payload``."""
    head = encode_headers(headers)
    prelude = struct.pack(">II", PRELUDE + len(head) + len(payload) + TRAILER, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + head + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """A ``:message-type: event`` frame whose payload is ``payload`` as compact JSON."""
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, _json(payload))


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled in-stream error, e.g. ``throttlingException``: botocore raises it as an
    ``EventStreamError`` whose code is ``exception_type`` while the caller iterates."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, _json({"message": message}))


def corrupt_crc(frame: bytes, *, which: Literal["message", "prelude"] = "message") -> bytes:
    """Return ``frame`` with one CRC inverted so a decoder must reject it (``ChecksumMismatch``).

    Only the checksum changes, never a length, so the decoder still finds the frame's end and
    the failure is the checksum's, not a framing error.
    """
    at = len(frame) - TRAILER if which == "message" else PRELUDE - 4
    (crc,) = struct.unpack_from(">I", frame, at)
    return frame[:at] + struct.pack(">I", crc ^ 0xFFFFFFFF) + frame[at + 4 :]
