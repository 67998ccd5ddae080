"""Bedrock Runtime wire shapes: Converse[Stream], InvokeModel[WithResponseStream].

``/model/{modelId}/invoke`` takes an Anthropic Messages body (``anthropic_version:
bedrock-2023-05-31``) and always answers as Claude does; the two streaming operations answer in
the binary ``application/vnd.amazon.eventstream`` framing (see :mod:`._eventstream`).

Model ids arrive URL-encoded (an inference-profile ARN has ``:`` and ``/``), and the routes accept
them encoded or not. Behaviours are picked by the (decoded) model id:

- anything containing ``cached``: usage reports prompt-cache tokens, ``cacheReadInputTokens`` =
  1024 and ``cacheWriteInputTokens`` = 256 (``cache_read_input_tokens`` /
  ``cache_creation_input_tokens`` for invoke); otherwise both are 0. ``inputTokens`` never counts
  them and ``totalTokens`` does, as Bedrock reports it.
- ``error-400|429|500`` (and 403, 404, 408, 424, 503): that status, ``x-amzn-ErrorType`` (e.g.
  ``ThrottlingException``) and ``{"message": ...}``, so botocore raises a ``ClientError``.
- ``stream-error``: the stream's first delta, then a ``throttlingException`` exception frame.
- ``bad-crc``: the first delta frame's message CRC is wrong (botocore: ``ChecksumMismatch``).
- ``truncated-sse``: three whole frames, then half of the fourth; botocore silently drops it.
- ``never-ending``: the first delta repeats forever; plus ``_wire.special``'s ``invalid-json``,
  ``binary``, ``unknown-shape``, ``huge`` and ``slow-headers``.

The answer is ``"Mock answer to: <first 40 chars of the last user text>"``, or a tool call when
the request offers tools (``toolConfig.tools`` / ``tools``) and the last message is the user's
and carries no tool result (so a tool round-trip ends with text, not another call).
Stream chunks: ``?mock_chunks=N`` or ``metadata.mock_chunks`` (invoke bodies), default 8;
``?mock_delay=S`` likewise overrides the server's pause between frames.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._eventstream import CONTENT_TYPE, corrupt_crc, event_frame, exception_frame
from ._wire import (
    CHUNK_DELAY,
    Built,
    Handler,
    body_of,
    chunk_count,
    count_tokens,
    error_status,
    json_reply,
    meta,
    model_of,
    prompt_of,
    send,
    special,
    split,
)

REQUEST_ID = "00000000-0000-4000-8000-00000000b3d0"
LATENCY_MS = 42
CACHE_READ, CACHE_WRITE = 1024, 256
# Bedrock pads every event payload with a throwaway "p" field so sizes leak nothing about the
# text; parsers must ignore it, so the mock sends it too.
PAD = "abcdefghijklmnopqrstuvwxyz"
ERRORS = {
    400: ("ValidationException", "Mock validation error: the provided request is invalid."),
    403: ("AccessDeniedException", "Mock access denied for the specified model ID."),
    404: ("ResourceNotFoundException", "Mock model not found."),
    408: ("ModelTimeoutException", "Mock model timed out."),
    424: ("ModelErrorException", "Mock model error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "Mock internal server error."),
    503: ("ServiceUnavailableException", "Mock service unavailable."),
}
JsonHeaders = Callable[[dict[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class _Answer:
    """What the mock model says, independent of the wire shape it is sent in."""

    text: str
    tool: str | None  # the called tool's name, when the answer is a tool call
    args: dict[str, Any]
    itok: int
    otok: int
    cache_read: int
    cache_write: int

    @property
    def stop(self) -> str:
        # Converse and Anthropic happen to share these two stop reasons.
        return "tool_use" if self.tool else "end_turn"


def _answer(body: dict[str, Any], model: str, tools: list[Any], result_key: str) -> _Answer:
    prompt, text, itok = prompt_of(body)
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
    parts: list[Any] = last["content"] if isinstance(last.get("content"), list) else []
    # A user turn carrying tool results must be answered in text, or a client's tool loop spins.
    answered = any(
        isinstance(p, dict) and (result_key in p or p.get("type") == result_key) for p in parts
    )
    tool = None
    if tools and isinstance(tools[0], dict) and last.get("role") == "user" and not answered:
        spec = tools[0].get("toolSpec") or tools[0]  # Converse nests it, Anthropic does not
        tool = str(spec.get("name") or "tool")
    args = {"query": prompt[:40]}
    otok = count_tokens(json.dumps(args) if tool else text)
    cached = "cached" in model
    return _Answer(
        text, tool, args, itok, otok, CACHE_READ if cached else 0, CACHE_WRITE if cached else 0
    )


def _knob(request: web.Request, key: str, default: float) -> float:
    # Converse bodies have no free-form field to carry mock knobs, so the query string may.
    raw = request.query.get(key)
    try:
        return float(raw) if raw is not None else meta(request, key, default)
    except ValueError:
        return meta(request, key, default)


def _chunks(request: web.Request) -> int:
    return max(1, int(_knob(request, "mock_chunks", chunk_count(request))))


def _error(status: int) -> web.Response:
    kind, msg = ERRORS.get(
        status,
        ("InternalServerException", "Mock error")
        if status >= 500
        else ("ValidationException", "Mock error"),
    )
    # botocore's rest-json parser reads the code from x-amzn-ErrorType, the text from "message".
    headers = {"x-amzn-ErrorType": kind, "x-amzn-RequestId": REQUEST_ID}
    return web.json_response({"message": msg}, status=status, headers=headers)


async def _stream(
    request: web.Request, model: str, frames: list[bytes], head: int
) -> web.StreamResponse:
    """Send eventstream ``frames`` (the first delta at index ``head``), misbehaving on demand."""
    delay = request.app[CHUNK_DELAY]
    if model != "slow-headers":  # there mock_delay already meant the header delay
        delay = _knob(request, "mock_delay", delay)
    seq: Iterable[bytes] = frames
    if model == "stream-error":
        msg = ERRORS[429][1]
        seq = [*frames[: head + 1], exception_frame("throttlingException", msg)]
    elif model == "bad-crc":
        seq = [*frames[:head], corrupt_crc(frames[head]), *frames[head + 1 :]]
    elif model == "truncated-sse":  # same name as the SSE APIs': three frames, then a cut one
        seq = [*frames[:3], frames[3][: len(frames[3]) // 2]]
    elif model == "never-ending":
        seq, delay = itertools.chain(frames[:head], itertools.repeat(frames[head])), 0.05
    return await send(request, seq, CONTENT_TYPE, delay=delay, coding=model)


def _route(
    build: Callable[[web.Request, dict[str, Any], str], Built],
    json_headers: JsonHeaders | None = None,
) -> Handler:
    """Wrap ``build`` like ``_wire.llm_handler``, but with Bedrock's errors and framing."""

    async def handler(request: web.Request) -> web.StreamResponse:
        model = model_of(request)
        # Checked before special(): its error bodies are OpenAI-shaped, which botocore can't read.
        status = error_status(model)
        if status is not None:
            return _error(status)
        odd = await special(request)
        if odd is not None:
            return odd
        out = build(request, body_of(request), model)
        if isinstance(out, dict):
            resp = json_reply(request, out)
            resp.headers["x-amzn-RequestId"] = REQUEST_ID
            resp.headers.update(json_headers(out) if json_headers else {})
            return resp
        frames, head = out
        return await _stream(request, model, frames, head)

    return handler


