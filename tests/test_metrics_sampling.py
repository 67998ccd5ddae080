"""Metrics count every request, whether or not the sampler kept its span."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from aiohttp_llm_tracing import create_trace_config
from aiohttp_llm_tracing.mock_llm import MockLLMServer

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    out.setdefault(metric.name, []).append((dict(point.attributes), point))
    return out


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, ALWAYS_ON], ids=["sampled out", "sampled"])
async def test_every_request_is_counted_whatever_the_sampler(sampler: Any) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    config = create_trace_config(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        sweep_interval=None,
    )
    stream = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with MockLLMServer() as server, aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(f"{server.base_url}/chat/completions", json=BODY) as resp:
            await resp.read()
        async with s.post(f"{server.base_url}/chat/completions", json=stream) as resp:
            await resp.read()
        async with s.get(f"http://127.0.0.1:{server.port}/plain") as resp:
            await resp.read()
        async with s.get(f"http://127.0.0.1:{server.port}/no-such-path") as resp:
            await resp.read()
    assert len(exporter.get_finished_spans()) == (0 if sampler is ALWAYS_OFF else 4)
    points = _points(reader)
    http = {
        attrs["http.response.status_code"]: point
        for attrs, point in points["http.client.request.duration"]
    }
    assert sorted(http) == [200, 404]
    assert all(point.count == 1 and point.sum > 0 for point in http.values())
    tokens = {a["gen_ai.token.type"]: (a, p) for a, p in points["gen_ai.client.token.usage"]}
    attrs, point = tokens["input"]
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.model"]
    assert point.count == 2 and point.sum > 0  # the JSON call and the stream
    assert sum(p.count for _, p in points["gen_ai.client.operation.duration"]) == 2
    ((_, ttfc),) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert ttfc.count == 1 and ttfc.sum > 0
    stats = config.registry.stats()  # type: ignore[attr-defined]
    assert stats.in_flight == 0 and stats.ended_total == 4 and stats.internal_errors == 0


@pytest.mark.parametrize("metrics_on", [False, True], ids=["metrics off", "metrics on"])
async def test_a_sampled_out_call_copies_its_bodies_only_for_the_metrics(
    metrics_on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp_llm_tracing import _llm
    from aiohttp_llm_tracing._metrics import Metrics

    fed: list[int] = []
    feed = _llm.LLMCall.feed_request
    monkeypatch.setattr(
        _llm.LLMCall, "feed_request", lambda call, chunk: fed.append(1) or feed(call, chunk)
    )
    monkeypatch.setattr(Metrics, "enabled", property(lambda self: metrics_on))
    config = create_trace_config(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF), sweep_interval=None
    )
    async with MockLLMServer() as server, aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(f"{server.base_url}/chat/completions", json=BODY) as resp:
            assert (await resp.json())["choices"]
    assert len(fed) == (1 if metrics_on else 0)
    stats = config.registry.stats()  # type: ignore[attr-defined]
    assert stats.in_flight == 0 and stats.ended_total == 1 and stats.internal_errors == 0
