"""Media kept out of the way: base64 payloads in a captured JSON body become short placeholders.

Images, documents and audio travel inside LLM request bodies as base64 strings: data URIs
(OpenAI ``image_url``), Gemini ``inlineData.data``, Anthropic and Bedrock image and document
``source`` blocks, OpenAI ``input_audio.data``. One 4 MB image would push the whole body past
the capture cap and lose the prompt's text with it. So before a body is capped, every JSON
string that is a long base64 run is replaced by a placeholder that keeps the media type (a data
URI's own; for the other shapes it stays in the neighbouring ``mimeType``/``media_type``/
``format`` field) and the decoded size::

    "data:image/png;base64,iVBORw0..."  ->  "[image/png: 3145728 bytes, base64 omitted]"
    "iVBORw0KGgo..."                    ->  "[3145728 bytes, base64 omitted]"

It runs on the bytes, in one pass of a compiled pattern, before any JSON parsing, so the base64
is never decoded nor copied into a Python string. Strings shorter than :data:`MIN_MEDIA_CHARS`
are left alone (a thumbnail costs less than the pattern), and so is a body shorter than that.
"""

from __future__ import annotations

import re

__all__ = ["MIN_MEDIA_CHARS", "elide_media"]

MIN_MEDIA_CHARS = 4096
"""Shortest base64 string replaced by a placeholder."""

_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The start of a candidate: a quote, an optional data-URI head, then MIN_MEDIA_CHARS base64
# characters. Only that much is matched by the pattern; the rest of a multi-megabyte run is
# checked with bytes methods (memchr, translate), several times faster than the regex engine.
_HEAD = re.compile(
    rb'"(?:data:([A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+)(?:;[A-Za-z0-9=._-]+)*;base64,)?'
    rb"[A-Za-z0-9+/_-]{%d}" % MIN_MEDIA_CHARS
)


def _replacement(media_type: bytes | None, run: bytes) -> bytes | None:
    """The placeholder for one base64 run, or ``None`` when it is not base64 after all."""
    padding = len(run) - len(run.rstrip(b"="))
    if padding > 2 or run[: len(run) - padding].translate(None, _BASE64):
        return None
    # Letters alone ("xxxx...") are text, not encoded bytes, which always bring digits or +/.
    if not run[:MIN_MEDIA_CHARS].translate(None, _LETTERS):
        return None
    size = len(run) * 3 // 4 - padding
    kind = media_type.decode("ascii") + ": " if media_type else ""
    return f'"[{kind}{size} bytes, base64 omitted]"'.encode("ascii")


def elide_media(body: bytes) -> bytes:
    """``body`` with every long base64 JSON string replaced by a placeholder (the same object
    when there is none)."""
    if len(body) < MIN_MEDIA_CHARS:
        return body
    data = body
    match = _HEAD.search(data)
    if match is None:
        return body
    out: list[bytes] = []
    done = 0
    while match is not None:
        start = match.start()
        run_start = data.index(b";base64,", start) + 8 if match.group(1) else start + 1
        end = data.find(b'"', match.end())
        # A quote escaped inside a string (\") is not a string's start.
        escaped = start > 0 and data[start - 1] == 0x5C
        if end == -1:
            break
        placeholder = None if escaped else _replacement(match.group(1), data[run_start:end])
        if placeholder is not None:
            out.append(data[done:start])
            out.append(placeholder)
            done = end + 1
        match = _HEAD.search(data, end + 1)
    if not out:
        return body
    out.append(data[done:])
    return b"".join(out)
