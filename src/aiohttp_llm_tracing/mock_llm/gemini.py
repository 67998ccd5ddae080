"""Gemini (AI Studio and Vertex AI) wire shapes: generateContent, its two stream framings,
embeddings and countTokens.

Paths (``POST``; ``{model}:{action}`` is one path segment, as in the real API):

- AI Studio: ``/{v1|v1beta|v1alpha}/models/{model}:{action}``, plus ``/models/{model}:{action}``
  because litellm's ``gemini/`` provider joins a custom ``api_base`` straight to ``models/...``.
- Vertex: ``/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:{action}``,
  the ``.../endpoints/{model}:{action}`` variant and express mode's
  ``/{v1|v1beta1}/publishers/google/models/{model}:{action}``.

Actions: ``generateContent``, ``streamGenerateContent`` (``?alt=sse`` gives SSE events
``data: {json}\\r\\n\\r\\n``; without it the JSON-array stream ``[{...}``, ``,\\r\\n{...}``, ``]``),
``embedContent``, ``batchEmbedContents``, ``predict`` (Vertex text embeddings), ``countTokens``.

Behaviour, all deterministic:

- Text answer ``"Mock answer to: <first 40 chars of the last user text>"``.
- A ``functionCall`` of the first declared function, ``args={"query": <prompt[:40]>}``, when
  ``tools[].functionDeclarations`` is non-empty, ``toolConfig`` does not say ``NONE`` and the last
  content is a user turn that is not a ``functionResponse`` (so tool loops terminate).
- ``generationConfig.maxOutputTokens`` below the answer's word count cuts it, ``MAX_TOKENS``.
- Cached tokens: ``cachedContentTokenCount = max(1, promptTokenCount // 2)`` when the request
  names a ``cachedContent`` (explicit caching) *or* the model name contains ``cached``
  (implicit caching, reachable from clients that cannot send ``cachedContent``).
- ``thoughtsTokenCount = 16`` when ``generationConfig.thinkingConfig`` is present and its
  ``thinkingBudget`` is not 0. ``totalTokenCount`` = prompt + candidates + thoughts, as in Gemini;
  zero-valued optional counts are omitted, as the real API does.
- Streams have ``mock_chunks`` chunks (``?mock_chunks=N``, else ``body["metadata"]``, else 8).
  Like the real API every chunk carries ``usageMetadata``, but only the last one is complete
  (prompt-only before it) and carries ``finishReason``; tracers must not sum them. A function
  call is streamed whole, in a single chunk.

Models: ``error-NNN`` answers Gemini's error shape ``{"error": {"code", "message", "status"}}``
(400 ``INVALID_ARGUMENT``, 429 ``RESOURCE_EXHAUSTED``, 500 ``INTERNAL``...); ``blocked`` gives
``promptFeedback.blockReason = SAFETY`` and no candidates; ``safety-stop`` a candidate with
``finishReason = SAFETY`` and no content. ``truncated-sse`` and ``never-ending`` misbehave on
either stream framing; ``invalid-json``, ``slow-headers``, ``gzip|deflate|br``, ``huge``... are
the shared ones from ``_wire.special``. ``?mock_delay=S`` paces stream chunks.
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
    chunk_count,
    count_tokens,
    error_status,
    json_reply,
    meta,
    send,
    special,
    split,
)

RESPONSE_ID = "mock-gemini-response-1"
THOUGHTS_TOKENS = 16
IMAGE_TOKENS = 258  # what Gemini bills per inline image
STATUSES = {
    400: ("INVALID_ARGUMENT", "Mock request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Mock request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Mock permission denied."),
    404: ("NOT_FOUND", "Mock model not found."),
    429: ("RESOURCE_EXHAUSTED", "Mock resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Mock internal error encountered."),
    503: ("UNAVAILABLE", "Mock service is currently unavailable."),
}
Json = dict[str, Any]


def error(code: int, message: str | None = None) -> web.Response:
    """Gemini's (google.rpc.Status) error body with HTTP status ``code``."""
    status, default = STATUSES.get(code, ("UNKNOWN", "Mock error"))
    body = {"error": {"code": code, "message": message or default, "status": status}}
    # retry-after-ms keeps SDK retries (litellm, openai-compatible clients) fast and jitter-free.
    return web.json_response(body, status=code, headers={"retry-after-ms": "10"})


