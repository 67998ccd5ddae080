"""Ollama wire shapes: /api/chat, /api/generate (JSON and NDJSON streams), /api/embed.

As the Ollama API reference documents them: a request streams unless it says
``"stream": false``; a stream is one JSON object per line (``application/x-ndjson``), each
``{"model", "created_at", "message": {...} | "response": "...", "done": false}``, and the last
``done: true`` with ``done_reason``, ``prompt_eval_count``, ``eval_count`` and the durations (in
nanoseconds). Behaviour is chosen by the request's ``model``:

* any model: a text answer, ``"Mock answer to: <first 40 chars of the last user text>"``
  (``/api/generate``: of the ``prompt``); on ``/api/chat`` with ``tools`` and the user speaking
  last, a call of the first tool instead (arguments an object, as Ollama sends them; the
  ``done_reason`` stays ``stop``, as Ollama's does); with ``options.num_predict`` below the
  answer's length, the answer cut to that many words and ``done_reason: "length"``;
* ``error-400`` / ``error-404`` / ``error-500`` (any ``error-<status>``): Ollama's error body
  ``{"error": "..."}`` with that status;
* ``stream-error``: two content lines, then an ``{"error": ...}`` line (a runner that died
  mid-answer; the status was already 200);
* ``truncated-sse``: three whole lines, then one cut mid-line; ``never-ending``: the first
  content line forever;
* ``invalid-json``, ``binary``, ``unknown-shape``, ``slow-headers``, ``huge``,
  ``gzip``/``deflate``/``br`` and the rest of :func:`._wire.special`: as for every API.

The number of content lines is ``?mock_chunks=N`` from the query string (Ollama's body has no
``metadata``), else ``metadata.mock_chunks``, else 8. Embeddings have ``dimensions`` values
(default 8), deterministic per text.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from ._wire import (
    CHUNK_DELAY,
    body_of,
    chunk_count,
    count_tokens,
    error_status,
    json_reply,
    model_of,
    prompt_of,
    send,
    special,
    split,
    text_of,
)

CREATED_AT = "2023-11-14T22:13:20.000000Z"
EMBED_DIM = 8
NDJSON = "application/x-ndjson"
# A reply builder returns the JSON reply (a dict) or the stream's lines.
Builder = Callable[[web.Request, dict[str, Any], str], dict[str, Any] | list[bytes]]
# Deterministic timings, in nanoseconds as Ollama reports them.
LOAD_NS, PROMPT_NS_PER_TOKEN, EVAL_NS_PER_TOKEN = 2_000_000, 1_000_000, 20_000_000
ERROR_MESSAGES = {
    400: "invalid request: mock bad request",
    404: 'model "{model}" not found, try pulling it first',
    500: "llama runner process has terminated: mock server error",
}


def _error(request: web.Request) -> web.Response | None:
    """Ollama's error body for ``error-<status>`` models, else None.

    It must run before :func:`._wire.special`, which would answer in OpenAI's shape.
    """
    model = model_of(request)
    status = error_status(model)
    if status is None:
        return None
    message = ERROR_MESSAGES.get(status, "mock error").format(model=model)
    return web.json_response({"error": message}, status=status)


def _chunks(request: web.Request) -> int:
    try:
        return max(1, int(request.query["mock_chunks"]))
    except (KeyError, ValueError):
        return chunk_count(request)


def _limit(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Cut ``text`` to ``options.num_predict`` words (one word is one mock token)."""
    options = body.get("options")
    cap = options.get("num_predict") if isinstance(options, dict) else None
    words = text.split()
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < len(words):
        return " ".join(words[:cap]), "length"
    return text, "stop"


def _final(itok: int, otok: int, reason: str) -> dict[str, Any]:
    """The statistics that close a reply (and a stream's last line)."""
    prompt_ns, eval_ns = itok * PROMPT_NS_PER_TOKEN, otok * EVAL_NS_PER_TOKEN
    return {
        "done": True,
        "done_reason": reason,
        "total_duration": LOAD_NS + prompt_ns + eval_ns,
        "load_duration": LOAD_NS,
        "prompt_eval_count": itok,
        "prompt_eval_duration": prompt_ns,
        "eval_count": otok,
        "eval_duration": eval_ns,
    }


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


