"""Span ends queued for the event loop's next turn (``_deferred``): when they are done, by whom,
and that none is lost or done twice."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiohttp_llm_tracing import SpanRegistry, _deferred, create_trace_config
from aiohttp_llm_tracing._inflight import HttpSpan
from aiohttp_llm_tracing._reasons import EndReason
from conftest import free_port

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER  # noqa: E402

pytest_plugins = ["llm_fixtures"]
CHAT = {"model": "gpt-4o-mini", "messages": USER}


class Queued:
    """An end to queue: ``finish_deferred()`` calls ``action``."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action = action

    def finish_deferred(self) -> None:
        self.action()


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[None]:
    _deferred.drain()
    yield
    _deferred.drain()
    assert _deferred.pending() == 0


def raw_pipeline(batch: bool = False) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider as an application builds it, read without any flush of ours."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = (
        BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)
        if batch
        else SimpleSpanProcessor(exporter)
    )
    provider.add_span_processor(processor)
    return provider, exporter


async def test_an_llm_calls_span_ends_on_the_loops_next_turn(llm_server):
    provider, exporter = raw_pipeline()
    registry = SpanRegistry(sweep_interval=None)
    config = create_trace_config(tracer_provider=provider, registry=registry)
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        resp = await s.post(f"{llm_server.base_url}/chat/completions", json=CHAT)
        body = await resp.read()
        # Popped from the registry at the signal (exactly once), ended a turn later.
        assert registry.stats().in_flight == 0
        assert registry.stats().ended == {EndReason.BODY_COMPLETE: 1}
        assert exporter.get_finished_spans() == ()
        assert _deferred.pending() == 1
        before_turn = time.time_ns()
        await asyncio.sleep(0)
        (span,) = exporter.get_finished_spans()
        resp.release()
    assert body
    assert span.attributes["llm_tracing.end_reason"] == EndReason.BODY_COMPLETE
    assert span.attributes["gen_ai.response.model"]
    # The end time is the signal's, taken before the turn that did the end's work.
    assert span.start_time <= span.end_time <= before_turn
    provider.shutdown()


async def test_a_plain_requests_span_ends_at_once(server):
    provider, exporter = raw_pipeline()
    config = create_trace_config(
        tracer_provider=provider, registry=SpanRegistry(sweep_interval=None)
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.get(server.make_url("/json")) as resp:
            await resp.read()
            # Its end is small: a turn would cost more than it saves.
            assert _deferred.pending() == 0
            assert len(exporter.get_finished_spans()) == 1
    provider.shutdown()


@pytest.mark.parametrize("batch", [False, True], ids=["simple", "batch"])
async def test_an_sdk_providers_force_flush_does_the_queued_ends(llm_server, batch):
    provider, exporter = raw_pipeline(batch)
    config = create_trace_config(
        tracer_provider=provider, registry=SpanRegistry(sweep_interval=None)
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        for _ in range(2):
            async with s.post(f"{llm_server.base_url}/chat/completions", json=CHAT) as resp:
                await resp.read()
                assert _deferred.pending() == 1
                # No turn of the loop yet: a flush right after the call still exports it.
                assert provider.force_flush()
        assert len(exporter.get_finished_spans()) == 2
    # Put first in the provider's processors, once.
    processors = provider._active_span_processor._span_processors
    assert processors[0] is _deferred._DRAIN_FIRST
    assert processors.count(_deferred._DRAIN_FIRST) == 1
    provider.shutdown()


async def test_an_sdk_providers_shutdown_does_the_queued_ends(llm_server):
    provider, exporter = raw_pipeline(batch=True)
    config = create_trace_config(
        tracer_provider=provider, registry=SpanRegistry(sweep_interval=None)
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(f"{llm_server.base_url}/chat/completions", json=CHAT) as resp:
            await resp.read()
            assert _deferred.pending() == 1
            provider.shutdown()
    assert len(exporter.get_finished_spans()) == 1


def test_asyncio_run_returns_with_the_last_queued_end_done():
    done: list[str] = []

    async def main() -> None:
        assert _deferred.defer(Queued(lambda: done.append("x")))

    asyncio.run(main())
    assert done == ["x"]


def test_with_no_running_loop_nothing_is_queued():
    assert not _deferred.defer(Queued(lambda: None))
    assert _deferred.pending() == 0


def test_ends_left_by_a_closed_loop_are_done_by_the_next_loop():
    done: list[str] = []

    async def queue_then_stop() -> None:
        _deferred.defer(Queued(lambda: done.append("first")))
        asyncio.get_running_loop().stop()  # the drain's turn never comes

    loop = asyncio.new_event_loop()
    task = loop.create_task(queue_then_stop())
    loop.run_forever()
    assert task.done()
    loop.close()
    assert done == [] and _deferred.pending() == 1

    async def queue_again() -> None:
        _deferred.defer(Queued(lambda: done.append("second")))

    asyncio.run(queue_again())
    assert done == ["first", "second"]


async def test_one_turn_does_every_end_queued_so_far():
    done: list[int] = []
    for i in range(50):
        _deferred.defer(Queued(lambda i=i: done.append(i)))
    # Capped per turn, the queue outgrew the turns under sustained load: none is left over.
    await asyncio.sleep(0)
    assert done == list(range(50))
    assert _deferred.pending() == 0


async def test_a_failing_end_is_logged_and_the_others_still_run(caplog):
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    _deferred.defer(Queued(broken))
    _deferred.defer(Queued(lambda: done.append("b")))
    with caplog.at_level(logging.ERROR, logger="aiohttp_llm_tracing"):
        await asyncio.sleep(0)
    assert done == ["b"]
    assert "a queued span end failed" in caplog.text


async def test_drains_from_another_thread_and_the_loop_do_each_end_once():
    done: list[int] = []
    lock = threading.Lock()

    def finish(i: int) -> None:
        with lock:
            done.append(i)

    for i in range(2_000):
        _deferred.defer(Queued(lambda i=i: finish(i)))
    worker = threading.Thread(target=_deferred.drain)
    worker.start()
    _deferred.drain()
    worker.join()
    await asyncio.sleep(0)  # the loop's own turn finds nothing left
    assert sorted(done) == list(range(2_000))


async def test_a_failed_requests_span_ends_at_once():
    provider, exporter = raw_pipeline()
    config = create_trace_config(
        tracer_provider=provider, registry=SpanRegistry(sweep_interval=None)
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.get(f"http://127.0.0.1:{free_port()}/")
        # Not queued: a turn would keep the exception, and the request's frames, alive.
        assert _deferred.pending() == 0
        (span,) = exporter.get_finished_spans()
    assert span.attributes["llm_tracing.end_reason"] == EndReason.EXCEPTION
    provider.shutdown()


class _BigCall:
    """Stands in for an LLMCall whose captured bodies are past the deferral limit."""

    def captured_bytes(self) -> int:
        return _deferred.DEFER_MAX_BYTES

    def finish(self, attributes: dict, entry: object, reason: str) -> None:
        attributes["big"] = True


async def test_an_end_with_big_bodies_is_done_at_once():
    provider, exporter = raw_pipeline()
    registry = SpanRegistry(sweep_interval=None)
    span = provider.get_tracer("t").start_span("chat")
    entry = HttpSpan(span, "id", registry, _BigCall())  # type: ignore[arg-type]
    registry.register("id", entry)
    registry.end("id", EndReason.BODY_COMPLETE)
    # Its parse is most of its end: nothing to gain from a turn, and queued ends add up.
    assert _deferred.pending() == 0
    (ended,) = exporter.get_finished_spans()
    assert ended.attributes["big"] is True
    provider.shutdown()
