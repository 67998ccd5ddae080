"""Every end path of the table in the core issue: exactly one span, ended once, registry empty."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import StatusCode

from aiohttp_llm_tracing import EndReason, SpanRegistry, create_trace_config
from conftest import AIOHTTP_VERSION, Gate, free_port, only_span


def assert_done(exporter, registry: SpanRegistry, reason: str, status=StatusCode.UNSET):
    span = only_span(exporter)
    assert span.attributes["llm_tracing.end_reason"] == reason
    assert span.status.status_code == status
    assert len(registry) == 0
    stats = registry.stats()
    assert stats.started == 1 and stats.ended == {reason: 1} and stats.in_flight == 0
    assert stats.internal_errors == 0
    return span


# -- headers arrive and the body already came with them -------------------------------------


async def test_body_with_headers_ends_at_once(session, server, exporter, registry):
    async with session.get(server.make_url("/json")) as resp:
        # Ended before the caller reads anything: the whole body came with the headers.
        assert len(exporter.get_finished_spans()) == 1
        assert await resp.json() == {"ok": True}
    span = assert_done(exporter, registry, EndReason.RESPONSE)
    assert span.name == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["network.protocol.version"] == "1.1"
    assert span.attributes["server.address"] == "127.0.0.1"
    assert span.attributes["server.port"] == server.port
    assert span.attributes["url.full"] == str(server.make_url("/json"))


async def test_http_error_status_is_error(session, server, exporter, registry):
    async with session.get(server.make_url("/status/503")) as resp:
        assert resp.status == 503
    span = assert_done(exporter, registry, EndReason.RESPONSE, StatusCode.ERROR)
    assert span.attributes["error.type"] == "503"
    assert span.attributes["http.response.status_code"] == 503


# -- body read to the end ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["read", "text", "lines", "iter_chunked", "iter_any", "readany", "iter_chunks", "readchunk"],
)
async def test_body_read_to_end_covers_the_body(
    session, server, gate: Gate, exporter, registry, how
):
    async with session.get(server.make_url("/stream")) as resp:
        await gate.reached.wait()
        assert exporter.get_finished_spans() == ()  # headers are in, the body is not
        before_end = time.time_ns()
        gate.go.set()
        if how == "read":
            body = await resp.read()
        elif how == "text":
            body = (await resp.text()).encode()
        elif how == "lines":
            body = b"".join([line async for line in resp.content])
        elif how == "iter_chunked":
            body = b"".join([c async for c in resp.content.iter_chunked(3)])
        elif how == "iter_any":
            body = b"".join([c async for c in resp.content.iter_any()])
        elif how == "iter_chunks":
            body = b"".join([c async for c, _ in resp.content.iter_chunks()])
        elif how == "readchunk":
            body = b""
            while (chunk := await resp.content.readchunk())[0]:
                body += chunk[0]
        else:
            body = b""
            while chunk := await resp.content.readany():
                body += chunk
        assert body == b"line 0\nline 1\nline 2\nline 3\n"
        # Ended by the read that reached the end, not by the release below.
        assert len(exporter.get_finished_spans()) == 1
    span = assert_done(exporter, registry, EndReason.BODY_COMPLETE)
    assert span.end_time >= before_end


async def test_readexactly_past_the_end_of_a_whole_body_is_complete(
    session, server, gate: Gate, exporter, registry
):
    async with session.get(server.make_url("/stream")) as resp:
        await gate.reached.wait()
        gate.go.set()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await resp.content.readexactly(1000)  # more than the body has
        assert info.value.partial == b"line 0\nline 1\nline 2\nline 3\n"
        assert len(exporter.get_finished_spans()) == 1
    assert_done(exporter, registry, EndReason.BODY_COMPLETE)


async def test_a_refused_read_call_is_not_the_end(session, server, gate: Gate, exporter, registry):
    # google-genai probes readline(max_line_length=...) and falls back on TypeError.
    async with session.get(server.make_url("/stream")) as resp:
        await gate.reached.wait()
        gate.go.set()
        with pytest.raises(TypeError):
            await resp.content.readline(no_such_argument=1)
        assert exporter.get_finished_spans() == ()
        lines = [line async for line in resp.content]
        assert b"".join(lines) == b"line 0\nline 1\nline 2\nline 3\n"
    assert_done(exporter, registry, EndReason.BODY_COMPLETE)


async def test_redirects_are_events_on_one_span(session, server, exporter, registry):
    async with session.get(server.make_url("/redirect/3")) as resp:
        assert await resp.json() == {"ok": True}
    span = assert_done(exporter, registry, EndReason.RESPONSE)
    assert [e.name for e in span.events] == ["http.redirect"] * 3
    assert span.events[0].attributes["http.response.status_code"] == 302
    assert len(registry) == 0


# -- body abandoned ---------------------------------------------------------------------------


async def test_break_then_release(session, server, gate, exporter, registry):
    async with session.get(server.make_url("/stream?hold=0&lines=50")) as resp:
        async for _ in resp.content:
            break
        assert exporter.get_finished_spans() == ()
    assert_done(exporter, registry, EndReason.RELEASED)


async def test_close_before_end(session, server, gate, exporter, registry):
    resp = await session.get(server.make_url("/stream"))
    await resp.content.readline()
    resp.close()
    gate.go.set()
    assert_done(exporter, registry, EndReason.RELEASED)


async def test_release_without_reading(session, server, gate, exporter, registry):
    resp = await session.get(server.make_url("/stream"))
    resp.release()
    gate.go.set()
    assert_done(exporter, registry, EndReason.RELEASED)


async def test_timeout_while_reading(provider, registry, server, gate, exporter):
    config = create_trace_config(tracer_provider=provider, registry=registry)
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(trace_configs=[config], timeout=timeout) as s:
        async with s.get(server.make_url("/stall")) as resp:
            assert await resp.content.readline() == b"first\n"
            with pytest.raises(aiohttp.SocketTimeoutError):
                await resp.content.readline()
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] == "SocketTimeoutError"
    assert [e.name for e in span.events] == ["exception"]


async def test_timeout_inside_read(provider, registry, server, gate, exporter):
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.get(server.make_url("/stall")) as resp:
            await gate.reached.wait()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(resp.read(), 0.1)
    # The timeout cancels the read; read() closes the response: a cancellation, not an error.
    span = assert_done(exporter, registry, EndReason.CANCELLED)
    assert span.attributes["langfuse.observation.level"] == "WARNING"


async def test_cancel_while_reading(session, server, gate, exporter, registry):
    first_line = asyncio.Event()

    async def reader() -> None:
        async with session.get(server.make_url("/stall")) as resp:
            async for _ in resp.content:
                first_line.set()  # the next iteration blocks: the server sends nothing more

    task = asyncio.create_task(reader())
    await first_line.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = assert_done(exporter, registry, EndReason.CANCELLED)
    assert "error.type" not in span.attributes
    assert span.attributes["http.response.status_code"] == 200  # the headers had arrived


async def test_cancelled_read_then_reading_on(session, server, gate, exporter, registry):
    # A caller may time out one read and keep reading: that read's cancellation is not the end.
    async with session.get(server.make_url("/stream")) as resp:
        await resp.content.readline()
        await resp.content.readline()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(resp.content.readline(), 0.05)
        gate.go.set()
        rest = await resp.content.read()
        assert rest.endswith(b"line 3\n")
    assert_done(exporter, registry, EndReason.BODY_COMPLETE)


# -- errors before headers --------------------------------------------------------------------


async def test_connection_refused(session, exporter, registry):
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(f"http://127.0.0.1:{free_port()}/")
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] == "ClientConnectorError"
    assert "http.response.status_code" not in span.attributes


async def test_total_timeout_before_headers(session, server, exporter, registry):
    with pytest.raises(asyncio.TimeoutError):  # builtins.TimeoutError from Python 3.11 on
        await session.get(server.make_url("/slow-headers"), timeout=aiohttp.ClientTimeout(0.1))
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] in ("TimeoutError", "ServerTimeoutError")


async def test_cancel_before_headers(session, server, gate, exporter, registry):
    task = asyncio.create_task(session.get(server.make_url("/slow-headers")))
    await gate.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = assert_done(exporter, registry, EndReason.CANCELLED)
    assert span.status.status_code == StatusCode.UNSET


async def test_raise_for_status(provider, registry, server, exporter):
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config], raise_for_status=True) as s:
        with pytest.raises(aiohttp.ClientResponseError) as info:
            await s.get(server.make_url("/status/500"))
    assert info.value.status == 500
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] == "500"
    assert span.attributes["http.response.status_code"] == 500


# -- nothing reports the end: the sweeper -----------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_response_dropped_unread_is_swept(provider, server, gate, exporter):
    clock = FakeClock()
    registry = SpanRegistry(ttl=60, sweep_interval=None, timer=clock)
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        resp = await s.get(server.make_url("/stall"))
        del resp
        assert registry.sweep() == 0
        # Its first line arrived after the span was registered: a live stream, renewed once.
        clock.now += 61
        assert registry.sweep() == 0
        # Then a whole TTL of silence ends it.
        clock.now += 61
        assert registry.sweep() == 1
    span = only_span(exporter)
    assert span.attributes["llm_tracing.end_reason"] == EndReason.EXPIRED
    assert span.status.status_code == StatusCode.ERROR
    assert len(registry) == 0
    assert registry.stats().ended == {EndReason.EXPIRED: 1}


async def test_session_closed_under_reader_is_swept(provider, server, gate, exporter):
    clock = FakeClock()
    registry = SpanRegistry(ttl=60, sweep_interval=None, timer=clock)
    config = create_trace_config(tracer_provider=provider, registry=registry)
    s = aiohttp.ClientSession(trace_configs=[config])
    resp = await s.get(server.make_url("/stall"))
    await resp.content.readline()
    await s.close()  # aiohttp reports nothing to the response's reader
    assert exporter.get_finished_spans() == ()
    clock.now += 61
    assert registry.sweep() == 0  # bytes arrived in this TTL: renewed
    clock.now += 61
    assert registry.sweep() == 1  # none in the next
    assert only_span(exporter).attributes["llm_tracing.end_reason"] == EndReason.EXPIRED
    # A late signal for the expired span does nothing: no second end, no warning.
    resp.release()
    assert len(exporter.get_finished_spans()) == 1


async def test_sweeper_thread_ends_expired(provider, server, exporter):
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Notify(SpanProcessor):
        def on_end(self, span):
            loop.call_soon_threadsafe(ended.set)

    provider.add_span_processor(Notify())
    registry = SpanRegistry(ttl=0.05, sweep_interval=0.02)
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        resp = await s.get(server.make_url("/stall"))
        await asyncio.wait_for(ended.wait(), 10)
        resp.release()
    assert only_span(exporter).attributes["llm_tracing.end_reason"] == EndReason.EXPIRED
    assert len(registry) == 0
    registry.close()


# -- edges from aiohttp's own behaviour ------------------------------------------------------


async def test_another_configs_failing_end_callback_ends_ours_once(
    provider, registry, server, exporter
):
    # aiohttp turns an exception in any on_request_end callback into on_request_exception for
    # every trace config, including ours, whose on_request_end already ran. It closes the
    # response first, so the body proxy ends the span ("released"); the exception signal that
    # follows finds nothing left to end.
    async def broken(session, ctx, params):
        raise ValueError("someone else's bug")

    other = aiohttp.TraceConfig()
    other.on_request_end.append(broken)
    ours = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[ours, other]) as s:
        with pytest.raises(ValueError):
            await s.get(server.make_url("/stream"))
    if AIOHTTP_VERSION >= (3, 14, 1):
        assert_done(exporter, registry, EndReason.RELEASED)
    else:
        # Older aiohttp sends the exception signal before closing the response: that one ends
        # the span, once, as the error it is.
        assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)


async def test_head_request_has_no_body_and_ends_at_once(session, server, exporter, registry):
    async with session.head(server.make_url("/json")) as resp:
        assert resp.status == 200
    assert only_span(exporter).attributes["llm_tracing.end_reason"] == EndReason.RESPONSE
    assert len(registry) == 0
    assert_done(exporter, registry, EndReason.RESPONSE)


# -- the connection drops mid-body -------------------------------------------------------------


async def test_connection_lost_while_reading(session, server, exporter, registry):
    async with session.get(server.make_url("/cut")) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] == "ClientPayloadError"


async def test_connection_lost_while_the_caller_is_not_reading(
    session, server, gate, exporter, registry
):
    resp = await session.get(server.make_url("/cut?hold=1"))
    await gate.reached.wait()
    gate.go.set()
    # No signal tells the caller; the reader only holds the error. Wait for it, bounded.
    inner = resp.content._inner

    async def dropped() -> None:
        while inner.exception() is None:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(dropped(), 10)
    assert exporter.get_finished_spans() == ()
    resp.release()  # aiohttp asks the reader for its error here: the last chance to end
    span = assert_done(exporter, registry, EndReason.EXCEPTION, StatusCode.ERROR)
    assert span.attributes["error.type"] == "ClientPayloadError"


# -- ended by the registry: capacity and shutdown ----------------------------------------------


async def test_evicted_by_a_full_registry(provider, server, gate, exporter):
    registry = SpanRegistry(maxsize=1, sweep_interval=None)
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.get(server.make_url("/stream")) as held:
            await gate.reached.wait()
            async with s.get(server.make_url("/json")) as resp:  # no room: the held one goes
                await resp.read()
            gate.go.set()
            assert (await held.read()).endswith(b"line 3\n")  # the caller is unaffected
    spans = exporter.get_finished_spans()
    assert [s.attributes["llm_tracing.end_reason"] for s in spans] == ["evicted", "response"]
    assert spans[0].status.status_code == StatusCode.ERROR
    assert spans[0].attributes["error.type"] == "evicted"
    assert registry.stats().ended == {"evicted": 1, "response": 1}
    assert len(registry) == 0


async def test_shutdown_ends_what_is_in_flight_once(session, server, gate, exporter, registry):
    resp = await session.get(server.make_url("/stall"))
    await gate.reached.wait()
    registry.close()
    span = assert_done(exporter, registry, EndReason.SHUTDOWN, StatusCode.ERROR)
    assert span.attributes["error.type"] == "shutdown"
    resp.release()  # a late signal: no second end
    assert len(exporter.get_finished_spans()) == 1


async def test_a_span_the_registry_cannot_hold_is_ended_not_lost(
    session, server, exporter, registry, monkeypatch
):
    def refuse(key, entry):
        raise RuntimeError("registry refused")

    monkeypatch.setattr(registry, "register", refuse)
    async with session.get(server.make_url("/json")) as resp:
        assert await resp.json() == {"ok": True}  # the request itself is untouched
    span = only_span(exporter)
    assert span.end_time is not None and "llm_tracing.end_reason" not in span.attributes
    assert registry.stats().internal_errors == 1 and len(registry) == 0
