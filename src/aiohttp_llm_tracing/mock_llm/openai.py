"""OpenAI wire shapes: chat completions, legacy completions, embeddings, Responses."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
from typing import Any

from aiohttp import web

from ._wire import CREATED, Built, chunk_count, count_tokens, llm_handler, prompt_of, split, sse


@llm_handler
def _chat(request: web.Request, body: dict[str, Any], model: str) -> Built:
    prompt, text, ptok = prompt_of(body)
    msgs, tools = body.get("messages") or [], body.get("tools") or []
    tool = None
    if tools and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user":
        tool = (tools[0].get("function") or tools[0]).get("name", "tool")
    args = json.dumps({"query": prompt[:40]})
    ctok = count_tokens(args if tool else text)
    usage: dict[str, Any] = {
        "prompt_tokens": ptok,
        "completion_tokens": ctok,
        "total_tokens": ptok + ctok,
    }
    usage |= {"prompt_tokens_details": {"cached_tokens": 0}}
    usage |= {"completion_tokens_details": {"reasoning_tokens": 0}}
    base: dict[str, Any] = {"id": "chatcmpl-mock-1", "created": CREATED, "model": model}
    base["system_fingerprint"] = "fp_mock"
    finish = "tool_calls" if tool else "stop"
    call = {"id": "call_mock_1", "type": "function", "function": {"name": tool, "arguments": args}}
    if not body.get("stream"):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool else text,
            "refusal": None,
        }
        message |= {"tool_calls": [call]} if tool else {}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

    if tool:  # OpenAI's shape: name and id once, then bare argument fragments, all at index 0
        first = {"index": 0, **call, "function": {"name": tool, "arguments": ""}}
        events = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
        frags = [
            {"index": 0, "function": {"arguments": p}} for p in split(args, chunk_count(request))
        ]
        events += [chunk({"tool_calls": [f]}) for f in frags]
    else:
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": p}) for p in split(text, chunk_count(request))]
    events.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        )
    return [*events, sse("[DONE]")], 1


@llm_handler
def _completions(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, ptok = prompt_of(body)
    ctok = count_tokens(text)
    usage = {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok}
    base = {"id": "cmpl-mock-1", "object": "text_completion", "created": CREATED, "model": model}

    def out(part: str, reason: str | None, **extra: Any) -> dict[str, Any]:
        choice = {"text": part, "index": 0, "logprobs": None, "finish_reason": reason}
        return {**base, "choices": [choice], **extra}

    if not body.get("stream"):
        return out(text, "stop", usage=usage)
    events = [sse(out(p, None)) for p in split(text, chunk_count(request))] + [sse(out("", "stop"))]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(sse({**base, "choices": [], "usage": usage}))
    return [*events, sse("[DONE]")], 0


@llm_handler
def _embeddings(request: web.Request, body: dict[str, Any], model: str) -> Built:
    raw = body.get("input", "")
    items = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    texts = [i if isinstance(i, str) else json.dumps(i) for i in items]
    data = []
    for index, text in enumerate(texts):
        # k/128 values are exact in float32, so both encodings decode to identical floats.
        vec: Any = [(b - 128) / 128 for b in hashlib.sha256(text.encode()).digest()[:8]]
        if body.get("encoding_format") == "base64":
            vec = base64.b64encode(struct.pack("<8f", *vec)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vec})
    tokens = sum(count_tokens(t) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


@llm_handler
def _responses(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, itok = prompt_of(body)
    otok, seq = count_tokens(text), itertools.count()
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": "msg_mock_1", "status": "completed", "role": "assistant"}
    resp: dict[str, Any] = {
        "id": "resp_mock_1",
        "object": "response",
        "created_at": CREATED,
        "model": model,
    }
    resp |= {
        "status": "completed",
        "error": None,
        "tools": [],
        "output": [{**item, "content": [part]}],
    }
    resp["usage"] = {"input_tokens": itok, "output_tokens": otok, "total_tokens": itok + otok}
    if not body.get("stream"):
        return resp
    ids = {"item_id": "msg_mock_1", "output_index": 0, "content_index": 0}
    pending: dict[str, Any] = {"status": "in_progress", "output": [], "usage": None}

    def ev(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

    # The added/done item events let the SDK's ``responses.stream()`` accumulator work too.
    events = [
        ev("response.created", response={**resp, **pending}),
        ev(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        ),
        ev("response.content_part.added", **ids, part={**part, "text": ""}),
    ]
    events += [
        ev("response.output_text.delta", **ids, delta=p) for p in split(text, chunk_count(request))
    ]
    return [
        *events,
        ev("response.output_text.done", **ids, text=text),
        ev("response.content_part.done", **ids, part=part),
        ev("response.output_item.done", output_index=0, item=resp["output"][0]),
        ev("response.completed", response=resp),
    ], 3


def add_routes(app: web.Application) -> None:
    """OpenAI's paths, Azure's deployment paths and Groq's ``/openai/v1`` for the same shapes."""
    for prefix in ("/v1", "/openai/v1", "/openai/deployments/{deployment}"):
        app.router.add_post(f"{prefix}/chat/completions", _chat)
        app.router.add_post(f"{prefix}/completions", _completions)
        app.router.add_post(f"{prefix}/embeddings", _embeddings)
    app.router.add_post("/v1/responses", _responses)
