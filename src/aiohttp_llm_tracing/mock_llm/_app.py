"""The mock application: every API shape's routes, plain HTTP endpoints, request recording."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from . import anthropic, bedrock, cohere, gemini, ollama, openai, textgen
from ._wire import BLOCK, BODY, CHUNK_DELAY, KEEP_REQUESTS, REQUESTS, Handler, send

__all__ = ["create_app"]


async def _plain(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", 1)))
    return web.json_response({"ok": True})


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if code < 200 or code in (204, 304):  # these statuses must not carry a body
        return web.Response(status=code)
    return web.json_response({"status": code}, status=code)


async def _redirect(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n <= 0:
        return await _plain(request)
    raise web.HTTPFound("/plain" if n == 1 else f"/redirect/{n - 1}")


async def _lines(request: web.Request) -> web.StreamResponse:
    n, delay = int(request.query.get("chunks", 5)), float(request.query.get("delay", 0))
    lines = (f"line {i}\n".encode() for i in range(n))
    return await send(request, lines, "text/plain", delay=delay)


async def _big(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("size", BLOCK))
    blocks = (bytes(min(BLOCK, size - at)) for at in range(0, size, BLOCK))
    return await send(request, blocks, "application/octet-stream", length=size)


async def _echo_headers(request: web.Request) -> web.Response:
    return web.json_response({k.lower(): v for k, v in request.headers.items()})


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request so tests can assert on what actually reached the server."""
    parsed = None
    if request.can_read_body:
        try:
            parsed = json.loads(await request.read())
        except ValueError:
            parsed = None
    request[BODY] = parsed if isinstance(parsed, dict) else {}
    headers = {k.lower(): v for k, v in request.headers.items()}
    entry = {"path": request.path, "method": request.method, "headers": headers, "json": parsed}
    requests = request.app[REQUESTS]
    requests.append({**entry, "query": dict(request.query)})
    if len(requests) > KEEP_REQUESTS:
        # A mock left running (a demo, a benchmark) must not grow with every request.
        del requests[0]
    return await handler(request)


def create_app(*, chunk_delay: float = 0.0) -> web.Application:
    """Build the mock application; ``chunk_delay`` seconds are slept between stream chunks."""
    # Multimodal prompts carry megabytes of base64: far above aiohttp's 1 MiB default.
    app = web.Application(middlewares=[_record], client_max_size=64 << 20)
    app[REQUESTS], app[CHUNK_DELAY] = [], float(chunk_delay)
    for api in (openai, anthropic, gemini, bedrock, cohere, ollama, textgen):
        api.add_routes(app)
    app.router.add_get("/plain", _plain)
    app.router.add_get("/slow", _slow)
    app.router.add_get(r"/status/{code:\d+}", _status)
    app.router.add_get(r"/redirect/{n:\d+}", _redirect)
    app.router.add_get("/stream", _lines)
    app.router.add_get("/big", _big)
    app.router.add_get("/echo-headers", _echo_headers)
    return app