def knob(request: web.Request, key: str, default: float) -> float:
    """A ``mock_*`` knob from the query string, else ``body["metadata"]``, else ``default``."""
    # Gemini has no free-form metadata field, so the query string is the portable place.
    try:
        return float(request.query[key]) if key in request.query else meta(request, key, default)
    except ValueError:
        return default


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a camelCase ``name``, falling back to its snake_case spelling."""
    # Proto JSON accepts both, and google-genai really sends e.g. thinkingConfig.thinking_budget.
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    return obj.get("".join(f"_{c.lower()}" if c.isupper() else c for c in name))


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    return part.get("text", "") if isinstance(part, dict) else ""


def _part_tokens(part: Any) -> int:
    if not isinstance(part, dict):
        return count_tokens(str(part))
    if field(part, "inlineData") or field(part, "fileData"):
        return IMAGE_TOKENS
    for key in ("functionCall", "functionResponse"):
        if field(part, key):
            return count_tokens(json.dumps(field(part, key)))
    return count_tokens(part["text"]) if part.get("text") else 0


def _contents(body: Json) -> list[Json]:
    # The REST API wants a list of Content, but a lone Content is cheap to tolerate.
    return [c for c in _items(body.get("contents")) if isinstance(c, dict)]


def _is_user(content: Json) -> bool:
    return content.get("role", "user") == "user"  # a missing role means user


def prompt_tokens(body: Json) -> int:
    """Input tokens: every part of ``contents`` plus ``systemInstruction``."""
    parts = [p for c in _contents(body) for p in _items(c.get("parts"))]
    system = field(body, "systemInstruction") or {}
    parts += _items(system.get("parts") if isinstance(system, dict) else system)
    return max(1, sum(_part_tokens(p) for p in parts))


def last_user_text(body: Json) -> str:
    """The text of the last user content that has any text."""
    for content in reversed(_contents(body)):
        text = " ".join(t for t in map(_part_text, _items(content.get("parts"))) if t)
        if _is_user(content) and text:
            return text
    return ""


def tool_to_call(body: Json) -> str | None:
    """Name of the function to call, or None when the model should answer in text."""
    decls = [
        d
        for tool in _items(body.get("tools"))
        if isinstance(tool, dict)
        for d in _items(field(tool, "functionDeclarations"))
        if isinstance(d, dict)
    ]
    mode = field(field(field(body, "toolConfig"), "functionCallingConfig"), "mode")
    contents = _contents(body)
    if not decls or mode == "NONE" or not contents or not _is_user(contents[-1]):
        return None
    parts = _items(contents[-1].get("parts"))
    # A tool result also arrives as role "user"; answering it with another call would loop.
    if any(field(p, "functionResponse") for p in parts):
        return None
    return str(decls[0].get("name") or "tool")


def usage(prompt: int, out: int, *, cached: bool, thoughts: int) -> Json:
    """``usageMetadata`` with Gemini's field names; zero optional counts are left out."""
    found: Json = {"promptTokenCount": prompt}
    if out:
        found["candidatesTokenCount"] = out
    if cached:
        found["cachedContentTokenCount"] = max(1, prompt // 2)
    if thoughts:
        found["thoughtsTokenCount"] = thoughts
    found["totalTokenCount"] = prompt + out + thoughts
    found["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return found


class Answer:
    """Everything one generateContent request resolves to, shared by JSON and stream replies."""

    def __init__(self, body: Json, model: str) -> None:
        self.model, config = model, field(body, "generationConfig") or {}
        self.prompt = last_user_text(body)
        self.ptok = prompt_tokens(body)
        self.tool = tool_to_call(body)
        self.args = {"query": self.prompt[:40]}
        self.text = f"Mock answer to: {self.prompt[:40]}"
        self.finish = "STOP"
        limit = field(config, "maxOutputTokens")
        if not self.tool and isinstance(limit, int) and 0 < limit < count_tokens(self.text):
            self.text, self.finish = " ".join(self.text.split()[:limit]), "MAX_TOKENS"
        thinking = field(config, "thinkingConfig")
        budget = field(thinking, "thinkingBudget")
        self.thoughts = THOUGHTS_TOKENS if thinking is not None and budget != 0 else 0
        self.cached = bool(field(body, "cachedContent")) or "cached" in model
        out = json.dumps(self.args) if self.tool else self.text
        self.ctok = count_tokens(out)

    def usage(self, final: bool = True) -> Json:
        """Complete usage, or the prompt-only one Gemini puts on intermediate chunks."""
        if not final:
            return {"promptTokenCount": self.ptok, "totalTokenCount": self.ptok}
        return usage(self.ptok, self.ctok, cached=self.cached, thoughts=self.thoughts)

    def response(self, parts: list[Json] | None, *, final: bool = True) -> Json:
        """One GenerateContentResponse (a whole reply, or one stream chunk)."""
        cand: Json = {"index": 0}
        if parts is not None:
            cand["content"] = {"role": "model", "parts": parts}
        if final:
            cand["finishReason"] = self.finish
        out: Json = {"candidates": [cand], "usageMetadata": self.usage(final)}
        return out | {"modelVersion": self.model, "responseId": RESPONSE_ID}

    def parts(self) -> list[Json]:
        """The whole answer's parts: one text, or one functionCall."""
        if self.tool:
            return [{"functionCall": {"name": self.tool, "args": self.args}}]
        return [{"text": self.text}]

    def chunks(self, n: int) -> list[Json]:
        """The stream: ``n`` text chunks (one for a function call), the last one final."""
        if self.tool:
            return [self.response(self.parts())]
        pieces = split(self.text, n)
        last = len(pieces) - 1
        return [self.response([{"text": p}], final=i == last) for i, p in enumerate(pieces)]


def refusal(body: Json, model: str) -> Json | None:
    """The ``blocked`` and ``safety-stop`` replies, else None."""
    ptok = prompt_tokens(body)
    base = {"usageMetadata": usage(ptok, 0, cached=False, thoughts=0), "modelVersion": model}
    base["responseId"] = RESPONSE_ID
    harm = "HARM_CATEGORY_DANGEROUS_CONTENT"
    ratings = [{"category": harm, "probability": "HIGH", "blocked": True}]
    if model == "blocked":  # the prompt itself is refused: feedback only, no candidates
        return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings}, **base}
    if model == "safety-stop":  # the answer is withheld: a candidate without content
        cand = {"index": 0, "finishReason": "SAFETY", "safetyRatings": ratings}
        return {"candidates": [cand], **base}
    return None


