"""Embedded, deterministic, OpenAI-compatible mock LLM server for tests, demos and benchmarks.

Special behaviours are picked by the request's ``model`` so any client (the official SDKs
included) can trigger them through the normal endpoints: ``error-400|429|500``,
``gzip|deflate|br``, ``invalid-json``, ``truncated-sse``, ``binary``, ``huge``,
``unknown-shape``, ``slow-headers`` and ``never-ending``. Per-request knobs live in
``body["metadata"]``: ``mock_chunks``, ``mock_delay`` and ``mock_size``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from aiohttp import web

try:
    import brotli
except ImportError:  # optional: only the ``br`` model needs it
    brotli = None

__all__ = ["MockLLMServer", "ThreadedServer", "create_app", "run_in_thread"]

CREATED = 1700000000
REQUESTS = web.AppKey("mock_llm_requests", list)
_KEEP_REQUESTS = 1000
CHUNK_DELAY = web.AppKey("mock_llm_chunk_delay", float)
# Newer aiohttp warns on plain string request keys; older ones (>=3.9) lack RequestKey.
_BODY: Any = web.RequestKey("mock_llm_body", dict) if hasattr(web, "RequestKey") else "mock_body"
_BLOCK = 64 * 1024
_ERRORS = {
    400: ("Mock bad request", "invalid_request_error", "invalid_value"),
    429: ("Mock rate limit reached", "requests", "rate_limit_exceeded"),
    500: ("Mock server error", "server_error", None),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A builder returns a JSON payload, or SSE events plus how many precede the first delta.
Built = dict[str, Any] | tuple[list[bytes], int]


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(_text(p.get("text") if isinstance(p, dict) else p) for p in content)
    return content if isinstance(content, str) else ""


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _split(text: str, n: int) -> list[str]:
    # Exactly n pieces (some may be empty) so chunk counts are predictable in tests.
    cuts = [len(text) * i // max(1, n) for i in range(max(1, n) + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def _body(request: web.Request) -> dict[str, Any]:
    return request.get(_BODY) or {}


def _meta(request: web.Request, key: str, default: float) -> float:
    meta = _body(request).get("metadata")
    # The openai SDK types metadata values as strings, so accept "4" as well as 4.
    try:
        return float(meta[key]) if isinstance(meta, dict) and key in meta else default
    except (TypeError, ValueError):
        return default


def _model(request: web.Request) -> str:
    return str(_body(request).get("model") or request.match_info.get("deployment") or "mock")


def _prompt(body: dict[str, Any]) -> tuple[str, str, int]:
    """Return (last user text, mock answer, input tokens) for any of the supported APIs."""
    src = body.get("messages") or body.get("input") or body.get("prompt") or ""
    items = src if isinstance(src, list) else [src]
    texts = [_text(i.get("content") if isinstance(i, dict) else i) for i in items]
    is_user = [not isinstance(i, dict) or i.get("role") == "user" for i in items]
    users = [t for t, u in zip(texts, is_user, strict=True) if u]
    prompt = users[-1] if users else ""
    extra = _text(body.get("system") or body.get("instructions"))
    return prompt, f"Mock answer to: {prompt[:40]}", _tokens(" ".join([extra, *texts]))


def _compressor(coding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]] | None:
    """Return ``(step, finish)`` for one continuous stream that is flushed at every step."""
    if coding in ("gzip", "deflate"):
        z = zlib.compressobj(wbits=31 if coding == "gzip" else 15)
        return (lambda d: z.compress(d) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush
    if coding == "br" and brotli is not None:
        b = brotli.Compressor()
        return (lambda d: b.process(d) + b.flush()), b.finish
    return None


def _json(request: web.Request, payload: Any) -> web.Response:
    data, model = json.dumps(payload).encode(), _model(request)
    comp = _compressor(model)
    if comp is None:
        return web.Response(body=data, content_type="application/json")
    headers = {"Content-Encoding": model}
    return web.Response(
        body=comp[0](data) + comp[1](), content_type="application/json", headers=headers
    )


async def _send(
    request: web.Request,
    chunks: Iterable[bytes],
    ctype: str,
    *,
    delay: float = 0.0,
    coding: str = "",
    length: int | None = None,
) -> web.StreamResponse:
    """Stream ``chunks`` with one write each, optionally compressed and paced."""
    comp = _compressor(coding)
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


def _huge(size: int) -> tuple[Iterator[bytes], int]:
    usage = {"prompt_tokens": 1, "completion_tokens": size // 4, "total_tokens": size // 4 + 1}
    head = b'{"id":"huge","choices":[{"message":{"role":"assistant","content":"'
    tail = b'"}}],"usage":' + json.dumps(usage).encode() + b"}"
    fill, block = max(0, size - len(head) - len(tail)), b"x" * _BLOCK
    # One reused 64 KiB block keeps memory flat whatever the requested size.
    body = (block[: min(_BLOCK, fill - at)] for at in range(0, fill, _BLOCK))
    return itertools.chain([head], body, [tail]), len(head) + fill + len(tail)


async def _special(request: web.Request) -> web.StreamResponse | None:
    """Answer the model-driven misbehaviours shared by every LLM endpoint, else None."""
    model = _model(request)
    if model.startswith("error-") and model[6:].isdigit():
        status = int(model[6:])
        msg, kind, code = _ERRORS.get(status, ("Mock error", "api_error", None))
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
        chunks, length = _huge(int(_meta(request, "mock_size", 50 * 1024 * 1024)))
        return await _send(request, chunks, "application/json", length=length)
    if model == "slow-headers":
        await asyncio.sleep(_meta(request, "mock_delay", 5.0))
    return None


def _llm(build: Callable[[web.Request, dict[str, Any], str], Built]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        special = await _special(request)
        if special is not None:
            return special
        model = _model(request)
        out = build(request, _body(request), model)
        if isinstance(out, dict):
            return _json(request, out)
        events, head = out
        delay = request.app[CHUNK_DELAY]
        if model != "slow-headers":  # there mock_delay already meant the header delay
            delay = _meta(request, "mock_delay", delay)
        seq: Iterable[bytes] = events
        if model == "truncated-sse":  # three whole events, then one cut mid-JSON line
            seq = [*events[:3], events[3][: len(events[3]) // 2]]
        elif model == "never-ending":
            seq, delay = itertools.chain(events[:head], itertools.repeat(events[head])), 0.05
        return await _send(request, seq, "text/event-stream", delay=delay, coding=model)

    return handler


def _n(request: web.Request) -> int:
    return int(_meta(request, "mock_chunks", 8))


@_llm
def _chat(request: web.Request, body: dict[str, Any], model: str) -> Built:
    prompt, text, ptok = _prompt(body)
    msgs, tools = body.get("messages") or [], body.get("tools") or []
    tool = None
    if tools and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "user":
        tool = (tools[0].get("function") or tools[0]).get("name", "tool")
    args = json.dumps({"query": prompt[:40]})
    ctok = _tokens(args if tool else text)
    usage = {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok}
    usage |= {"prompt_tokens_details": {"cached_tokens": 0}}
    usage |= {"completion_tokens_details": {"reasoning_tokens": 0}}
    base = {"id": "chatcmpl-mock-1", "created": CREATED, "model": model}
    base["system_fingerprint"] = "fp_mock"
    finish = "tool_calls" if tool else "stop"
    call = {"id": "call_mock_1", "type": "function", "function": {"name": tool, "arguments": args}}
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if tool else text, "refusal": None}
        message |= {"tool_calls": [call]} if tool else {}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return _sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

    if tool:  # OpenAI's shape: name and id once, then bare argument fragments, all at index 0
        first = {"index": 0, **call, "function": {"name": tool, "arguments": ""}}
        events = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
        frags = [{"index": 0, "function": {"arguments": p}} for p in _split(args, _n(request))]
        events += [chunk({"tool_calls": [f]}) for f in frags]
    else:
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": p}) for p in _split(text, _n(request))]
    events.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(
            _sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        )
    return [*events, _sse("[DONE]")], 1


@_llm
def _completions(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, ptok = _prompt(body)
    ctok = _tokens(text)
    usage = {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok}
    base = {"id": "cmpl-mock-1", "object": "text_completion", "created": CREATED, "model": model}

    def out(part: str, reason: str | None, **extra: Any) -> dict[str, Any]:
        choice = {"text": part, "index": 0, "logprobs": None, "finish_reason": reason}
        return {**base, "choices": [choice], **extra}

    if not body.get("stream"):
        return out(text, "stop", usage=usage)
    events = [_sse(out(p, None)) for p in _split(text, _n(request))] + [_sse(out("", "stop"))]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse({**base, "choices": [], "usage": usage}))
    return [*events, _sse("[DONE]")], 0


@_llm
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
    tokens = sum(_tokens(t) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


@_llm
def _responses(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, itok = _prompt(body)
    otok, seq = _tokens(text), itertools.count()
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": "msg_mock_1", "status": "completed", "role": "assistant"}
    resp = {"id": "resp_mock_1", "object": "response", "created_at": CREATED, "model": model}
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
    pending = {"status": "in_progress", "output": [], "usage": None}

    def ev(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

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
    events += [ev("response.output_text.delta", **ids, delta=p) for p in _split(text, _n(request))]
    return [
        *events,
        ev("response.output_text.done", **ids, text=text),
        ev("response.content_part.done", **ids, part=part),
        ev("response.output_item.done", output_index=0, item=resp["output"][0]),
        ev("response.completed", response=resp),
    ], 3


@_llm
def _messages(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, itok = _prompt(body)
    msg = {"id": "msg_mock_1", "type": "message", "role": "assistant", "model": model}
    done = {"stop_reason": "end_turn", "stop_sequence": None}
    if not body.get("stream"):
        usage = {"input_tokens": itok, "output_tokens": _tokens(text)}
        return {**msg, "content": [{"type": "text", "text": text}], **done, "usage": usage}

    def ev(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, **fields}, event=kind)

    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None}
    deltas = [{"type": "text_delta", "text": p} for p in _split(text, _n(request))]
    return [
        ev("message_start", message={**start, "usage": {"input_tokens": itok, "output_tokens": 1}}),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        *(ev("content_block_delta", index=0, delta=d) for d in deltas),
        ev("content_block_stop", index=0),
        ev("message_delta", delta=done, usage={"output_tokens": _tokens(text)}),
        ev("message_stop"),
    ], 2


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
    return await _send(request, lines, "text/plain", delay=delay)


async def _big(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("size", _BLOCK))
    blocks = (bytes(min(_BLOCK, size - at)) for at in range(0, size, _BLOCK))
    return await _send(request, blocks, "application/octet-stream", length=size)


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
    request[_BODY] = parsed if isinstance(parsed, dict) else {}
    headers = {k.lower(): v for k, v in request.headers.items()}
    entry = {"path": request.path, "method": request.method, "headers": headers, "json": parsed}
    requests = request.app[REQUESTS]
    requests.append({**entry, "query": dict(request.query)})
    if len(requests) > _KEEP_REQUESTS:
        # A mock left running (a demo, a benchmark) must not grow with every request.
        del requests[0]
    return await handler(request)


def create_app(*, chunk_delay: float = 0.0) -> web.Application:
    """Build the mock application; ``chunk_delay`` seconds are slept between stream chunks."""
    app = web.Application(middlewares=[_record])
    app[REQUESTS], app[CHUNK_DELAY] = [], float(chunk_delay)
    for prefix in ("/v1", "/openai/deployments/{deployment}"):
        app.router.add_post(f"{prefix}/chat/completions", _chat)
        app.router.add_post(f"{prefix}/completions", _completions)
        app.router.add_post(f"{prefix}/embeddings", _embeddings)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/plain", _plain)
    app.router.add_get("/slow", _slow)
    app.router.add_get(r"/status/{code:\d+}", _status)
    app.router.add_get(r"/redirect/{n:\d+}", _redirect)
    app.router.add_get("/stream", _lines)
    app.router.add_get("/big", _big)
    app.router.add_get("/echo-headers", _echo_headers)
    return app


class MockLLMServer:
    """Async context manager serving :func:`create_app` on ``127.0.0.1``."""

    def __init__(self, *, port: int = 0, chunk_delay: float = 0.0) -> None:
        self.app = create_app(chunk_delay=chunk_delay)
        self._port, self._runner = port, None

    @property
    def port(self) -> int:
        """Bound TCP port (the real one once started, even when 0 was requested)."""
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last 1,000 requests: ``path``, ``method``, ``headers`` (lower-cased), ``json``."""
        return self.app[REQUESTS]

    async def start(self) -> None:
        """Bind and start serving."""
        # Short shutdown_timeout: a never-ending stream must not stall teardown for 60 s.
        runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=0.2, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class ThreadedServer:
    """A :class:`MockLLMServer` on its own event loop in a daemon thread, for sync code."""

    def __init__(self, *, port: int = 0, chunk_delay: float = 0.0) -> None:
        self.server = MockLLMServer(port=port, chunk_delay=chunk_delay)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mock-llm-server", daemon=True)

    @property
    def port(self) -> int:
        """Bound TCP port."""
        return self.server.port

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.server.base_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far; see :attr:`MockLLMServer.requests`."""
        return self.server.requests

    def start(self) -> ThreadedServer:
        """Start the thread and block until the server accepts connections."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        try:  # asyncio.run cancels leftover tasks and closes the loop, so nothing leaks
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = self._error or exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        await self.server.start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()

    def stop(self) -> None:
        """Shut the server down and join the thread; idempotent."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> ThreadedServer:
        return self if self._ready.is_set() else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_in_thread(*, port: int = 0, chunk_delay: float = 0.0) -> ThreadedServer:
    """Start a :class:`ThreadedServer` and return it once it is listening."""
    return ThreadedServer(port=port, chunk_delay=chunk_delay).start()
