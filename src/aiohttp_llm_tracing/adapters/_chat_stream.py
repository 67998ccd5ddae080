"""A fast reading of chat-completion streams: the plain text chunks are not decoded one by one.

A streamed answer is hundreds of chunks that differ only in a few characters of text, and
decoding each as JSON costs more than everything else the tracer does per chunk. Here one
regular-expression pass (in C) finds the chunks whose single choice has index 0, a delta of
exactly ``{"content": "..."}`` and a null finish reason, and takes their text. The events before
the first and after the last such chunk (the role chunk, the finish reason, usage, ``[DONE]``)
are decoded as usual. The result equals the general path's; whenever the body is not in that
shape (CR line endings, other events between the text chunks, usage inside them that no later
chunk replaces, no text chunks at all), ``None`` sends the caller to the general path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._sse import CR, parse_sse
from ._common import json_loads, opt_str

if TYPE_CHECKING:
    from .base import ParsedResponse
    from .openai_chat import StreamAccumulator

__all__ = ["parse_chat_stream_fast"]

# A quoted key followed by a colon cannot occur unescaped inside a JSON string, so this matches
# real choice objects only, and the brackets make it the only choice of its chunk. The string
# pattern is the unrolled-loop form (fewer backtracks); it refuses what JSON refuses unescaped in
# a string (control characters, the newline among them), so such a chunk goes the general way.
_TEXT = rb'"([^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*)"'
_PLAIN_CHUNK = re.compile(
    rb'"choices": ?\[\{"index": ?0, ?"delta": ?\{"content": ?' + _TEXT + rb"\}"
    rb'(?:, ?"logprobs": ?null)?, ?"finish_reason": ?null\}\]'
)


# The same with one fixed spacing (none, as OpenAI writes it, or Python's json.dumps default) and
# the logprobs field either always there or never: no optional part left to try per chunk.
# Each starts at the choices' "[" and checks the key behind it, so the regex engine looks for a
# byte that occurs once per chunk rather than stopping at every quote of the fields before it.
# Whatever they match the pattern above matches too, so when their matches pass the checks
# below the result is the one the general path gives.
def _exact(sep: bytes, logprobs: bool) -> re.Pattern[bytes]:
    colon, comma = b":" + sep, b"," + sep
    key = b'"choices"' + colon + b"["
    head = b'{"index"' + colon + b"0" + comma + b'"delta"' + colon + b'{"content"' + colon
    fields = [b'"logprobs"' + colon + b"null"] if logprobs else []
    fields.append(b'"finish_reason"' + colon + b"null")
    tail = b"}" + comma + comma.join(fields) + b"}]"
    return re.compile(
        rb"\[(?<=" + re.escape(key) + rb")" + re.escape(head) + _TEXT + re.escape(tail)
    )


# By the first chunk's spacing after the choices key, then whether it has a logprobs field.
_EXACT = {
    (sep, logprobs): _exact(sep, logprobs) for sep in (b"", b" ") for logprobs in (True, False)
}
_KEY = b'"choices":'
_LOGPROBS = b'"logprobs":'


def parse_chat_stream_fast(
    body: bytes, accumulator: Callable[[], StreamAccumulator]
) -> ParsedResponse | None:
    """Parse an OpenAI chat-completion SSE body, or ``None`` if the fast path does not apply.

    ``accumulator`` makes the adapter's ``StreamAccumulator`` (passed in: the two modules would
    import each other).
    """
    if CR in body:
        return None
    choices = body.find(_KEY)
    if choices == -1:
        return None
    # Every chunk of a stream comes out of one serializer: its spacing after the first key and
    # whether that chunk's choice has logprobs tell which exact pattern to try (a scan of the
    # whole body saved when it is the wrong one).
    after = body[choices + len(_KEY) : choices + len(_KEY) + 2]
    sep = b"" if after[:1] == b"[" else b" " if after == b" [" else None
    run = None
    if sep is not None:
        line_end = body.find(b"\n", choices)
        exact = _EXACT[sep, body.find(_LOGPROBS, choices, line_end) != -1]
        # The exact patterns start at the "[" after the key.
        run = _plain_run(body, exact, len(_KEY) + len(sep))
    if not run:
        run = _plain_run(body, _PLAIN_CHUNK, 0)
    if run is None:
        return None
    pattern, texts, first_match, first, last = run
    decoded = _decode_texts(texts)
    if decoded is None:
        return None
    acc = accumulator()
    for event in parse_sse(body[:first]):
        if acc.add_event(event):
            return acc.result()
    result = acc.result_
    if result.id is None or result.model is None:
        # No chunk before the text named them (no role chunk): the general path takes them from
        # the first text chunk, so decode that one whole.
        end = body.find(b"\n\n", first_match.end())
        for event in parse_sse(body[first : len(body) if end == -1 else end]):
            chunk = json_loads(event.data)
            if isinstance(chunk, dict):
                result.id = result.id or opt_str(chunk.get("id"))
                result.model = result.model or opt_str(chunk.get("model"))
    if texts[0]:
        offset: int | None = first
    else:
        # The first text chunk is empty: find the first that is not (its position).
        matches = pattern.finditer(body, first_match.start())
        offset = next(
            (_event_start(body, m.start()) for m in matches if m.end(1) > m.start(1)), None
        )
    acc.add_texts(decoded, offset)
    usage = result.usage
    for event in parse_sse(body[last:], base_offset=last):
        if acc.add_event(event):
            break
    # A text chunk's usage is the general path's result only if no later chunk replaced it;
    # when one did (a usage chunk at the end, include_usage on) the text run need not be read.
    if result.usage is usage and _carries_usage(body, first, last):
        return None
    return acc.result()


def _plain_run(
    body: bytes, pattern: re.Pattern[bytes], start: int
) -> tuple[re.Pattern[bytes], list[bytes], re.Match[bytes], int, int] | None:
    """The texts of the plain text chunks, the first of them and the span of events they fill
    (``first`` to ``last``); ``None`` unless every data event in that span is one.

    ``start`` is where the pattern begins, counted from its chunk's choices key.
    """
    first_match = pattern.search(body)
    if first_match is None:
        return None
    # The texts in one C call (no match objects); matches never overlap, so findall sees every
    # position where the pattern matches and the last one is found from the end.
    texts = pattern.findall(body, first_match.start())
    pos = len(body)
    while True:  # ends at the first match at the latest
        pos = body.rfind(_KEY, 0, pos)
        last_match = pattern.match(body, pos + start)
        if last_match is not None:
            break
    first = _event_start(body, first_match.start())
    last = body.find(b"\n\n", last_match.end())
    last = len(body) if last == -1 else last + 2
    # Between the first and the last text chunk there must be nothing but text chunks.
    data_events = body.count(b"\ndata:", first - 1 if first else 0, last)
    if first == 0 and body.startswith(b"data:"):
        data_events += 1
    if data_events != len(texts):
        return None
    return pattern, texts, first_match, first, last


def _carries_usage(body: bytes, first: int, last: int) -> bool:
    # Most streams have no usage field in their text chunks (include_usage off, or null in
    # each): one scan.
    usage = body.find(b'"usage":', first, last)
    return usage != -1 and (
        body.find(b'"usage":{', usage, last) != -1 or body.find(b'"usage": {', usage, last) != -1
    )


def _event_start(body: bytes, pos: int) -> int:
    start = body.rfind(b"\n\n", 0, pos)
    return 0 if start == -1 else start + 2


def _decode_texts(texts: list[bytes]) -> list[str] | None:
    # ``None`` when an escape is not JSON (``\x``, a short ``\u``): the general path drops
    # that chunk alone, so it decides.
    joined = b"".join(texts)
    if joined.isascii():
        if 0x5C not in joined:  # no backslash: the texts are their own decoding
            return [joined.decode("ascii")]
        array = '["' + b'","'.join(texts).decode("ascii") + '"]'
    else:
        # Each text on its own, with replacement, as the general path decodes each event:
        # invalid UTF-8 then costs a character, not the response, and bytes of two texts never
        # combine into one character.
        parts = [t.decode("utf-8", "replace") for t in texts]
        text = "".join(parts)
        if "\\" not in text:
            return [text]
        array = '["' + '","'.join(parts) + '"]'
    # One JSON array of the texts (the pattern lets none hold a bare quote or end in a lone
    # backslash, so each is one element): an escape cut at the end of one text ("\u00") fails
    # as the general path fails it instead of borrowing the next text's first characters.
    try:
        return json.loads(array)
    except ValueError:
        return None