def _ev(kind: str, **fields: Any) -> bytes:
    return event_frame(kind, {**fields, "p": PAD})


def _converse_answer(body: dict[str, Any], model: str) -> _Answer:
    tools = (body.get("toolConfig") or {}).get("tools") or []
    return _answer(body, model, tools, "toolResult")


def _converse_usage(a: _Answer) -> dict[str, int]:
    total = a.itok + a.otok + a.cache_read + a.cache_write
    return {
        "inputTokens": a.itok,
        "outputTokens": a.otok,
        "totalTokens": total,
        "cacheReadInputTokens": a.cache_read,
        "cacheWriteInputTokens": a.cache_write,
    }


def _converse(request: web.Request, body: dict[str, Any], model: str) -> Built:
    a = _converse_answer(body, model)
    use = {"toolUseId": "tooluse_mock_1", "name": a.tool, "input": a.args}
    content = [{"toolUse": use}] if a.tool else [{"text": a.text}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": a.stop,
        "usage": _converse_usage(a),
        "metrics": {"latencyMs": LATENCY_MS},
    }


def _converse_stream(request: web.Request, body: dict[str, Any], model: str) -> Built:
    a, n = _converse_answer(body, model), _chunks(request)
    frames = [_ev("messageStart", role="assistant")]
    if a.tool:  # only tool blocks get a contentBlockStart; text starts with its first delta
        start = {"toolUse": {"toolUseId": "tooluse_mock_1", "name": a.tool}}
        frames.append(_ev("contentBlockStart", contentBlockIndex=0, start=start))
        deltas: list[dict[str, Any]] = [
            {"toolUse": {"input": p}} for p in split(json.dumps(a.args), n)
        ]
    else:
        deltas = [{"text": p} for p in split(a.text, n)]
    head = len(frames)
    frames += [_ev("contentBlockDelta", contentBlockIndex=0, delta=d) for d in deltas]
    frames += [
        _ev("contentBlockStop", contentBlockIndex=0),
        _ev("messageStop", stopReason=a.stop),
        _ev("metadata", usage=_converse_usage(a), metrics={"latencyMs": LATENCY_MS}),
    ]
    return frames, head


