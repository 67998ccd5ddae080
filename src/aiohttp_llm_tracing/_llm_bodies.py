"""Reading what was captured of an LLM call's two bodies: decode, frame, parse.

Runs once, when the span ends. Whatever cannot be read is said on the span
(``llm_tracing.parse_error``, ``llm_tracing.body_truncated``), never raised.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import _attributes as A
from ._decode import Decoded, decode
from ._framing import CUT_OFF, frame
from ._json import INVALID, loads
from ._llm_attributes import cut, mark
from ._media import elide_media
from ._reasons import EndReason
from ._sse import parse_sse
from ._truncated import top_level_fields
from .adapters import ParsedRequest, ParsedResponse

if TYPE_CHECKING:
    from ._llm import LLMCall

__all__ = ["error_snippet", "first_chunk_attributes", "read_request", "read_response"]

_SSE_STARTS = (b"data:", b"event:", b"id:", b":")


def error_snippet(call: LLMCall) -> str | None:
    """The first line of an error body that is not an API error (a proxy's page), if text."""
    body = call.response_body
    if body is None or not body.head:
        return None
    head = decode(bytes(body.head[:4096]), call.content_encoding, 4096).data
    text = head.decode("utf-8", "replace").strip()
    if not text or "\ufffd" in text[:64]:
        return None  # binary
    return cut(text.splitlines()[0], 500)


def read_request(call: LLMCall, attributes: dict[str, Any]) -> ParsedRequest:
    """The captured request body, parsed by the call's adapter."""
    body = call.request_body
    if not body.total and call.redirected_body is not None:
        body = call.redirected_body
    if not body.head:
        return ParsedRequest()
    if body.truncated:
        # Too big to parse (images inlined as base64, long documents): keep what can be
        # found at either end, which names the model even when it comes last.
        mark(attributes, A.BODY_TRUNCATED, "request")
        fields = top_level_fields(bytes(body.head), bytes(body.tail))
        request = call.adapter.parse_request(fields, call.path)
        request.input = request.messages = request.system_instructions = None
        request.tools = None
        return request
    data = loads(bytes(body.head))
    if data is INVALID:
        mark(attributes, A.PARSE_ERROR, "request: not JSON")
        return ParsedRequest()
    return call.adapter.parse_request(data, call.path)


def read_response(
    call: LLMCall, attributes: dict[str, Any], reason: str, stream: bool
) -> ParsedResponse | None:
    """The captured response body, decoded, framed and parsed by the call's adapter."""
    body = call.response_body
    if body is None or body.total == 0:
        return None
    marks = body.marks
    cuts: list[int] = []
    if call.content_encoding:
        # Where each read ends, in the decoded body: only a compressed body needs them mapped.
        cuts = [offset for offset, _ in marks[1:]]
        if marks and body.marks_complete:
            cuts.append(len(body.head))
    limit = call.options.max_body_bytes
    decoded = decode(
        bytes(body.head), call.content_encoding, limit, cuts, tail_limit=body.tail_limit
    )
    head = decoded.data
    # Cut before decoding (the capture's cap) or by it (compressed under the cap, inflated past
    # it): either way only the ends can be read.
    truncated = body.truncated or decoded.truncated
    # Compressed bytes past the cap cannot be decoded without the bytes before them; a body
    # captured whole but inflating past the cap has its decoded end instead.
    tail = decoded.tail if decoded.encoded else bytes(body.tail) if body.truncated else b""
    if truncated:
        mark(attributes, A.BODY_TRUNCATED, "response")
    kind = call.stream_kind
    # Some servers label their event streams text/plain or application/json.
    if kind is None and head[:64].lstrip().startswith(_SSE_STARTS):
        kind = "sse"
    if kind is None and not truncated:
        # Generated images and audio come back as base64 too: placeholders, not blobs.
        data = loads(elide_media(head))
        if data is INVALID and b"}\n{" in head:
            kind = "ndjson"  # JSON lines served as application/json
    if kind is not None:
        return _read_stream(call, attributes, reason, kind, head, tail, decoded, marks, truncated)
    if truncated:
        # Cut JSON does not parse; id, model and usage are at its ends.
        response = call.adapter.parse_response(top_level_fields(head, tail))
        response.output = response.messages = None
        response.attributes = {}
        return response
    if data is INVALID:
        mark(attributes, A.PARSE_ERROR, "response: not JSON")
        return None
    response = call.adapter.parse_response(data)
    if _is_empty(response):
        mark(attributes, A.PARSE_ERROR, "response: unrecognised JSON shape")
    elif stream and isinstance(data, list) and response.first_chunk_offset is None:
        # A streamed JSON array of chunks (Gemini's without alt=sse): the first element is the
        # first chunk. (A list that answers a plain request is not a stream.)
        response.first_chunk_offset = max(0, head.find(b"{"))
        _first_chunk(call, attributes, response, decoded, marks)
    return response


def _read_stream(
    call: LLMCall,
    attributes: dict[str, Any],
    reason: str,
    kind: str,
    head: bytes,
    tail: bytes,
    decoded: Decoded,
    marks: list[tuple[int, int]],
    truncated: bool,
) -> ParsedResponse:
    body = call.response_body
    assert body is not None
    response = None
    if kind == "sse" and not truncated:
        fast = getattr(call.adapter, "parse_stream_body", None)
        response = fast(head) if fast is not None else None
    problem = None
    if response is None:
        # The tail window recovers the closing events (usage, finish reason).
        framed = frame(kind, head, tail=tail, tail_offset=body.total - len(tail))
        problem = framed.problem
        response = call.adapter.parse_stream(framed.events)
    _first_chunk(call, attributes, response, decoded, marks)
    if kind == "sse":
        last = tail or (b"" if truncated else head)  # unknown if cut and compressed
        problem = CUT_OFF if _cut_mid_event(last) else None
    if problem == CUT_OFF and (
        reason != EndReason.BODY_COMPLETE or (truncated and kind == "eventstream")
    ):
        # The caller stopped reading early, or our capture cut the frames (their tail cannot
        # be framed): an unfinished event is expected, not the server's doing.
        problem = None
    if problem is not None:
        # Read to its end, yet the last event never finished (the server cut it off), or a
        # frame that does not decode.
        mark(attributes, A.PARSE_ERROR, f"response: {problem}")
    elif _is_empty(response):
        mark(attributes, A.PARSE_ERROR, "response: no recognised events")
    return response


def _first_chunk(
    call: LLMCall,
    attributes: dict[str, Any],
    response: ParsedResponse,
    decoded: Decoded,
    marks: list[tuple[int, int]],
) -> None:
    offset = response.first_chunk_offset
    body = call.response_body
    if offset is None or body is None:
        return
    if decoded.encoded:
        # Offsets are in decoded bytes: the first read whose bytes decoded past the offset.
        arrived = next((marks[i][1] for i, size in enumerate(decoded.sizes) if size > offset), None)
    else:
        arrived = body.arrival_ns(offset)
    if arrived is not None:
        first_chunk_attributes(attributes, call.started_ns, arrived)


def first_chunk_attributes(attributes: dict[str, Any], started_ns: int, arrived_ns: int) -> None:
    """Time to first chunk, and Langfuse's completion start time, from two ``time_ns()``."""
    attributes[A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (arrived_ns - started_ns) / 1e9
    attributes[A.LANGFUSE_OBSERVATION_COMPLETION_START_TIME] = utc_isoformat(arrived_ns)


# (second, its "YYYY-MM-DDTHH:MM:SS"): calls within one second share the formatting. One tuple,
# replaced whole, so a thread never reads one second's number with another's text.
_SECOND: tuple[int, str] = (-1, "")


def utc_isoformat(ns: int) -> str:
    """``datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat()``, to the nearest microsecond.

    Every streamed call writes one. In integers it is exact (the float above can be off by a
    microsecond) and, with the second's text reused, about 4 times cheaper (0.6 against 2.4 us
    warm); at the end of a real call, where caches are cold, it saved 10-15 us.
    """
    global _SECOND
    seconds, micros = divmod((ns + 500) // 1000, 1_000_000)
    cached = _SECOND
    if cached[0] != seconds:
        cached = _SECOND = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micros:06d}+00:00" if micros else f"{cached[1]}+00:00"


def _is_empty(response: ParsedResponse) -> bool:
    """Nothing an adapter knows was found: the body is not the shape it expects."""
    return not (
        response.id
        or response.model
        or response.output is not None
        or response.usage is not None
        or response.finish_reasons
        or response.error_message
    )


def _cut_mid_event(body: bytes) -> bool:
    """Whether the stream's last event is unfinished: no blank line after it and its data does
    not parse (a server that only forgot the final blank line is not flagged)."""
    # The ending first: a finished stream is not copied by strip().
    if body.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) or not body.strip():
        return False
    # Only the last event matters, however long it is: from the last blank line on. (With no
    # blank line in a tail window, it starts mid-event and yields nothing: not flagged.)
    start = max(
        (i + len(sep) for sep in (b"\n\n", b"\r\r", b"\r\n\r\n") if (i := body.rfind(sep)) != -1),
        default=0,
    )
    events = parse_sse(body[start:])
    if not events:
        return False
    data = events[-1].data
    return data != "[DONE]" and data != "" and loads(data) is INVALID
