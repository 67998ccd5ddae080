"""Span shape, propagation, suppression, redaction, concurrency and never hurting the caller."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from yarl import URL

from aiohttp_llm_tracing import EndReason, SpanRegistry, create_trace_config
from aiohttp_llm_tracing._redact import redact_text, redact_url
from conftest import Gate, make_app, only_span


async def test_span_nests_under_callers_span(session, server, provider, exporter):
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("agent step") as parent:
        async with session.get(server.make_url("/json")) as resp:
            await resp.read()
        # No context was attached across callbacks: the caller's span is still current.
        assert trace.get_current_span() is parent
    spans = {s.name: s for s in exporter.get_finished_spans()}
    child = spans["GET"]
    assert child.kind == SpanKind.CLIENT
    assert child.parent.span_id == parent.get_span_context().span_id
    assert child.context.trace_id == parent.get_span_context().trace_id


async def test_server_receives_traceparent_and_request_id(session, server, exporter):
    async with session.get(server.make_url("/echo-headers")) as resp:
        received = await resp.json()
    span = only_span(exporter)
    ctx = span.context
    assert (
        received["traceparent"]
        == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    )
    assert received["X-Request-ID"] == span.attributes["llm_tracing.request_id"]


async def test_callers_request_id_is_kept(session, server, exporter):
    async with session.get(server.make_url("/echo-headers"), headers={"X-Request-ID": "mine"}) as r:
        received = await r.json()
    assert received["X-Request-ID"] == "mine"
    assert only_span(exporter).attributes["llm_tracing.request_id"] == "mine"


async def test_header_and_propagation_can_be_turned_off(provider, registry, server, exporter):
    config = create_trace_config(
        tracer_provider=provider, registry=registry, request_id_header=None, propagate=False
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.get(server.make_url("/echo-headers")) as resp:
            received = await resp.json()
    assert "X-Request-ID" not in received and "traceparent" not in received
    assert only_span(exporter).attributes["llm_tracing.request_id"]


@pytest.mark.parametrize("key", ["suppress_instrumentation", "suppress_http_instrumentation"])
async def test_suppression_means_no_span_entry_or_header(session, server, exporter, registry, key):
    token = otel_context.attach(
        otel_context.set_value(getattr(otel_context, f"_{key.upper()}_KEY"), True)
    )
    try:
        async with session.get(server.make_url("/echo-headers")) as resp:
            received = await resp.json()
    finally:
        otel_context.detach(token)
    assert exporter.get_finished_spans() == ()
    assert registry.stats().started == 0
    assert "traceparent" not in received and "X-Request-ID" not in received


def test_url_redaction():
    url = URL("https://user:pw@api.example.com/v1/x?api_key=sk-1&q=cats&access_token=t&sig=s")
    redacted = redact_url(url)
    assert "pw" not in redacted and "user" not in redacted
    assert redacted.startswith("https://REDACTED:REDACTED@api.example.com/v1/x?")
    assert "sk-1" not in redacted and "=t" not in redacted and "sig=s" not in redacted
    assert "q=cats" in redacted
    assert redact_url(URL("http://h/p?a=1")) == "http://h/p?a=1"
    # A password without a user, and a token in the fragment, are secrets too.
    assert "onlypass" not in redact_url(URL("http://:onlypass@h/p"))
    assert redact_url(URL("http://h/cb#access_token=frag")) == "http://h/cb"


def test_urls_inside_error_text_are_redacted():
    text = "500, message='Boom', url='http://u:pw@h/p?api_key=sk-1&q=cats' then https://h/x?token=t"
    redacted = redact_text(text)
    assert "sk-1" not in redacted and "pw" not in redacted and "token=t" not in redacted
    assert (
        "message='Boom'" in redacted
        and "q=cats" in redacted
        and redacted.endswith("token=REDACTED")
    )
    assert redact_text("no url here") == "no url here"


async def test_errors_never_record_the_secret_in_the_url(trace_config, server, exporter):
    url = server.make_url("/status/500").with_query(api_key="sk-secret-77")
    async with aiohttp.ClientSession(trace_configs=[trace_config], raise_for_status=True) as s:
        with pytest.raises(aiohttp.ClientResponseError) as raised:
            await s.get(url)
    assert "sk-secret-77" in str(raised.value)  # the caller's error is untouched
    span = only_span(exporter)
    recorded = [span.status.description, *map(str, span.attributes.values())]
    for event in span.events:
        recorded += map(str, event.attributes.values())
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"].endswith("ClientResponseError")
    assert "Internal Server Error" in span.status.description
    assert not [text for text in recorded if "sk-secret-77" in text]


async def test_url_full_is_redacted_on_the_span(session, server, exporter):
    url = server.make_url("/json").with_query(key="sk-live-123", page="2")
    async with session.get(url) as resp:
        await resp.read()
    recorded = only_span(exporter).attributes["url.full"]
    assert "sk-live-123" not in recorded and "page=2" in recorded


async def test_no_credential_headers_recorded(session, server, exporter):
    async with session.get(
        server.make_url("/json"), headers={"Authorization": "Bearer sk-top", "X-Api-Key": "k-1"}
    ) as resp:
        await resp.read()
    values = " ".join(str(v) for v in only_span(exporter).attributes.values())
    assert "sk-top" not in values and "k-1" not in values


async def test_internal_failure_never_reaches_the_caller(server, registry, exporter):
    class Broken:
        def start_span(self, *args, **kwargs):
            raise RuntimeError("tracer exploded")

    class BrokenProvider:
        def get_tracer(self, *args, **kwargs):
            return Broken()

    config = create_trace_config(tracer_provider=BrokenProvider(), registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        for _ in range(3):
            async with s.get(server.make_url("/json")) as resp:
                assert await resp.json() == {"ok": True}
    stats = registry.stats()
    assert stats.internal_errors == 3 and stats.started == 0 and len(registry) == 0


async def test_bytes_and_headers_unchanged(session, server, exporter):
    async with aiohttp.ClientSession() as bare:
        async with bare.get(server.make_url("/big?size=300000")) as resp:
            expected_body, expected_headers = await resp.read(), dict(resp.headers)
    async with session.get(server.make_url("/big?size=300000")) as resp:
        got = b"".join([c async for c in resp.content.iter_chunked(7001)])
        got_headers = dict(resp.headers)
    assert got == expected_body
    expected_headers.pop("Date"), got_headers.pop("Date")
    assert got_headers == expected_headers
    assert only_span(exporter).attributes["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE


async def test_1000_concurrent_mixed_requests(provider, registry, server, gate, exporter):
    gate.go.set()
    config = create_trace_config(tracer_provider=provider, registry=registry)
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(trace_configs=[config], connector=connector) as s:

        async def one(i: int) -> str:
            kind = i % 5
            if kind == 0:
                async with s.get(server.make_url("/json")) as r:
                    await r.json()
            elif kind == 1:
                async with s.get(server.make_url("/stream")) as r:
                    await r.read()
            elif kind == 2:
                async with s.get(server.make_url("/stream?hold=0&lines=20")) as r:
                    await r.content.readline()
            elif kind == 3:
                async with s.get(server.make_url("/status/500")) as r:
                    pass
            else:
                with pytest.raises(aiohttp.ClientConnectorError):
                    await s.get("http://127.0.0.1:1/")
            return "ok"

        results = await asyncio.gather(*(one(i) for i in range(1000)))
    assert results == ["ok"] * 1000
    spans = exporter.get_finished_spans()
    assert len(spans) == 1000
    assert len({s.context.span_id for s in spans}) == 1000
    stats = registry.stats()
    assert stats.started == 1000 and stats.ended_total == 1000 and stats.in_flight == 0
    assert len(registry) == 0


async def test_two_loops_in_two_threads_share_a_registry(provider, exporter):
    registry = SpanRegistry(sweep_interval=0.05)
    errors: list[BaseException] = []

    def worker() -> None:
        async def main() -> None:
            gate = Gate()
            gate.go.set()
            from aiohttp.test_utils import TestServer

            srv = TestServer(make_app(gate), host="127.0.0.1")
            await srv.start_server()
            config = create_trace_config(tracer_provider=provider, registry=registry)
            async with aiohttp.ClientSession(trace_configs=[config]) as s:
                for _ in range(100):
                    async with s.get(srv.make_url("/stream")) as r:
                        await r.read()
                    async with s.get(srv.make_url("/json")) as r:
                        await r.read()
            await srv.close()

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(exporter.get_finished_spans()) == 400
    stats = registry.stats()
    assert stats.started == 400 and stats.ended_total == 400 and len(registry) == 0
    registry.close()


async def test_global_propagator_set_after_the_config_is_used(session, server, exporter):
    from opentelemetry import propagate
    from opentelemetry.propagators.textmap import TextMapPropagator

    class Custom(TextMapPropagator):
        def inject(self, carrier, context=None, setter=None):
            span = trace.get_current_span(context)
            carrier["x-custom-trace"] = f"{span.get_span_context().span_id:016x}"

        def extract(self, carrier, context=None, getter=None):
            return context

        @property
        def fields(self):
            return {"x-custom-trace"}

    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(Custom())  # after the session and its trace config exist
    try:
        async with session.get(server.make_url("/echo-headers")) as resp:
            received = await resp.json()
    finally:
        propagate.set_global_textmap(previous)
    assert {k.lower(): v for k, v in received.items()}[
        "x-custom-trace"
    ] == f"{only_span(exporter).context.span_id:016x}"
    assert "traceparent" not in received