def _anthropic_answer(body: dict[str, Any], model: str) -> _Answer:
    return _answer(body, model, body.get("tools") or [], "tool_result")


def _anthropic_usage(a: _Answer, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": a.itok,
        "cache_creation_input_tokens": a.cache_write,
        "cache_read_input_tokens": a.cache_read,
        "output_tokens": output_tokens,
    }


def _anthropic_message(a: _Answer, model: str) -> dict[str, Any]:
    # The same message object anthropic.py answers with, plus the cache fields Claude reports.
    use = {"type": "tool_use", "id": "toolu_mock_1", "name": a.tool, "input": a.args}
    content = [use] if a.tool else [{"type": "text", "text": a.text}]
    msg = {"id": "msg_bdrk_mock_1", "type": "message", "role": "assistant", "model": model}
    done = {"stop_reason": a.stop, "stop_sequence": None}
    return {**msg, "content": content, **done, "usage": _anthropic_usage(a, a.otok)}


def _anthropic_events(a: _Answer, model: str, n: int) -> tuple[list[dict[str, Any]], int]:
    """anthropic.py's stream events, as dicts: the payloads Bedrock wraps in ``chunk`` frames."""
    start = _anthropic_message(a, model)
    start |= {"content": [], "stop_reason": None, "usage": _anthropic_usage(a, 1)}
    if a.tool:
        block: dict[str, Any] = {"type": "tool_use", "id": "toolu_mock_1", "name": a.tool}
        block["input"] = {}
        pieces = split(json.dumps(a.args), n)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split(a.text, n)]
    # Bedrock appends its own accounting to the last event of an invoke stream.
    metrics = {
        "inputTokenCount": a.itok,
        "outputTokenCount": a.otok,
        "invocationLatency": LATENCY_MS,
        "firstByteLatency": LATENCY_MS // 2,
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": block},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": a.stop, "stop_sequence": None},
            "usage": {"output_tokens": a.otok},
        },
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": metrics},
    ]
    return events, 2


def _invoke(request: web.Request, body: dict[str, Any], model: str) -> Built:
    return _anthropic_message(_anthropic_answer(body, model), model)


def _invoke_headers(out: dict[str, Any]) -> dict[str, str]:
    # InvokeModel also reports its accounting in headers, whatever the model's body shape.
    usage = out.get("usage") or {}
    return {
        "X-Amzn-Bedrock-Input-Token-Count": str(usage.get("input_tokens", 0)),
        "X-Amzn-Bedrock-Output-Token-Count": str(usage.get("output_tokens", 0)),
        "X-Amzn-Bedrock-Invocation-Latency": str(LATENCY_MS),
    }


def _invoke_stream(request: web.Request, body: dict[str, Any], model: str) -> Built:
    events, head = _anthropic_events(_anthropic_answer(body, model), model, _chunks(request))
    frames = [_ev("chunk", bytes=base64.b64encode(json.dumps(e).encode()).decode()) for e in events]
    return frames, head


def add_routes(app: web.Application) -> None:
    """``POST /model/{modelId}/converse|converse-stream|invoke|invoke-with-response-stream``."""
    # ``.+`` rather than the default ``[^/]+``: aiohttp already keeps an encoded ``%2F`` inside
    # one segment (and decodes it in match_info), but a client that sends an ARN's slashes raw
    # must reach the same handler. Every route ends in a fixed suffix, so the match stays exact.
    for suffix, handler in (
        ("converse", _route(_converse)),
        ("converse-stream", _route(_converse_stream)),
        ("invoke", _route(_invoke, _invoke_headers)),
        ("invoke-with-response-stream", _route(_invoke_stream)),
    ):
        app.router.add_post(f"/model/{{model:.+}}/{suffix}", handler)
