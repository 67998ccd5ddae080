"""Nothing a server sends can lose a batch or leak a secret; flush() says when export failed.

Each odd value goes through the real OTLP/gRPC exporter into a real receiver: a span that the
exporter could not encode would take its whole batch down with it, so the spans are counted.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from aiohttp_llm_tracing import create_trace_config, setup_tracing
from aiohttp_llm_tracing._exportable import (
    ExportableAttributes,
    exportable_attributes,
    exportable_str,
)
from aiohttp_llm_tracing._redact import redact_secrets, redact_text

SECRET = "sk-live-0123456789abcdefSECRET"

# Raw JSON bodies: the escapes are what a server really sends (json.dumps would refuse some).
ODD_BODIES: dict[str, tuple[int, bytes]] = {
    "error-lone-surrogate": (400, b'{"error":{"message":"bad \\udc00","type":"x"}}'),
    "model-lone-surrogate": (
        200,
        b'{"id":"a","model":"m\\ud800","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"ok"},"finish_reason":"stop"}]}',
    ),
    "content-surrogates": (
        200,
        b'{"id":"b","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"half \\ud83d pair \\ud83d\\ude00 done"},"finish_reason":"stop"}]}',
    ),
    "usage-past-int64": (
        200,
        b'{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":9223372036854775808,'
        b'"completion_tokens":-9223372036854775809,"total_tokens":99999999999999999999}}',
    ),
    "id-and-finish-odd": (
        200,
        b'{"id":"\\udfff","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"x"},"finish_reason":"\\ud800stop"}]}',
    ),
    "plain": (
        200,
        b'{"id":"d","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
        b'"content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":1,"total_tokens":2}}',
    ),
}


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.Response:
        status, body = ODD_BODIES[request.match_info["case"]]
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{case}/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_every_odd_value_reaches_the_receiver(odd_server, grpc_receiver):
    provider = setup_tracing(
        exporter="otlp", endpoint=grpc_receiver.endpoint, insecure=True, set_global=False
    )
    config = create_trace_config(tracer_provider=provider, sweep_interval=None)
    body = {"model": "m", "messages": [{"role": "user", "content": "\udc00 odd \ud83d"}]}
    raw: dict[str, bytes] = {}
    async with aiohttp.ClientSession(trace_configs=[config]) as session:
        for case in ODD_BODIES:
            url = f"{odd_server}/{case}/v1/chat/completions"
            # The request body itself carries lone surrogates: sent as JSON escapes.
            async with session.post(url, json=body) as resp:
                raw[case] = await resp.read()
    assert {case: raw[case] for case in ODD_BODIES} == {c: b for c, (_, b) in ODD_BODIES.items()}
    assert provider.flush(10.0) is True
    assert grpc_receiver.wait_for(len(ODD_BODIES), timeout=10.0)
    spans = grpc_receiver.spans()
    assert len(spans) == len(ODD_BODIES)  # not one batch lost
    by_case = {s.attributes["url.full"].split("/")[3]: s for s in spans}
    error = by_case["error-lone-surrogate"]
    assert error.attributes["langfuse.observation.status_message"] == "bad \ufffd"
    assert by_case["model-lone-surrogate"].name == "chat m"  # the request's model names it
    assert by_case["model-lone-surrogate"].attributes["gen_ai.response.model"] == "m\ufffd"
    output = by_case["content-surrogates"].attributes["langfuse.observation.output"]
    assert (
        "half \ufffd pair \U0001f600 done" in output
    )  # a split pair is joined, a lone one replaced
    usage = by_case["usage-past-int64"].attributes
    assert usage["gen_ai.usage.input_tokens"] == "9223372036854775808"  # past int64: a string
    # orjson reads integers past 64 bits as floats, which are no token counts: left out.
    assert "gen_ai.usage.output_tokens" not in usage
    provider.shutdown()


def test_the_gate_itself() -> None:
    assert exportable_str("plain") == "plain"
    assert exportable_str("\ud83d\ude00 \udc00") == "\U0001f600 \ufffd"
    cleaned = exportable_attributes(
        {
            "big": 1 << 64,
            "ok": 7,
            "flag": True,
            "ratio": 0.5,
            "none": None,
            "mixed": [1, "a", 2.0],
            "strings": ["x\udc00"],
            "obj": {"k": 1},
            "\udc00key": "v",
        }
    )
    assert cleaned == {
        "big": str(1 << 64),
        "ok": 7,
        "flag": True,
        "ratio": 0.5,
        "mixed": ("1", "a", "2.0"),
        "strings": ("x\ufffd",),
        "obj": "{'k': 1}",
        "\ufffdkey": "v",
    }
    # Each value is as the SDK's own validation would store it (sequences as tuples), and the
    # type says so: the end writes such attributes without the SDK checking them again.
    assert type(cleaned) is ExportableAttributes
    # Not where the SDK would drop or refuse something: an empty key, a sequence of sequences.
    assert type(exportable_attributes({"": "v"})) is dict
    assert exportable_attributes({"nested": [[1], [2]]}) == {"nested": ((1,), (2,))}
    assert type(exportable_attributes({"nested": [[1], [2]]})) is dict


@pytest.mark.parametrize(
    "text, expected",
    [
        ("call to https://u/x?key=S failed", "call to https://u/x?key=REDACTED failed"),
        ("Authorization: Bearer abcdef123456789", "Authorization: Bearer REDACTED"),
        (f"invalid api key {SECRET}", "invalid api key REDACTED"),
        ("key AIzaSyA-1234567890abcdefghijklmno rejected", "key REDACTED rejected"),
        ("AKIAABCDEFGHIJKLMNOP is not allowed", "REDACTED is not allowed"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_request_s_own_credentials_are_scrubbed_in_any_format() -> None:
    own = "my-proxy-key-4242"  # matches no known key format
    text = f"key {own} has no access; token={own}"
    assert redact_secrets(text, (own,)) == "key REDACTED has no access; token=REDACTED"
    assert redact_secrets("short ab", ("ab",)) == "short ab"  # too short to be a secret


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    # Echoes the caller's key back in its error, as some gateways do: in a JSON error body and
    # in an SSE error event after a 200.
    async def chat(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body = await request.json()
        message = f"key {key} is over quota; see https://gw/x?key={key}"
        if not body.get("stream"):
            return web.json_response({"error": {"message": message}}, status=502)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"error": {"message": "%s"}}\n\n' % message.encode())
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_an_echoed_key_never_leaves_the_process(echo_server, llm_tracing, stream):
    # Content capture off: the API's error text is still recorded, and still redacted.
    own = "gw-key-without-a-known-prefix-777"
    config = create_trace_config(
        tracer_provider=llm_tracing.provider, registry=llm_tracing.registry, capture_content=False
    )
    headers = {"Authorization": f"Bearer {own}"}
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        body = {"model": "m", "stream": stream, "messages": []}
        async with s.post(echo_server, json=body, headers=headers) as resp:
            assert own.encode() in await resp.read()  # the caller gets exactly what was sent
    (span,) = llm_tracing.spans()
    everything = repr(span.attributes) + repr(span.status.description) + repr(span.events)
    assert own not in everything
    assert span.attributes["langfuse.observation.status_message"] == (
        "key REDACTED is over quota; see https://gw/x?key=REDACTED"
    )


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces"
    server.shutdown()
    thread.join()


def test_flush_reports_an_export_the_endpoint_refused(refusing_endpoint) -> None:
    provider = setup_tracing(exporter=OTLPSpanExporter(endpoint=refusing_endpoint, timeout=5))
    provider.get_tracer("t").start_span("s").end()
    assert provider.flush(10.0) is False  # 401: every span of the batch was dropped
    assert provider.flush(10.0) is True  # nothing new failed since
    provider.shutdown()


WRONG_TYPED_STREAM = (
    b'data: {"id":"w","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"Hel"},"finish_reason":null}]}\n\n'
    b'data: {"id":"w","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
    b'"id":"call_1","function":{"name":7,"arguments":"{}"}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"w","model":"m","choices":[{"index":0,"delta":{"content":"lo"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,'
    b'"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


async def test_a_wrong_type_costs_its_field_not_the_span(llm_tracing):
    async def stream(request: web.Request) -> web.Response:
        return web.Response(body=WRONG_TYPED_STREAM, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    try:
        async with aiohttp.ClientSession(trace_configs=[llm_tracing.trace_config]) as s:
            async with s.post(url, json={"model": "m", "stream": True, "messages": []}) as r:
                assert await r.read() == WRONG_TYPED_STREAM
    finally:
        await runner.cleanup()
    (span,) = llm_tracing.spans()
    a = dict(span.attributes)
    assert a["llm_tracing.parse_error"] == (
        "response: wrong JSON types in tool_calls.function.name"
    )
    assert a["gen_ai.usage.output_tokens"] == 2 and a["gen_ai.response.finish_reasons"] == ("stop",)
    assert '"content":"Hello"' in a["langfuse.observation.output"]
    assert llm_tracing.registry.stats().internal_errors == 0
