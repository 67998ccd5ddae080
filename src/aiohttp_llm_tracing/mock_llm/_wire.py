"""The wire helpers every mock API shares: request reading, SSE framing, paced and compressed
sending, and the model-driven misbehaviours (errors, invalid JSON, huge bodies...)."""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiohttp import web

try:
    import brotli
except ImportError:  # optional: only the ``br`` model needs it
    brotli = None

CREATED = 1700000000
REQUESTS = web.AppKey("mock_llm_requests", list)
KEEP_REQUESTS = 1000
CHUNK_DELAY = web.AppKey("mock_llm_chunk_delay", float)
# Newer aiohttp warns on plain string request keys; older ones (>=3.9) lack RequestKey.
BODY: Any = web.RequestKey("mock_llm_body", dict) if hasattr(web, "RequestKey") else "mock_body"
BLOCK = 64 * 1024
ERRORS = {
    400: ("Mock bad request", "invalid_request_error", "invalid_value"),
    429: ("Mock rate limit reached", "requests", "rate_limit_exceeded"),
    500: ("Mock server error", "server_error", None),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A builder returns a JSON payload, or SSE events plus how many precede the first delta.
Built = dict[str, Any] | tuple[list[bytes], int]


def text_of(content: Any) -> str:
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(text_of(p.get("text") if isinstance(p, dict) else p) for p in content)
    return content if isinstance(content, str) else ""


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def split(text: str, n: int) -> list[str]:
    # Exactly n pieces (some may be empty) so chunk counts are predictable in tests.
    cuts = [len(text) * i // max(1, n) for i in range(max(1, n) + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def body_of(request: web.Request) -> dict[str, Any]:
    return request.get(BODY) or {}


def meta(request: web.Request, key: str, default: float) -> float:
    meta = body_of(request).get("metadata")
    # The openai SDK types metadata values as strings, so accept "4" as well as 4.
    try:
        return float(meta[key]) if isinstance(meta, dict) and key in meta else default
    except (TypeError, ValueError):
        return default


def model_of(request: web.Request) -> str:
    # The model is in the body for OpenAI-style APIs and in the path for Gemini, Bedrock, Azure.
    info = request.match_info
    found = body_of(request).get("model") or info.get("model") or info.get("deployment")
    return str(found or "mock")


def prompt_of(body: dict[str, Any]) -> tuple[str, str, int]:
    """Return (last user text, mock answer, input tokens) for any of the supported APIs."""
    src = body.get("messages") or body.get("input") or body.get("prompt") or ""
    items = src if isinstance(src, list) else [src]
    texts = [text_of(i.get("content") if isinstance(i, dict) else i) for i in items]
    is_user = [not isinstance(i, dict) or i.get("role") == "user" for i in items]
    users = [t for t, u in zip(texts, is_user, strict=True) if u]
    prompt = users[-1] if users else ""
    extra = text_of(body.get("system") or body.get("instructions"))
    return prompt, f"Mock answer to: {prompt[:40]}", count_tokens(" ".join([extra, *texts]))


def compressor(coding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]] | None:
    """Return ``(step, finish)`` for one continuous stream that is flushed at every step."""
    if coding in ("gzip", "deflate"):
        z = zlib.compressobj(wbits=31 if coding == "gzip" else 15)
        return (lambda d: z.compress(d) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush
    if coding == "br" and brotli is not None:
        b = brotli.Compressor()
        return (lambda d: b.process(d) + b.flush()), b.finish
    return None


def json_reply(request: web.Request, payload: Any) -> web.Response:
    data, model = json.dumps(payload).encode(), model_of(request)
    comp = compressor(model)
    if comp is None:
        return web.Response(body=data, content_type="application/json")
    headers = {"Content-Encoding": model}
    return web.Response(
        body=comp[0](data) + comp[1](), content_type="application/json", headers=headers
    )


async def send(
    request: web.Request,
    chunks: Iterable[bytes],
    ctype: str,
    *,
    delay: float = 0.0,
    coding: str = "",
    length: int | None = None,
) -> web.StreamResponse:
    """Stream ``chunks`` with one write each, optionally compressed and paced."""
    comp = compressor(coding)
    resp = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
    if comp:
        resp.headers["Content-Encoding"] = coding
    if length is not None:
        resp.content_length = length
    try:
        await resp.prepare(request)
        for i, chunk in enumerate(chunks):
            if i and delay > 0:
                await asyncio.sleep(delay)
            await resp.write(comp[0](chunk) if comp else chunk)
        if comp:
            await resp.write(comp[1]())
        await resp.write_eof()
    except ConnectionResetError:
        # The client went away mid-body (this also covers aiohttp's ClientConnectionResetError);
        # nobody is left to tell, and letting it propagate would make aiohttp log a traceback.
        pass
    return resp


def huge(size: int) -> tuple[Iterator[bytes], int]:
    usage = {"prompt_tokens": 1, "completion_tokens": size // 4, "total_tokens": size // 4 + 1}
    head = b'{"id":"huge","choices":[{"message":{"role":"assistant","content":"'
    tail = b'"}}],"usage":' + json.dumps(usage).encode() + b"}"
    fill, block = max(0, size - len(head) - len(tail)), b"x" * BLOCK
    # One reused 64 KiB block keeps memory flat whatever the requested size.
    body = (block[: min(BLOCK, fill - at)] for at in range(0, fill, BLOCK))
    return itertools.chain([head], body, [tail]), len(head) + fill + len(tail)


def error_status(model: str) -> int | None:
    """The HTTP status an ``error-<status>`` model asks for, else None."""
    return int(model[6:]) if model.startswith("error-") and model[6:].isdigit() else None


async def special(request: web.Request) -> web.StreamResponse | None:
    """Answer the model-driven misbehaviours shared by every LLM endpoint, else None."""
    model = model_of(request)
    status = error_status(model)
    if status is not None:
        msg, kind, code = ERRORS.get(status, ("Mock error", "api_error", None))
        err = {"error": {"message": msg, "type": kind, "param": None, "code": code}}
        # retry-after-ms keeps SDK retries fast and free of random backoff jitter.
        return web.json_response(err, status=status, headers={"retry-after-ms": "10"})
    if model == "br" and brotli is None:
        return web.json_response({"error": {"message": "brotli is not installed"}}, status=501)
    if model == "invalid-json":
        return web.Response(body=b'{"id": "x", "choices": [', content_type="application/json")
    if model == "binary":
        return web.Response(body=bytes(range(256)) * 16, content_type="application/json")
    if model == "unknown-shape":
        return web.json_response({"hello": "world"})
    if model == "huge":
        chunks, length = huge(int(meta(request, "mock_size", 50 * 1024 * 1024)))
        return await send(request, chunks, "application/json", length=length)
    if model == "slow-headers":
        await asyncio.sleep(meta(request, "mock_delay", 5.0))
    return None


def llm_handler(build: Callable[[web.Request, dict[str, Any], str], Built]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        odd = await special(request)
        if odd is not None:
            return odd
        model = model_of(request)
        out = build(request, body_of(request), model)
        if isinstance(out, dict):
            return json_reply(request, out)
        events, head = out
        delay = request.app[CHUNK_DELAY]
        if model != "slow-headers":  # there mock_delay already meant the header delay
            delay = meta(request, "mock_delay", delay)
        seq: Iterable[bytes] = events
        if model == "truncated-sse":  # three whole events, then one cut mid-JSON line
            seq = [*events[:3], events[3][: len(events[3]) // 2]]
        elif model == "never-ending":
            seq, delay = itertools.chain(events[:head], itertools.repeat(events[head])), 0.05
        return await send(request, seq, "text/event-stream", delay=delay, coding=model)

    return handler


def chunk_count(request: web.Request) -> int:
    return int(meta(request, "mock_chunks", 8))
