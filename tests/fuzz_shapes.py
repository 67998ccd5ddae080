"""LLM response bodies per API shape, for tests/test_fuzz.py: each shape builds its *logical*
events (Python objects) from random text pieces and a token count, in the wire shape of one
adapter (the embedded mock's shapes, trimmed); tests/fuzz_strategies.py frames and corrupts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Events = list[tuple[str, Any]]  # (event name, payload object or raw string)


@dataclass(frozen=True)
class Shape:
    name: str
    path: str
    framing: str  # json | jsonarray | sse | sse_crlf | ndjson | eventstream | invoke_eventstream
    request: dict[str, Any]
    build: Callable[[list[str], int], Any]  # (texts, tokens) -> object (json) or Events


def _j(t: list[str]) -> str:
    return "".join(t)


def _oa_chat_json(t: list[str], n: int) -> Any:
    msg = {"role": "assistant", "content": _j(t)}
    usage = {"prompt_tokens": n, "completion_tokens": n, "total_tokens": 2 * n}
    choice = {"index": 0, "message": msg, "logprobs": None, "finish_reason": "stop"}
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [choice],
        "usage": usage,
    }


def _oa_chunk(delta: Any, finish: Any = None, **extra: Any) -> tuple[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return "", {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [choice],
        **extra,
    }


def _oa_chat_sse(t: list[str], n: int) -> Events:
    usage = {"prompt_tokens": n, "completion_tokens": n, "total_tokens": 2 * n}
    return [
        _oa_chunk({"role": "assistant", "content": ""}),
        *(_oa_chunk({"content": p}) for p in t),
        _oa_chunk({}, "stop"),
        ("", {"id": "c1", "model": "m", "choices": [], "usage": usage}),
        ("", "[DONE]"),
    ]


def _oa_completion(text: str, finish: Any, **extra: Any) -> dict[str, Any]:
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl1", "object": "text_completion", "model": "m", "choices": [choice], **extra}


def _oa_compl_json(t: list[str], n: int) -> Any:
    return _oa_completion(_j(t), "stop", usage={"prompt_tokens": n, "completion_tokens": n})


def _oa_compl_sse(t: list[str], n: int) -> Events:
    return [
        *(("", _oa_completion(p, None)) for p in t),
        ("", _oa_completion("", "stop")),
        ("", "[DONE]"),
    ]


def _oa_embed(t: list[str], n: int) -> Any:
    data = [
        {"object": "embedding", "index": i, "embedding": [len(p) / 8, -0.5]}
        for i, p in enumerate(t)
    ]
    return {
        "object": "list",
        "data": data,
        "model": "e",
        "usage": {"prompt_tokens": n, "total_tokens": n},
    }


def _resp_obj(t: list[str], n: int, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": _j(t), "annotations": []}
    item = {"type": "message", "id": "msg1", "role": "assistant", "content": [part]}
    usage = {"input_tokens": n, "output_tokens": n, "total_tokens": 2 * n}
    return {
        "id": "resp1",
        "object": "response",
        "model": "m",
        "status": status,
        "output": [item],
        "usage": usage,
    }


def _resp_sse(t: list[str], n: int) -> Events:
    ids = {"item_id": "msg1", "output_index": 0, "content_index": 0}
    return [
        (
            "response.created",
            {"type": "response.created", "response": _resp_obj([], 0, "in_progress")},
        ),
        *(
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", **ids, "delta": p},
            )
            for p in t
        ),
        ("response.completed", {"type": "response.completed", "response": _resp_obj(t, n)}),
    ]


def _anth_json(t: list[str], n: int) -> Any:
    return {
        "id": "msg1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": _j(t)}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": n, "output_tokens": n},
    }


def _anth_events(t: list[str], n: int) -> list[dict[str, Any]]:
    start = {"id": "msg1", "type": "message", "role": "assistant", "model": "claude", "content": []}
    start["usage"] = {"input_tokens": n, "output_tokens": 1}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in t
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": n},
        },
        {"type": "message_stop"},
    ]


def _anth_sse(t: list[str], n: int) -> Events:
    return [(e["type"], e) for e in _anth_events(t, n)]


def _gem_chunk(p: str, n: int, final: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": [{"text": p}]}}
    if final:
        cand["finishReason"] = "STOP"
    usage = {"promptTokenCount": n, "candidatesTokenCount": n, "totalTokenCount": 2 * n}
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": "g", "responseId": "r1"}


def _gem_json(t: list[str], n: int) -> Any:
    return _gem_chunk(_j(t), n, True)


def _gem_stream(t: list[str], n: int) -> Events:
    pieces = t or [""]
    return [("", _gem_chunk(p, n, i == len(pieces) - 1)) for i, p in enumerate(pieces)]


def _gem_embed(t: list[str], n: int) -> Any:
    return {"embedding": {"values": [len(p) / 4 for p in t] or [0.0]}}


def _conv_usage(n: int) -> dict[str, int]:
    return {"inputTokens": n, "outputTokens": n, "totalTokens": 2 * n}


def _conv_json(t: list[str], n: int) -> Any:
    msg = {"role": "assistant", "content": [{"text": _j(t)}]}
    return {"output": {"message": msg}, "stopReason": "end_turn", "usage": _conv_usage(n)}


def _conv_stream(t: list[str], n: int) -> Events:
    return [
        ("messageStart", {"role": "assistant"}),
        *(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in t),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": _conv_usage(n), "metrics": {"latencyMs": 5}}),
    ]


def _invoke_stream(t: list[str], n: int) -> Events:
    return [("chunk", e) for e in _anth_events(t, n)]


def _coh_usage(n: int) -> dict[str, Any]:
    return {"billed_units": {"input_tokens": n, "output_tokens": n}, "tokens": {"input_tokens": n}}


def _coh_json(t: list[str], n: int) -> Any:
    msg = {"role": "assistant", "content": [{"type": "text", "text": _j(t)}]}
    return {"id": "co1", "finish_reason": "COMPLETE", "message": msg, "usage": _coh_usage(n)}


def _coh_sse(t: list[str], n: int) -> Events:
    def ev(kind: str, **f: Any) -> tuple[str, Any]:
        return kind, {"type": kind, **f}

    return [
        ev("message-start", id="co1", delta={"message": {"role": "assistant", "content": []}}),
        ev("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
        *(ev("content-delta", index=0, delta={"message": {"content": {"text": p}}}) for p in t),
        ev("content-end", index=0),
        ev("message-end", delta={"finish_reason": "COMPLETE", "usage": _coh_usage(n)}),
    ]


def _coh_embed(t: list[str], n: int) -> Any:
    meta = {"billed_units": {"input_tokens": n}}
    embeddings = {"float": [[len(p) / 4] for p in t]}
    return {"id": "e1", "embeddings": embeddings, "texts": t, "meta": meta}


def _oll_final(n: int) -> dict[str, Any]:
    return {"done": True, "done_reason": "stop", "prompt_eval_count": n, "eval_count": n}


def _oll_chat_json(t: list[str], n: int) -> Any:
    return {"model": "llama", "message": {"role": "assistant", "content": _j(t)}, **_oll_final(n)}


def _oll_chat_nd(t: list[str], n: int) -> Events:
    lines = [
        ("", {"model": "llama", "message": {"role": "assistant", "content": p}, "done": False})
        for p in t
    ]
    return [
        *lines,
        ("", {"model": "llama", "message": {"role": "assistant", "content": ""}, **_oll_final(n)}),
    ]


def _oll_gen_json(t: list[str], n: int) -> Any:
    return {"model": "llama", "response": _j(t), **_oll_final(n)}


def _oll_gen_nd(t: list[str], n: int) -> Events:
    lines = [("", {"model": "llama", "response": p, "done": False}) for p in t]
    return [*lines, ("", {"model": "llama", "response": "", **_oll_final(n)})]


def _oll_embed(t: list[str], n: int) -> Any:
    return {"model": "llama", "embeddings": [[len(p) / 4] for p in t], "prompt_eval_count": n}


def _tgi_json(t: list[str], n: int) -> Any:
    details = {"finish_reason": "eos_token", "generated_tokens": n, "seed": None, "tokens": []}
    return {"generated_text": _j(t), "details": details}


def _tgi_sse(t: list[str], n: int) -> Events:
    out: Events = []
    for i, p in enumerate(t, 1):
        last = i == len(t)
        out.append(
            (
                "",
                {
                    "index": i,
                    "token": {"id": i, "text": p, "logprob": -0.5, "special": False},
                    "generated_text": _j(t) if last else None,
                    "details": {"finish_reason": "eos_token", "generated_tokens": n}
                    if last
                    else None,
                },
            )
        )
    return out


def _sgl_meta(n: int, done: bool) -> dict[str, Any]:
    finish = {"type": "stop", "matched": 2} if done else None
    return {"id": "sg1", "finish_reason": finish, "prompt_tokens": n, "completion_tokens": n}


def _sgl_json(t: list[str], n: int) -> Any:
    return {"text": _j(t), "output_ids": [1, 2], "meta_info": _sgl_meta(n, True)}


def _sgl_sse(t: list[str], n: int) -> Events:
    out: Events = [
        ("", {"text": _j(t[: i + 1]), "meta_info": _sgl_meta(n, i == len(t) - 1)})
        for i in range(len(t))
    ]
    return [*out, ("", "[DONE]")]


_CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
_GEM = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
_CONV = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
_ANTH = {"model": "claude", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}
_BED_ANTH = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 9,
    "messages": _ANTH["messages"],
}
_GEMP = "/v1beta/models/g"

SHAPES = [
    Shape("openai-chat", "/v1/chat/completions", "json", _CHAT, _oa_chat_json),
    Shape(
        "openai-chat-sse", "/v1/chat/completions", "sse", {**_CHAT, "stream": True}, _oa_chat_sse
    ),
    Shape(
        "openai-compl", "/v1/completions", "json", {"model": "m", "prompt": "hi"}, _oa_compl_json
    ),
    Shape(
        "openai-compl-sse",
        "/v1/completions",
        "sse",
        {"model": "m", "prompt": "hi", "stream": True},
        _oa_compl_sse,
    ),
    Shape("openai-embed", "/v1/embeddings", "json", {"model": "e", "input": ["a", "b"]}, _oa_embed),
    Shape("responses", "/v1/responses", "json", {"model": "m", "input": "hi"}, _resp_obj),
    Shape(
        "responses-sse",
        "/v1/responses",
        "sse",
        {"model": "m", "input": "hi", "stream": True},
        _resp_sse,
    ),
    Shape("anthropic", "/v1/messages", "json", _ANTH, _anth_json),
    Shape("anthropic-sse", "/v1/messages", "sse", {**_ANTH, "stream": True}, _anth_sse),
    Shape("gemini", _GEMP + ":generateContent", "json", _GEM, _gem_json),
    Shape("gemini-sse", _GEMP + ":streamGenerateContent?alt=sse", "sse_crlf", _GEM, _gem_stream),
    Shape("gemini-array", _GEMP + ":streamGenerateContent", "jsonarray", _GEM, _gem_stream),
    Shape(
        "gemini-embed",
        _GEMP + ":embedContent",
        "json",
        {"content": _GEM["contents"][0]},
        _gem_embed,
    ),
    Shape("converse", "/model/m1/converse", "json", _CONV, _conv_json),
    Shape("converse-stream", "/model/m1/converse-stream", "eventstream", _CONV, _conv_stream),
    Shape("invoke", "/model/m1/invoke", "json", _BED_ANTH, _anth_json),
    Shape(
        "invoke-stream",
        "/model/m1/invoke-with-response-stream",
        "invoke_eventstream",
        _BED_ANTH,
        _invoke_stream,
    ),
    Shape("cohere", "/v2/chat", "json", {"model": "c", "messages": _CHAT["messages"]}, _coh_json),
    Shape(
        "cohere-sse",
        "/v2/chat",
        "sse",
        {"model": "c", "messages": _CHAT["messages"], "stream": True},
        _coh_sse,
    ),
    Shape(
        "cohere-embed",
        "/v2/embed",
        "json",
        {"model": "c", "texts": ["a"], "input_type": "search_query"},
        _coh_embed,
    ),
    Shape("ollama-chat", "/api/chat", "json", {**_CHAT, "stream": False}, _oll_chat_json),
    Shape("ollama-chat-nd", "/api/chat", "ndjson", _CHAT, _oll_chat_nd),
    Shape(
        "ollama-gen",
        "/api/generate",
        "json",
        {"model": "l", "prompt": "hi", "stream": False},
        _oll_gen_json,
    ),
    Shape("ollama-gen-nd", "/api/generate", "ndjson", {"model": "l", "prompt": "hi"}, _oll_gen_nd),
    Shape("ollama-embed", "/api/embed", "json", {"model": "l", "input": ["a"]}, _oll_embed),
    Shape("tgi", "/generate", "json", {"inputs": "hi", "parameters": {"details": True}}, _tgi_json),
    Shape("tgi-sse", "/generate_stream", "sse", {"inputs": "hi"}, _tgi_sse),
    Shape("sglang", "/generate", "json", {"text": "hi"}, _sgl_json),
    Shape("sglang-sse", "/generate", "sse", {"text": "hi", "stream": True}, _sgl_sse),
]
