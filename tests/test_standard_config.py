"""setup_tracing follows the OpenTelemetry SDK's environment rules; the GenAI and HTTP client
metrics reach a real OTLP metrics receiver."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from aiohttp_llm_tracing import create_trace_config, setup_tracing
from aiohttp_llm_tracing._llm import LLMOptions
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.receiver import OTLP_HTTP_TRACES_PATH, OTLPHttpReceiver

ENV = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def exporters(provider: Any) -> list[type]:
    return [type(r._inner) for r in provider._reporting]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, [GrpcSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, [GrpcSpanExporter, ConsoleSpanExporter]),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [HttpSpanExporter]),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            [GrpcSpanExporter],
        ),
    ],
)
def test_exporter_and_protocol_follow_the_environment(monkeypatch, env, expected) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider = setup_tracing(set_global=False)
    assert exporters(provider) == expected
    provider.shutdown(timeout=1)


def test_an_explicit_exporter_and_protocol_win(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = setup_tracing(exporter="otlp", protocol="http/protobuf", set_global=False)
    assert exporters(provider) == [HttpSpanExporter]
    provider.shutdown(timeout=1)
    with pytest.raises(ValueError):
        setup_tracing(exporter="otlp", protocol="http/json", set_global=False)


@pytest.mark.parametrize(
    "env, argument, expected",
    [
        ({}, None, "aiohttp-llm-tracing"),
        ({"OTEL_SERVICE_NAME": "svc-env"}, None, "svc-env"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-res,team=ai"}, None, "svc-res"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=svc-res"}, "svc-arg", "svc-arg"),
    ],
)
def test_resource_is_merged_as_the_sdk_does(monkeypatch, env, argument, expected) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider = setup_tracing(exporter="none", service_name=argument, set_global=False)
    assert provider.resource.attributes["service.name"] == expected
    if "team=ai" in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        assert provider.resource.attributes["team"] == "ai"
    provider.shutdown(timeout=1)


@pytest.mark.parametrize(
    "value, on",
    [
        ("true", True),
        ("SPAN_ONLY", True),
        ("SPAN_AND_EVENT", True),
        ("false", False),
        ("NO_CONTENT", False),
        ("EVENT_ONLY", False),
    ],
)
def test_content_capture_values_of_the_genai_utilities(monkeypatch, value, on) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    options = LLMOptions.from_env(
        capture_content=None,
        mask=None,
        max_body_bytes=None,
        max_attribute_length=None,
        provider_name=None,
        adapters=None,
    )
    assert options.capture_content is on


async def test_spans_over_otlp_http_protobuf(monkeypatch) -> None:
    receiver = OTLPHttpReceiver(paths=(OTLP_HTTP_TRACES_PATH,))
    receiver.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    try:
        provider = setup_tracing(set_global=False)
        config = create_trace_config(tracer_provider=provider, sweep_interval=None)
        async with MockLLMServer() as server, aiohttp.ClientSession(trace_configs=[config]) as s:
            async with s.get(f"http://127.0.0.1:{server.port}/plain") as resp:
                await resp.read()
        assert provider.flush(10) is True
        assert receiver.wait_for(1, timeout=10)
        assert [span.name for span in receiver.spans()] == ["GET"]
        provider.shutdown()
    finally:
        receiver.stop()


class _MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """A real OTLP/gRPC metrics endpoint that keeps every data point it is sent."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[Any]] = {}
        self.changed = threading.Condition()

    def Export(self, request: Any, context: Any) -> Any:
        with self.changed:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        self.metrics.setdefault(metric.name, []).append(metric)
            self.changed.notify_all()
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def wait_for(self, names: set[str], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: names <= set(self.metrics), timeout)


@pytest.fixture
def metrics_receiver() -> Iterator[tuple[_MetricsReceiver, str]]:
    receiver = _MetricsReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, f"http://127.0.0.1:{port}"
    server.stop(grace=None)


def _points(metric: Any) -> list[tuple[dict[str, Any], Any]]:
    out = []
    for point in metric.histogram.data_points:
        attrs = {a.key: _value(a.value) for a in point.attributes}
        out.append((attrs, point))
    return out


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


async def test_genai_and_http_metrics_reach_an_otlp_receiver(metrics_receiver, monkeypatch):
    receiver, endpoint = metrics_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "true")
    provider = setup_tracing(exporter="none", metrics=True, set_global=False)
    config = create_trace_config(
        tracer_provider=provider, meter_provider=provider.meter_provider, sweep_interval=None
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}
    async with MockLLMServer() as server, aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.post(f"{server.base_url}/chat/completions", json=body) as resp:
            await resp.read()
        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with s.post(f"{server.base_url}/chat/completions", json=stream) as resp:
            await resp.read()
        async with s.get(f"http://127.0.0.1:{server.port}/plain") as resp:
            await resp.read()
    provider.flush(10)
    names = {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "http.client.request.duration",
    }
    assert receiver.wait_for(names, timeout=15), set(receiver.metrics)
    tokens = _points(receiver.metrics["gen_ai.client.token.usage"][-1])
    by_type = {attrs["gen_ai.token.type"]: (attrs, point) for attrs, point in tokens}
    attrs, point = by_type["input"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert point.count == 2 and point.sum > 0  # the JSON call and the stream
    assert list(point.explicit_bounds)[:4] == [1, 4, 16, 64]
    assert by_type["output"][1].count == 2
    (ttfc_attrs, ttfc), *_ = _points(
        receiver.metrics["gen_ai.client.operation.time_to_first_chunk"][-1]
    )
    assert ttfc.count == 1 and ttfc_attrs["gen_ai.request.model"] == "gpt-4o-mini"
    duration = _points(receiver.metrics["gen_ai.client.operation.duration"][-1])
    assert sum(p.count for _, p in duration) == 2
    assert list(duration[0][1].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    ((http_attrs, http),) = _points(receiver.metrics["http.client.request.duration"][-1])
    assert http.count == 1
    assert http_attrs["http.request.method"] == "GET"
    assert http_attrs["http.response.status_code"] == 200
    provider.shutdown()


def test_metrics_cost_nothing_without_a_meter_provider() -> None:
    # A fresh interpreter: the global meter provider is still the API's placeholder there.
    script = (
        "from aiohttp_llm_tracing._metrics import Metrics\n"
        "from aiohttp_llm_tracing._trace_config import SCHEMA_URL\n"
        "from opentelemetry import metrics\n"
        "m = Metrics(None, SCHEMA_URL)\n"
        "print(m.enabled)\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "metrics.set_meter_provider(MeterProvider())\n"
        "print(m.enabled)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]  # and on once the application sets one
