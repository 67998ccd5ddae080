"""A fast reading of chat-completion streams: the plain text chunks are not decoded one by one.

A streamed answer is hundreds of chunks that differ only in a few characters of text, and
decoding each as JSON costs more than everything else the tracer does per chunk. Here one
regular-expression pass (in C) finds the chunks whose single choice has index 0, a delta of
exactly ``{"content": "..."}`` and a null finish reason, and takes their text. The events before
the first and after the last such chunk (the role chunk, the finish reason, usage, ``[DONE]``)
are decoded as usual. The result equals the general path's; whenever the body is not in that
shape (CR line endings, other events between the text chunks, usage inside them, no text
chunks at all), ``None`` sends the caller to the general path.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .._sse import parse_sse
from ._common import json_loads, opt_str

if TYPE_CHECKING:
    from .base import ParsedResponse

__all__ = ["parse_chat_stream_fast"]

# A quoted key followed by a colon cannot occur unescaped inside a JSON string, so this matches
# real choice objects only, and the brackets make it the only choice of its chunk. The string
# pattern is the unrolled-loop form (fewer backtracks).
_PLAIN_CHUNK = re.compile(
    rb'"choices": ?\[\{"index": ?0, ?"delta": ?\{"content": ?"([^"\\\n]*(?:\\.[^"\\\n]*)*)"\}'
    rb'(?:, ?"logprobs": ?null)?, ?"finish_reason": ?null\}\]'
)


def parse_chat_stream_fast(body: bytes) -> ParsedResponse | None:
    """Parse an OpenAI chat-completion SSE body, or ``None`` if the fast path does not apply."""
    if b"\r" in body:
        return None
    matches = list(_PLAIN_CHUNK.finditer(body))
    if not matches:
        return None
    first = _event_start(body, matches[0].start())
    last = body.find(b"\n\n", matches[-1].end())
    last = len(body) if last == -1 else last + 2
    # Between the first and the last text chunk there must be nothing but text chunks.
    data_events = body.count(b"\ndata:", first - 1 if first else 0, last)
    if first == 0 and body.startswith(b"data:"):
        data_events += 1
    if data_events != len(matches):
        return None
    if body.find(b'"usage": {', first, last) != -1 or body.find(b'"usage":{', first, last) != -1:
        return None
    from .openai_chat import StreamAccumulator

    acc = StreamAccumulator()
    for event in parse_sse(body[:first]):
        if acc.add_event(event):
            return acc.result()
    result = acc.result_
    if result.id is None or result.model is None:
        # No chunk before the text named them (no role chunk): the general path takes them from
        # the first text chunk, so decode that one whole.
        end = body.find(b"\n\n", matches[0].end())
        for event in parse_sse(body[first : len(body) if end == -1 else end]):
            chunk = json_loads(event.data)
            if isinstance(chunk, dict):
                result.id = result.id or opt_str(chunk.get("id"))
                result.model = result.model or opt_str(chunk.get("model"))
    offset = next((_event_start(body, m.start()) for m in matches if m.end(1) > m.start(1)), None)
    acc.add_texts(_decode_texts([m[1] for m in matches]), offset)
    for event in parse_sse(body[last:], base_offset=last):
        if acc.add_event(event):
            break
    return acc.result()


def _event_start(body: bytes, pos: int) -> int:
    start = body.rfind(b"\n\n", 0, pos)
    return 0 if start == -1 else start + 2


def _decode_texts(texts: list[bytes]) -> list[str]:
    # JSON string contents concatenate into a valid JSON string: one decode for all of them.
    joined_bytes = b"".join(texts)
    if joined_bytes.isascii():
        joined = joined_bytes.decode("ascii")
    else:
        # Each text on its own, with replacement, as the general path decodes each event:
        # invalid UTF-8 then costs a character, not the response, and bytes of two texts never
        # combine into one character.
        joined = "".join(t.decode("utf-8", "replace") for t in texts)
    if "\\" in joined:
        return [json.loads('"' + joined + '"')]
    return [joined]
