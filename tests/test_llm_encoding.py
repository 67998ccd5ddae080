"""Compressed bodies: the same generation whether aiohttp decoded them or the caller reads raw.

The mock compresses when the model is ``gzip``, ``deflate`` or ``br``; ``identity`` is the plain
baseline. The openai SDK reads with ``auto_decompress=False``, plain aiohttp decodes: in both
cases the span must carry exactly the attributes of the plain call, and the caller must get
exactly the bytes it would get without tracing.
"""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
import zlib
from typing import Any

import brotli
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiohttp_llm_tracing._decode import decode

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER, attrs, fetch_untraced, jattr, openai_client  # noqa: E402

pytest_plugins = ["llm_fixtures"]

TIMING = ("gen_ai.response.time_to_first_chunk", "langfuse.observation.completion_start_time")


def comparable(span, model: str) -> dict[str, Any]:
    """Attributes with per-request values dropped and the model name made neutral."""
    out: dict[str, Any] = {"name": span.name.replace(model, "MODEL")}
    for key, value in attrs(span).items():
        if key in ("llm_tracing.request_id", *TIMING):
            continue
        out[key] = value.replace(model, "MODEL") if isinstance(value, str) else value
    return out


async def traced_call(tracing, url: str, body: dict, auto_decompress: bool) -> tuple[bytes, Any]:
    before = len(tracing.spans())
    async with tracing.session(auto_decompress=auto_decompress) as s:
        async with s.post(url, json=body) as resp:
            raw = b"".join([chunk async for chunk in resp.content.iter_chunked(100)])
    spans = tracing.spans()
    assert len(spans) == before + 1
    return raw, spans[-1]


@pytest.mark.parametrize("auto_decompress", [True, False], ids=["decoded", "raw"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compressed_bodies_give_the_plain_attributes(
    llm_server, tracing, encoding, stream, auto_decompress
):
    url = f"{llm_server.base_url}/chat/completions"
    body: dict[str, Any] = {"messages": USER, "stream": stream, "temperature": 0.5}
    if stream:
        body["stream_options"] = {"include_usage": True}

    _, plain_span = await traced_call(tracing, url, {**body, "model": "identity"}, True)
    raw, span = await traced_call(tracing, url, {**body, "model": encoding}, auto_decompress)

    # The caller got exactly what it gets untraced (compressed or not, per its own setting).
    untraced = await fetch_untraced(
        url, {**body, "model": encoding}, auto_decompress=auto_decompress
    )
    assert raw == untraced
    if auto_decompress:
        assert raw.startswith((b"{", b"data:"))
    else:
        assert not raw.startswith((b"{", b"data:"))

    assert comparable(span, encoding) == comparable(plain_span, "identity")
    assert jattr(span, "langfuse.observation.output")["content"].startswith("Mock answer")
    for key in TIMING:
        assert (key in attrs(span)) == stream == (key in attrs(plain_span))
    if stream:
        ttfc = attrs(span)["gen_ai.response.time_to_first_chunk"]
        assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9 + 0.01
    tracing.assert_settled()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compressed_through_the_sdk(llm_server, tracing, encoding):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        completion = await client.chat.completions.create(model=encoding, messages=USER)
        stream = await client.chat.completions.create(
            model=encoding,
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    json_span, stream_span = tracing.spans()
    assert llm_server.requests[-1]["headers"]["accept-encoding"].startswith("gzip, deflate")
    answer = completion.choices[0].message.content
    assert text == answer
    for span in (json_span, stream_span):
        assert span.name == f"chat {encoding}"
        assert jattr(span, "langfuse.observation.output") == {
            "role": "assistant",
            "content": answer,
        }
        assert attrs(span)["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attrs(stream_span)["gen_ai.response.time_to_first_chunk"] > 0
    tracing.assert_settled()


# -- the decoder on its own -----------------------------------------------------------------

PAYLOAD = b'{"id": "x", "choices": [{"message": {"content": "' + b"hello " * 2000 + b'"}}]}'


def _deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _deflate_raw),
        ("br", brotli.compress),
        ("GZIP ", gzip.compress),
    ],
)
def test_decode_encoded_and_already_decoded(encoding, compress):
    encoded = compress(PAYLOAD)
    result = decode(encoded, encoding, 1 << 20)
    assert result.data == PAYLOAD and result.encoded
    # aiohttp decoded it already: the header stays, the bytes are plain.
    again = decode(PAYLOAD, encoding, 1 << 20)
    assert again.data == PAYLOAD and not again.encoded


COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=4),
}


