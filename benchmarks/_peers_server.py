"""Fast loopback server for ``llm_peers.py``: an OpenAI-shaped chat endpoint and a Langfuse stub.

    python benchmarks/_peers_server.py [--pace-ms MS] PORT_FILE

Binds 127.0.0.1 on a free port, writes the port to PORT_FILE and serves until killed.
``--pace-ms`` waits that long after each SSE chunk, as a model's tokens arrive (default 0).

* ``POST /v1/chat/completions`` answers a 1037-byte ``chat.completion`` JSON with usage, or with
  ``"stream": true`` an SSE stream of 50 content chunks (about 290 B each, one ``write()`` per
  chunk, no sleeps), a usage chunk when ``stream_options.include_usage`` is set, then
  ``data: [DONE]``. Every payload is built once at import.
* ``POST /api/public/otel/v1/traces`` stands in for Langfuse's OTLP/HTTP endpoint: it decodes the
  (optionally gzipped) protobuf, counts the spans and answers 200 with an empty
  ``application/x-protobuf`` body (an empty JSON body would make some exporters drop the batch).
* ``GET /plain`` answers a 31-byte JSON body: the plain request of ``instructions.py``.
* ``GET /_stub/stats`` returns ``{"spans", "exports", "other"}``; ``other`` lists any other path
  that was hit, so a peer calling home somewhere unexpected shows up.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import zlib

from aiohttp import web

MODEL = "gpt-4o-mini-2024-07-18"
CREATED = 1700000000
STREAM_CHUNKS = 50
JSON_BYTES = 1037
CHUNK_BYTES = 290
_DUMP = {"separators": (",", ":")}


def _pad(build, target: int) -> bytes:  # type: ignore[no-untyped-def]
    """Grow the text passed to ``build`` until the encoded payload is ``target`` bytes."""
    text = ""
    while True:
        raw = build(text)
        if len(raw) >= target:
            return raw
        text += "x" if len(raw) + 1 >= target else "lorem "


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench000000000000000000000001",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "The capital of France is Paris. " + text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 24,
                "completion_tokens": 64,
                "total_tokens": 88,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_bench00001",
        },
        **_DUMP,
    ).encode()


def _chunk(i: int, text: str, finish: str | None) -> bytes:
    delta: dict = {"content": f"tok{i} " + text}
    if i == 0:
        delta = {"role": "assistant", **delta, "refusal": None}
    body = {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_b0001",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "obfuscation": "abc",
    }
    return b"data: " + json.dumps(body, **_DUMP).encode() + b"\n\n"


def _usage_chunk() -> bytes:
    body = {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_b0001",
        "choices": [],
        "usage": {
            "prompt_tokens": 24,
            "completion_tokens": STREAM_CHUNKS,
            "total_tokens": 24 + STREAM_CHUNKS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "obfuscation": "abc",
    }
    return b"data: " + json.dumps(body, **_DUMP).encode() + b"\n\n"


COMPLETION = _pad(_completion, JSON_BYTES)
CHUNKS = [
    _pad(lambda t, i=i: _chunk(i, t, "stop" if i == STREAM_CHUNKS - 1 else None), CHUNK_BYTES)
    for i in range(STREAM_CHUNKS)
]
USAGE_CHUNK = _usage_chunk()
DONE = b"data: [DONE]\n\n"
PLAIN = b'{"status":"ok","items":[1,2,3]}'  # for the plain requests of instructions.py
STATS = web.AppKey("peers_stub_stats", dict)
PACE = web.AppKey("peers_pace_s", float)


async def chat(request: web.Request) -> web.StreamResponse:
    body = json.loads(await request.read())
    if not body.get("stream"):
        return web.Response(body=COMPLETION, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    pace = request.app[PACE]
    for part in CHUNKS:
        await resp.write(part)
        if pace:
            await asyncio.sleep(pace)
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(USAGE_CHUNK)
    await resp.write(DONE)
    await resp.write_eof()
    return resp


def _count_spans(raw: bytes, encoding: str) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    # aiohttp's server usually inflates the body already; decode only if it is still compressed.
    if encoding == "gzip" and raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif encoding == "deflate" and raw[:1] == b"\x78":
        raw = zlib.decompress(raw)
    req = ExportTraceServiceRequest()
    req.ParseFromString(raw)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


async def otel_traces(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    raw = await request.read()
    stats["exports"] += 1
    try:
        stats["spans"] += _count_spans(raw, request.headers.get("Content-Encoding", "").lower())
    except Exception as exc:  # report it: a silent 500 would look like a dropped export
        stats["errors"].append(repr(exc)[:300])
        print(f"stub: cannot decode an OTLP export: {exc!r}", file=sys.stderr, flush=True)
        return web.Response(status=400, text=repr(exc))
    return web.Response(body=b"", content_type="application/x-protobuf")


async def plain(request: web.Request) -> web.Response:
    return web.Response(body=PLAIN, content_type="application/json")


async def stub_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


@web.middleware
async def record_other(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.path not in (
        "/v1/chat/completions",
        "/api/public/otel/v1/traces",
        "/_stub/stats",
        "/plain",
    ):
        other = request.app[STATS]["other"]
        if len(other) < 100:
            other.append(f"{request.method} {request.path}")
    return await handler(request)


def make_app(*, pace_s: float = 0.0) -> web.Application:
    app = web.Application(middlewares=[record_other], client_max_size=64 * 1024 * 1024)
    app[STATS] = {"spans": 0, "exports": 0, "errors": [], "other": []}
    app[PACE] = pace_s
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/api/public/otel/v1/traces", otel_traces)
    app.router.add_get("/_stub/stats", stub_stats)
    app.router.add_get("/plain", plain)
    return app


if __name__ == "__main__":
    from _common import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("port_file")
    args = parser.parse_args()
    serve(make_app(pace_s=args.pace_ms / 1000), args.port_file)
