"""Cohere v2 wire shapes: ``/v2/chat`` (JSON and SSE), ``/v2/embed`` and ``/v2/rerank``.

Behaviour is chosen by the request's ``model``:

* any model: a text answer, ``"Mock answer to: <first 40 chars of the last user text>"``;
  with ``tools`` and the user speaking last, a ``TOOL_CALL`` of the first tool instead;
  with ``max_tokens`` below the answer's length, the answer cut to that many words and
  ``MAX_TOKENS``;
* a model whose name contains ``cached`` (e.g. ``command-a-cached``): ``usage.cached_tokens``
  is half of ``usage.tokens.input_tokens`` (Cohere omits the field otherwise, and so do we);
* ``error-400`` / ``error-429`` / ``error-500`` (any ``error-<status>``): Cohere's error body
  ``{"id": ..., "message": ...}`` with that status;
* ``invalid-json``, ``slow-headers``, ``truncated-sse``, ``never-ending``, ``huge``,
  ``gzip``/``deflate``/``br`` and the rest of :func:`._wire.special`: as for every API.

Streams carry ``event: <type>`` lines as well as the ``type`` inside ``data`` (both are what
Cohere sends; the SDK discriminates on the latter). A client that accepts ``application/json``
but not ``text/event-stream`` (litellm) gets the same events as one JSON object per line,
``application/stream+json``; see :func:`_wants_ndjson`. The number of ``content-delta``
events is ``?mock_chunks=N`` from the query string, else ``metadata.mock_chunks``, else 8.

``usage.tokens.input_tokens`` is ``billed_units.input_tokens`` plus :data:`TEMPLATE_TOKENS`,
because Cohere counts its prompt template there but does not bill it; tests can tell the two
apart that way.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from ._wire import (
    CHUNK_DELAY,
    Built,
    Handler,
    body_of,
    chunk_count,
    count_tokens,
    error_status,
    llm_handler,
    model_of,
    prompt_of,
    send,
    special,
    split,
    sse,
    text_of,
)

# Frames one stream event: SSE for the SDK, a JSON line for Accept: application/json.
Frame = Callable[..., bytes]

CHAT_ID = "c0e0e0e0-0000-4000-8000-000000000001"
EMBED_ID = "c0e0e0e0-0000-4000-8000-000000000002"
RERANK_ID = "c0e0e0e0-0000-4000-8000-000000000003"
TOOL_CALL_ID = "mock_tool_call_1"
TEMPLATE_TOKENS = 5
EMBED_DIM = 8
API_VERSION = {"version": "2"}
ERROR_MESSAGES = {
    400: "invalid request: mock bad request",
    429: "mock rate limit: you are past the per minute request limit",
    500: "internal server error, this has been reported to our developers",
}


def _error(request: web.Request) -> web.Response | None:
    """Cohere's error body for ``error-<status>`` models, else None.

    It must run before :func:`._wire.special`, which would answer in OpenAI's shape.
    """
    model = model_of(request)
    status = error_status(model)
    if status is None:
        return None
    body = {"id": f"mock-error-{status}", "message": ERROR_MESSAGES.get(status, "mock error")}
    # retry-after-ms is honoured by the cohere SDK, so its default retries stay fast.
    return web.json_response(body, status=status, headers={"retry-after-ms": "10"})


def _cohere(build: Handler) -> Handler:
    """Wrap an :func:`llm_handler` so error models get Cohere's error shape."""

    async def handler(request: web.Request) -> web.StreamResponse:
        err = _error(request)
        return err if err is not None else await build(request)

    return handler


def _chunks(request: web.Request) -> int:
    """``?mock_chunks=N`` wins: Cohere's request body has no ``metadata`` to carry it."""
    try:
        return max(1, int(request.query["mock_chunks"]))
    except (KeyError, ValueError):
        return chunk_count(request)