@pytest.mark.parametrize("encoding", list(COMPRESS))
def test_decode_is_bounded(encoding):
    bomb = COMPRESS[encoding](b"\0" * (32 << 20))
    assert len(bomb) < 64 << 10
    tracemalloc.start()
    try:
        result = decode(bomb, encoding, 4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.data == b"\0" * 4096
    assert peak < 1 << 20  # 32 MB never materialise


def test_decode_cut_off_gzip_keeps_what_decoded():
    encoded = gzip.compress(PAYLOAD)
    result = decode(encoded[: len(encoded) // 2], "gzip", 1 << 20)
    assert result.encoded
    assert 0 < len(result.data) < len(PAYLOAD)
    assert PAYLOAD.startswith(result.data)


def test_decode_sizes_map_reads_to_decoded_bytes():
    comp = zlib.compressobj(wbits=31)
    parts = [comp.compress(p) + comp.flush(zlib.Z_SYNC_FLUSH) for p in (b"a" * 10, b"b" * 20)]
    parts.append(comp.flush())
    data = b"".join(parts)
    cuts = [len(parts[0]), len(parts[0]) + len(parts[1]), len(data)]
    result = decode(data, "gzip", 1 << 20, cuts)
    assert result.sizes == [10, 30, 30]
    assert decode(b"data: x\n\n", "gzip", 100, [3, 9]).sizes == [3, 9]


@pytest.mark.parametrize(
    "plain",
    [
        b'data: {"id":"chatcmpl-mock-1","choices":[]}\n\n',
        b'[{"a": 1}]',
        b"[0.7]",  # brotli reads this as an unfinished stream and yields nothing
        b"event: message_start\ndata: {}\n\n",
        b": keep-alive\n\n",
    ],
)
@pytest.mark.parametrize("encoding", ["deflate", "br", "gzip", "unknown"])
def test_plain_bodies_under_an_encoding_header_stay_plain(plain, encoding):
    assert decode(plain, encoding, 1 << 20)[:3] == (plain, False, [])


async def test_auto_decompress_session_wide_and_sdk_style_per_request(llm_server, tracing):
    # The SDK passes auto_decompress=False per request on a default session.
    url = f"{llm_server.base_url}/chat/completions"
    async with tracing.session() as s:
        async with s.post(
            url, json={"model": "gzip", "messages": USER}, auto_decompress=False
        ) as resp:
            raw = await resp.read()
    assert raw[:2] == b"\x1f\x8b"
    span = tracing.only()
    assert jattr(span, "langfuse.observation.output")["content"] == (
        "Mock answer to: " + USER[0]["content"][:40]
    )


def test_a_body_inflating_past_the_cap_is_truncated_with_its_end_kept():
    body = json.dumps(
        {"id": "x", "model": "m", "data": ["v" * 1000] * 1700, "usage": {"prompt_tokens": 7}}
    ).encode()
    result = decode(gzip.compress(body), "gzip", 1 << 20, tail_limit=64 << 10)
    assert result.truncated and result.data == body[: 1 << 20]
    assert result.tail == body[-(64 << 10) :]
    whole = decode(gzip.compress(body[:1000]), "gzip", 1 << 20, tail_limit=64 << 10)
    assert not whole.truncated and whole.tail == b""


def test_a_bomb_is_truncated_within_its_budget():
    bomb = gzip.compress(b"\0" * (32 << 20))
    result = decode(bomb, "gzip", 4096, tail_limit=1024)
    assert result.truncated and result.tail == b""  # past the budget: the end is not sought


async def test_compressed_under_the_cap_inflating_past_it_keeps_model_and_usage(tracing):
    # The openai SDK reads with auto_decompress=False: the capture holds gzip, 0.5 MB of it.
    answer = {
        "id": "chatcmpl-big",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": os.urandom(900_000).hex()},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4096, "total_tokens": 4108},
    }
    raw = gzip.compress(json.dumps(answer).encode())
    assert len(raw) < 1 << 20 < len(json.dumps(answer))

    async def chat(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip"}
        return web.Response(body=raw, headers=headers, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app)
    await server.start_server()
    try:
        async with tracing.session(auto_decompress=False) as s:
            url = str(server.make_url("/v1/chat/completions"))
            async with s.post(url, json={"model": "gpt-4o", "messages": []}) as resp:
                assert await resp.read() == raw
    finally:
        await server.close()
    a = attrs(tracing.only())
    assert a["llm_tracing.body_truncated"] == "response"
    assert "llm_tracing.parse_error" not in a
    assert a["gen_ai.response.model"] == "gpt-4o"
    assert a["gen_ai.usage.output_tokens"] == 4096
    assert a["gen_ai.response.id"] == "chatcmpl-big"