def _sse(payload: Json) -> bytes:
    # Gemini frames its SSE events with CRLF, unlike the other APIs' bare LF.
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"


def frame(payloads: list[Json], alt_sse: bool) -> tuple[list[bytes], bytes]:
    """The pieces to write (one write each), and a piece that can be repeated forever.

    ``alt_sse`` gives SSE events, else the JSON-array stream ``[{..}``, ``,\\r\\n{..}``, ``]``.
    """
    if alt_sse:
        return [_sse(p) for p in payloads], _sse(payloads[0])
    docs = [json.dumps(p).encode() for p in payloads]
    return [b"[" + docs[0], *(b",\r\n" + d for d in docs[1:]), b"]"], b",\r\n" + docs[0]


async def stream(request: web.Request, model: str, payloads: list[Json]) -> web.StreamResponse:
    """Send the chunks with the stream misbehaviours applied; mirrors ``_wire.llm_handler``."""
    alt_sse = request.query.get("alt") == "sse"
    pieces, again = frame(payloads, alt_sse)
    delay = request.app[CHUNK_DELAY]
    if model != "slow-headers":  # there mock_delay already meant the header delay
        delay = knob(request, "mock_delay", delay)
    seq: Iterable[bytes] = pieces
    if model == "truncated-sse":  # whole pieces, then one cut mid-JSON
        cut = min(3, len(pieces) - 1)
        seq = [*pieces[:cut], pieces[cut][: len(pieces[cut]) // 2]]
    elif model == "never-ending":  # the first chunk over and over: no finishReason, ever
        seq, delay = itertools.chain(pieces[:1], itertools.repeat(again)), 0.05
    ctype = "text/event-stream" if alt_sse else "application/json"
    return await send(request, seq, ctype, delay=delay, coding=model)


def _generate(request: web.Request, body: Json, model: str, streaming: bool) -> Any:
    # A whole GenerateContentResponse, or the list of stream chunks.
    refused = refusal(body, model)
    answer = Answer(body, model)
    if not streaming:
        return refused or answer.response(answer.parts())
    if refused:
        return [refused]
    return answer.chunks(max(1, int(knob(request, "mock_chunks", chunk_count(request)))))


def _vector(text: str, dims: int) -> list[float]:
    # k/128 values are exact in float32, so any client-side decoding gives the same floats.
    digest = itertools.chain.from_iterable(
        hashlib.sha256(f"{i}:{text}".encode()).digest() for i in itertools.count()
    )
    return [(b - 128) / 128 for b in itertools.islice(digest, max(1, dims))]


def _dims(request: Json) -> int:
    dims = field(request, "outputDimensionality")
    return dims if isinstance(dims, int) and dims > 0 else 8


def _content_text(content: Any) -> str:
    parts = _items(content.get("parts")) if isinstance(content, dict) else _items(content)
    return " ".join(filter(None, map(_part_text, parts)))


def _embed(body: Json) -> Json:
    return {"embedding": {"values": _vector(_content_text(body.get("content")), _dims(body))}}


def _batch_embed(body: Json) -> Json:
    reqs = [r for r in _items(body.get("requests")) if isinstance(r, dict)]
    return {"embeddings": [_embed(r)["embedding"] for r in reqs]}


def _predict(body: Json) -> Json:
    """Vertex's text-embedding ``:predict``."""
    dims = _dims(body.get("parameters") or {})
    insts = _items(body.get("instances"))
    texts = [str(i.get("content", "")) if isinstance(i, dict) else str(i) for i in insts]
    preds = []
    for text in texts:
        stats = {"token_count": count_tokens(text), "truncated": False}
        preds.append({"embeddings": {"values": _vector(text, dims), "statistics": stats}})
    chars = sum(map(len, texts))
    return {"predictions": preds, "metadata": {"billableCharacterCount": chars}}


def _count(body: Json) -> Json:
    inner = field(body, "generateContentRequest")
    return {"totalTokens": prompt_tokens(inner if isinstance(inner, dict) else body)}


ACTIONS: dict[str, Callable[[Json], Json]] = {
    "embedContent": _embed,
    "batchEmbedContents": _batch_embed,
    "predict": _predict,
    "countTokens": _count,
}


async def handle(request: web.Request) -> web.StreamResponse:
    """Answer ``POST .../models/{model}:{action}`` in any supported path family."""
    model, action = request.match_info["model"], request.match_info["action"]
    streaming = action == "streamGenerateContent"
    if not streaming and action != "generateContent" and action not in ACTIONS:
        return error(404, f"Mock: unknown method {action!r}")
    # Checked before special(), whose error bodies are OpenAI-shaped.
    status = error_status(model)
    if status is not None:
        return error(status)
    odd = await special(request)
    if odd is not None:
        return odd
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return error(400, "Mock: invalid JSON payload received.")
    if not isinstance(body, dict):
        return error(400, "Mock: the request body must be a JSON object.")
    if action in ACTIONS:
        return json_reply(request, ACTIONS[action](body))
    out = _generate(request, body, model, streaming)
    if not streaming:
        return json_reply(request, out)
    return await stream(request, model, out)


def add_routes(app: web.Application) -> None:
    """Register the AI Studio and Vertex ``{model}:{action}`` paths on ``app``."""
    # A regex keeps the colon out of the model, so "gemini-2.0-flash:generateContent" splits.
    tail = "models/{model:[^/:]+}:{action:[A-Za-z]+}"
    app.router.add_post("/{version:v1|v1beta|v1alpha}/" + tail, handle)
    app.router.add_post("/" + tail, handle)  # litellm: api_base + "/models/..."
    vertex = "/{version:v1|v1beta1}/"
    loc = "projects/{project}/locations/{location}/"
    app.router.add_post(vertex + loc + "publishers/google/" + tail, handle)
    app.router.add_post(vertex + "publishers/google/" + tail, handle)  # express mode
    app.router.add_post(vertex + loc + "endpoints/{model:[^/:]+}:{action:[A-Za-z]+}", handle)