def _usage(itok: int, otok: int, model: str) -> dict[str, Any]:
    tokens = {"input_tokens": itok + TEMPLATE_TOKENS, "output_tokens": otok}
    usage: dict[str, Any] = {
        "billed_units": {"input_tokens": itok, "output_tokens": otok},
        "tokens": tokens,
    }
    if "cached" in model:
        usage["cached_tokens"] = tokens["input_tokens"] // 2
    return usage


def _tool_name(body: dict[str, Any]) -> str | None:
    """The first tool's name when the model should call it: tools given and the user last."""
    tools, msgs = body.get("tools") or [], body.get("messages") or []
    if not (tools and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user"):
        return None
    first = tools[0] if isinstance(tools[0], dict) else {}
    return str((first.get("function") or first).get("name") or "tool")


def _limit(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Cut ``text`` to ``max_tokens`` words (one word is one mock token)."""
    cap = body.get("max_tokens")
    words = text.split()
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < len(words):
        return " ".join(words[:cap]), "MAX_TOKENS"
    return text, "COMPLETE"


def _sse(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields}, event=kind)


def _ndjson(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def _chat_events(request: web.Request, body: dict[str, Any], model: str, ev: Frame = _sse) -> Built:
    """The chat reply as JSON, or as stream events framed by ``ev``."""
    prompt, text, itok = prompt_of(body)
    tool = _tool_name(body)
    n = _chunks(request)
    if tool:
        plan = f"I will call {tool} to answer this."
        args = json.dumps({"query": prompt[:40]})
        call: dict[str, Any] = {"id": TOOL_CALL_ID, "type": "function"}
        call["function"] = {"name": tool, "arguments": args}
        usage, finish = _usage(itok, count_tokens(f"{plan} {args}"), model), "TOOL_CALL"
        message: dict[str, Any] = {"role": "assistant", "tool_plan": plan, "tool_calls": [call]}
    else:
        text, finish = _limit(text, body)
        usage = _usage(itok, count_tokens(text), model)
        message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    if not body.get("stream"):
        return {"id": CHAT_ID, "finish_reason": finish, "message": message, "usage": usage}

    empty = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": []}
    events = [ev("message-start", id=CHAT_ID, delta={"message": {**empty, "citations": []}})]
    if tool:
        # Cohere's order: the plan streams first, then one start/deltas/end per call, and a
        # tool-call-delta's ``tool_calls`` is a single object, not a list.
        events += [
            ev("tool-plan-delta", delta={"message": {"tool_plan": p}}) for p in split(plan, n)
        ]
        start = {**call, "function": {"name": tool, "arguments": ""}}
        events.append(ev("tool-call-start", index=0, delta={"message": {"tool_calls": start}}))
        events += [
            ev(
                "tool-call-delta",
                index=0,
                delta={"message": {"tool_calls": {"function": {"arguments": p}}}},
            )
            for p in split(args, n)
        ]
        events.append(ev("tool-call-end", index=0))
        head = 1
    else:
        blank = {"content": {"type": "text", "text": ""}}
        events.append(ev("content-start", index=0, delta={"message": blank}))
        events += [
            ev("content-delta", index=0, delta={"message": {"content": {"text": p}}})
            for p in split(text, n)
        ]
        events.append(ev("content-end", index=0))
        head = 2
    events.append(ev("message-end", delta={"finish_reason": finish, "usage": usage}))
    return events, head


def _vector(text: str, dim: int) -> list[int]:
    """``dim`` deterministic bytes (0..255) per text, so repeated calls embed identically."""
    return list(hashlib.shake_256(text.encode()).digest(dim))


def _embedding(raw: list[int], kind: str) -> Any:
    """One embedding in Cohere's ``embedding_types`` encodings, all from the same bytes."""
    if kind == "int8":
        return [b - 128 for b in raw]
    if kind == "uint8":
        return raw
    if kind in ("binary", "ubinary"):  # one bit per dimension, packed eight to a byte
        bits = "".join("1" if b >= 128 else "0" for b in raw)
        packed = [int(bits[i : i + 8].ljust(8, "0"), 2) for i in range(0, len(bits), 8)]
        return [p - 128 for p in packed] if kind == "binary" else packed
    floats = [(b - 128) / 128 for b in raw]  # k/128 is exact in float32
    if kind == "base64":
        return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
    return floats


@llm_handler
def _embed(request: web.Request, body: dict[str, Any], model: str) -> Built:
    texts = [t for t in body.get("texts") or [] if isinstance(t, str)]
    inputs = [text_of(i.get("content")) for i in body.get("inputs") or [] if isinstance(i, dict)]
    images = [i for i in body.get("images") or [] if isinstance(i, str)]
    items = texts + inputs + images
    dim = body.get("output_dimension")
    dim = dim if isinstance(dim, int) and dim > 0 else EMBED_DIM
    kinds = [k for k in body.get("embedding_types") or ["float"] if isinstance(k, str)]
    raws = [_vector(item, dim) for item in items]
    embeddings = {k: [_embedding(r, k) for r in raws] for k in dict.fromkeys(kinds)}
    billed: dict[str, Any] = {"input_tokens": sum(count_tokens(t) for t in texts + inputs)}
    if images:
        billed["images"] = len(images)
    out: dict[str, Any] = {"id": EMBED_ID, "embeddings": embeddings, "texts": texts}
    out["response_type"] = "embeddings_by_type"
    out["meta"] = {"api_version": API_VERSION, "billed_units": billed}
    return out


@llm_handler
def _rerank(request: web.Request, body: dict[str, Any], model: str) -> Built:
    query = set(str(body.get("query") or "").lower().split())
    docs = [d if isinstance(d, str) else json.dumps(d) for d in body.get("documents") or []]
    # Score: the share of query words a document contains, so tests can predict the order.
    scores = [len(query & set(d.lower().split())) / max(1, len(query)) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
    top = body.get("top_n")
    if isinstance(top, int) and top >= 0:
        order = order[:top]
    results = [{"index": i, "relevance_score": scores[i]} for i in order]
    meta = {"api_version": API_VERSION, "billed_units": {"search_units": 1}}
    return {"id": RERANK_ID, "results": results, "meta": meta}


_chat_sse = llm_handler(_chat_events)


def _wants_ndjson(request: web.Request) -> bool:
    """Whether to stream newline-delimited JSON rather than SSE.

    The SDK sends ``Accept: */*`` and insists on ``text/event-stream``. litellm sends
    ``Accept: application/json`` and ``json.loads`` every line, which only bare JSON lines
    survive; a curl capture of ``/v2/chat`` with that header shows exactly those (Cohere's
    v1 streams were NDJSON too). Cohere does not document this negotiation: it is inferred.
    """
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


async def _chat(request: web.Request) -> web.StreamResponse:
    """``/v2/chat``: Cohere errors, then NDJSON or SSE streams, else the JSON reply."""
    err = _error(request)
    if err is not None:
        return err
    body = body_of(request)
    if not (body.get("stream") and _wants_ndjson(request)):
        return await _chat_sse(request)
    # llm_handler always labels streams text/event-stream, so this path repeats its
    # misbehaviours with Cohere's NDJSON content type.
    odd = await special(request)
    if odd is not None:
        return odd
    model = model_of(request)
    out = _chat_events(request, body, model, _ndjson)
    assert isinstance(out, tuple)  # stream is set, so the builder returned events
    events, head = out
    seq: Iterable[bytes] = events
    delay = request.app[CHUNK_DELAY]
    if model == "truncated-sse":
        seq = [*events[:3], events[3][: len(events[3]) // 2]]
    elif model == "never-ending":
        seq, delay = itertools.chain(events[:head], itertools.repeat(events[head])), 0.05
    return await send(request, seq, "application/stream+json", delay=delay, coding=model)


def add_routes(app: web.Application) -> None:
    """``POST /v2/chat``, ``/v2/embed`` and ``/v2/rerank``."""
    app.router.add_post("/v2/chat", _chat)
    app.router.add_post("/v2/embed", _cohere(_embed))
    app.router.add_post("/v2/rerank", _cohere(_rerank))