def _tool_name(body: dict[str, Any]) -> str | None:
    """The first tool's name when the model should call it: tools given and the user last."""
    tools, msgs = body.get("tools") or [], body.get("messages") or []
    if not (tools and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user"):
        return None
    first = tools[0] if isinstance(tools[0], dict) else {}
    return str((first.get("function") or first).get("name") or "tool")


def _chat(request: web.Request, body: dict[str, Any], model: str) -> dict[str, Any] | list[bytes]:
    """The reply as one object, or the stream's lines."""
    prompt, text, itok = prompt_of(body)
    base = {"model": model, "created_at": CREATED_AT}
    tool = _tool_name(body)
    if tool:
        call = {"function": {"name": tool, "arguments": {"query": prompt[:40]}}}
        otok = count_tokens(json.dumps(call["function"]["arguments"]))
        message = {"role": "assistant", "content": "", "tool_calls": [call]}
        final = _final(itok, otok, "stop")
        if body.get("stream") is False:
            return {**base, "message": message, **final}
        # Ollama sends a tool call whole, in one line, once the model has finished it.
        lines = [_line({**base, "message": message, "done": False})]
    else:
        text, reason = _limit(text, body)
        final = _final(itok, count_tokens(text), reason)
        if body.get("stream") is False:
            return {**base, "message": {"role": "assistant", "content": text}, **final}
        lines = [
            _line({**base, "message": {"role": "assistant", "content": p}, "done": False})
            for p in split(text, _chunks(request))
        ]
    return [*lines, _line({**base, "message": {"role": "assistant", "content": ""}, **final})]


def _generate(
    request: web.Request, body: dict[str, Any], model: str
) -> dict[str, Any] | list[bytes]:
    _, text, itok = prompt_of(body)
    text, reason = _limit(text, body)
    base = {"model": model, "created_at": CREATED_AT}
    final = {**_final(itok, count_tokens(text), reason), "context": [1, 2, 3]}
    if body.get("stream") is False:
        return {**base, "response": text, **final}
    lines = [_line({**base, "response": p, "done": False}) for p in split(text, _chunks(request))]
    return [*lines, _line({**base, "response": "", **final})]


async def _reply(request: web.Request, build: Builder) -> web.StreamResponse:
    """Errors, the shared misbehaviours, then the JSON reply or the NDJSON stream."""
    err = _error(request)
    if err is not None:
        return err
    odd = await special(request)
    if odd is not None:
        return odd
    body, model = body_of(request), model_of(request)
    out = build(request, body, model)
    if isinstance(out, dict):
        return json_reply(request, out)
    lines: list[bytes] = out
    seq: Iterable[bytes] = lines
    delay = request.app[CHUNK_DELAY]
    if model == "truncated-sse":  # three whole lines, then one cut mid-JSON
        keep = min(3, len(lines) - 1)
        seq = [*lines[:keep], lines[keep][: len(lines[keep]) // 2]]
    elif model == "never-ending":
        seq, delay = itertools.repeat(lines[0]), 0.05
    elif model == "stream-error":
        seq = [*lines[:2], _line({"error": "llama runner process has terminated: mock crash"})]
    return await send(request, seq, NDJSON, delay=delay, coding=model)


async def _chat_handler(request: web.Request) -> web.StreamResponse:
    return await _reply(request, _chat)


async def _generate_handler(request: web.Request) -> web.StreamResponse:
    return await _reply(request, _generate)


def _vector(text: str, dim: int) -> list[float]:
    # k/128 values are exact in float32, so clients that narrow them see the same numbers.
    raw = hashlib.shake_256(text.encode()).digest(dim)
    return [(b - 128) / 128 for b in raw]


async def _embed(request: web.Request) -> web.StreamResponse:
    err = _error(request)
    if err is not None:
        return err
    odd = await special(request)
    if odd is not None:
        return odd
    body, model = body_of(request), model_of(request)
    raw = body.get("input", "")
    texts = [text_of(t) for t in (raw if isinstance(raw, list) else [raw])]
    dim = body.get("dimensions")
    dim = dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else EMBED_DIM
    tokens = sum(count_tokens(t) for t in texts)
    out = {
        "model": model,
        "embeddings": [_vector(t, dim) for t in texts],
        "total_duration": LOAD_NS + tokens * PROMPT_NS_PER_TOKEN,
        "load_duration": LOAD_NS,
        "prompt_eval_count": tokens,
    }
    return json_reply(request, out)


def add_routes(app: web.Application) -> None:
    """``POST /api/chat``, ``/api/generate`` and ``/api/embed``."""
    app.router.add_post("/api/chat", _chat_handler)
    app.router.add_post("/api/generate", _generate_handler)
    app.router.add_post("/api/embed", _embed)
