"""End attributes written without the SDK's second check (``_span_write``): what lands on the
span is exactly what ``span.set_attributes`` would have stored, on every path."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from aiohttp_llm_tracing import SpanRegistry, _deferred, _span_write, create_trace_config
from aiohttp_llm_tracing._exportable import ExportableAttributes, exportable_attributes
from aiohttp_llm_tracing._span_write import set_end_attributes

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER  # noqa: E402

pytest_plugins = ["llm_fixtures"]

START = {"http.request.method": "POST", "server.port": 443}
END_SHAPES = [
    {"llm_tracing.end_reason": "body_complete", "http.response.status_code": 200},
    {
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.stream": True,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.request.stop_sequences": ("a", "b"),
        "empty": [],
        "big": 1 << 70,
        "surrogate": "x\udc00",
        "mixed": [1, "a"],
        "obj": {"k": 1},
    },
]


def _pair(**limits: Any) -> tuple[Any, Any]:
    tracer = TracerProvider(span_limits=SpanLimits(**limits)).get_tracer("t")
    return (
        tracer.start_span("sdk", attributes=START),
        tracer.start_span("ours", attributes=START),
    )


def _stored(span: Any) -> list[tuple[str, Any, type]]:
    return [(k, v, type(v)) for k, v in span.attributes.items()]


@pytest.mark.parametrize("end", END_SHAPES, ids=["plain", "llm"])
def test_clean_attributes_are_stored_as_the_sdk_stores_them(end):
    sdk, ours = _pair()
    sdk.set_attributes(exportable_attributes(end))
    attributes = exportable_attributes(end)
    assert type(attributes) is ExportableAttributes
    assert _span_write._write(ours, attributes)  # the fast path, not the fallback
    assert _stored(ours) == _stored(sdk)
    assert ours.dropped_attributes == sdk.dropped_attributes == 0


@pytest.mark.parametrize(
    "limits, end",
    [
        # The SDK truncates long strings: only it knows how.
        ({"max_span_attribute_length": 3}, {"gen_ai.response.model": "gpt-4o-mini"}),
        # Past the count limit the SDK drops the oldest and counts them.
        ({"max_span_attributes": 3}, {"a": 1, "b": "two"}),
    ],
    ids=["value-length limit", "count limit"],
)
def test_a_span_with_limits_takes_the_sdks_path(limits, end):
    sdk, ours = _pair(**limits)
    sdk.set_attributes(exportable_attributes(end))
    attributes = exportable_attributes(end)
    assert not _span_write._write(ours, attributes)
    set_end_attributes(ours, attributes)
    assert _stored(ours) == _stored(sdk)
    assert ours.dropped_attributes == sdk.dropped_attributes


def test_a_key_already_set_is_moved_as_the_sdk_moves_it():
    sdk, ours = _pair()
    end = {"gen_ai.x": "y", "http.request.method": "GET"}
    sdk.set_attributes(exportable_attributes(end))
    set_end_attributes(ours, exportable_attributes(end))
    assert _stored(ours) == _stored(sdk)
    assert list(ours.attributes)[-1] == "http.request.method"


def test_nothing_is_written_to_an_ended_span(span_warnings):
    _, ours = _pair()
    ours.end()
    set_end_attributes(ours, exportable_attributes({"late": 1}))
    assert "late" not in ours.attributes
    # The SDK's own warning: its path was taken (expected here, so not left for the fixture).
    assert span_warnings.messages == ["Setting attribute on ended span."]
    span_warnings.messages.clear()


def test_a_span_class_with_its_own_set_attributes_gets_the_call():
    seen: list[dict[str, Any]] = []

    class Audited(SdkSpan):
        def set_attributes(self, attributes):  # type: ignore[no-untyped-def]
            seen.append(dict(attributes))
            super().set_attributes(attributes)

    span = Audited("x", context=None)
    span.start()
    set_end_attributes(span, exportable_attributes({"k": "v"}))
    assert seen == [{"k": "v"}]
    assert span.attributes["k"] == "v"


def test_other_spans_and_plain_dicts_take_the_public_call(monkeypatch):
    set_end_attributes(INVALID_SPAN, exportable_attributes({"k": "v"}))  # no error
    _, ours = _pair()
    calls: list[Any] = []
    monkeypatch.setattr(type(ours), "set_attributes", lambda self, a: calls.append(a))
    set_end_attributes(ours, {"k": "v"})  # not through the gate: not known to be clean
    assert calls == [{"k": "v"}]


def test_sdk_internals_that_changed_fall_back_for_good(monkeypatch):
    class Moved(SdkSpan):
        pass

    span = Moved("x", context=None)
    span.start()
    del span._lock  # as if a future SDK renamed it
    calls: list[Any] = []
    monkeypatch.setattr(Moved, "set_attributes", lambda self, a: calls.append(a))
    monkeypatch.setitem(_span_write._PLAIN, Moved, True)
    set_end_attributes(span, exportable_attributes({"k": "v"}))
    assert calls == [{"k": "v"}]
    assert _span_write._PLAIN[Moved] is False


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_real_calls_span_is_the_same_either_way(llm_server, monkeypatch, stream):
    """The openai-shaped call through aiohttp, ended with and without the fast write."""

    async def one_call() -> dict[str, Any]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        config = create_trace_config(
            tracer_provider=provider, registry=SpanRegistry(sweep_interval=None)
        )
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": USER}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        async with aiohttp.ClientSession(trace_configs=[config]) as s:
            async with s.post(f"{llm_server.base_url}/chat/completions", json=body) as resp:
                await resp.read()
        _deferred.drain()
        (span,) = exporter.get_finished_spans()
        provider.shutdown()
        return dict(span.attributes or {})

    write, written = _span_write._write, []
    monkeypatch.setattr(_span_write, "_write", lambda *a: written.append(write(*a)) or written[-1])
    fast = await one_call()
    assert written == [True]
    monkeypatch.setattr(_span_write, "_write", lambda span, attributes: False)
    public = await one_call()
    assert list(fast) == list(public)
    assert [type(v) for v in fast.values()] == [type(v) for v in public.values()]
    # The request's ID and the time to its first chunk differ from one call to the next.
    volatile = {"llm_tracing.request_id", "langfuse.observation.completion_start_time"}
    volatile.add("gen_ai.response.time_to_first_chunk")
    assert {k: v for k, v in fast.items() if k not in volatile} == {
        k: v for k, v in public.items() if k not in volatile
    }
    assert "gen_ai.response.finish_reasons" in fast
