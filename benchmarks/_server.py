"""A loopback aiohttp server for the benchmarks and the leak harness, run in its own process.

``python benchmarks/_server.py PORT_FILE`` binds 127.0.0.1 on a free port, writes the port to
PORT_FILE, and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

_JSON = json.dumps({"id": 1, "ok": True, "items": [1, 2, 3], "name": "bench"}).encode()


def _chat_json() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris is the capital of France."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 21, "completion_tokens": 8, "total_tokens": 29},
        }
    ).encode()


_CHAT = _chat_json()


def _sse_body(chunks: int) -> bytes:
    parts = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"tok{i} "}
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }
        parts.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 21, "completion_tokens": chunks, "total_tokens": 21 + chunks},
    }
    parts.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


async def plain(request: web.Request) -> web.Response:
    return web.Response(body=_JSON, content_type="application/json")


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream": true' in body or b'"stream":true' in body:
        chunks = int(request.query.get("chunks", "200"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        payload = _SSE_CACHE.get(chunks) or _SSE_CACHE.setdefault(chunks, _split(chunks))
        for part in payload:
            await resp.write(part)
        await resp.write_eof()
        return resp
    return web.Response(body=_CHAT, content_type="application/json")


_SSE_CACHE: dict[int, list[bytes]] = {}


def _split(chunks: int) -> list[bytes]:
    return [b + b"\n\n" for b in _sse_body(chunks).split(b"\n\n") if b]


async def stream(request: web.Request) -> web.StreamResponse:
    lines = int(request.query.get("lines", "20"))
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    for i in range(lines):
        await resp.write(b"line %d\n" % i)
    await resp.write_eof()
    return resp


async def stall(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    await resp.write(b"first\n")
    await asyncio.sleep(30)  # until the client goes away (the handler is then cancelled)
    return resp


async def slow_headers(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response()


async def status(request: web.Request) -> web.Response:
    return web.json_response({"error": {"message": "boom"}}, status=int(request.match_info["c"]))


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/json", plain)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stream", stream)
    app.router.add_get("/stall", stall)
    app.router.add_get("/slow-headers", slow_headers)
    app.router.add_get("/status/{c}", status)
    # Every other wire shape (Gemini, Bedrock eventstream, Cohere, Ollama NDJSON...) from the
    # embedded mock, under /mock.
    from aiohttp_llm_tracing.mock_llm import create_app

    app.add_subapp("/mock", create_app())
    return app


if __name__ == "__main__":
    from _common import serve

    serve(make_app(), sys.argv[1])
