"""Generation spans across a real wire: OTLP/gRPC to a collector, OTLP/HTTP to a Langfuse shape.

``setup_tracing`` builds the provider; the receivers decode what really arrived.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind

from aiohttp_llm_tracing import setup_tracing
from aiohttp_llm_tracing.receiver import OTLPHttpReceiver, ReceivedSpan
from conftest import free_port

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import ANSWER, API_KEY, USER, openai_client  # noqa: E402

pytest_plugins = ["llm_fixtures"]

PK, SK = "pk-lf-test", "sk-lf-test"


@pytest.fixture
def http_receiver() -> Iterator[OTLPHttpReceiver]:
    with OTLPHttpReceiver() as receiver:
        yield receiver


async def three_calls(base_url: str, provider) -> None:
    """A JSON chat, a stream and an embedding through the openai SDK."""
    from aiohttp_llm_tracing import create_trace_config

    config = create_trace_config(tracer_provider=provider, sweep_interval=None)
    async with openai_client(base_url, config) as client:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, temperature=0.2, max_tokens=50
        )
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
        await client.embeddings.create(model="text-embedding-3-small", input="hello")
    # Each call ended on its own path; close() would otherwise end a leaked one as "shutdown".
    assert len(config.registry) == 0
    config.registry.close()


def by_kind(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, ReceivedSpan, ReceivedSpan]:
    assert len(spans) == 3, [s.name for s in spans]
    chat, stream, embedding = sorted(spans, key=lambda s: s.start_ns)
    return chat, stream, embedding


def assert_generations(spans: list[ReceivedSpan]) -> None:
    chat, stream, embedding = by_kind(spans)
    for span in spans:
        assert span.kind == SpanKind.CLIENT.value + 1  # OTLP's enum is the SDK's plus one
        assert span.parent_span_id is None
        assert span.scope == "aiohttp_llm_tracing"
        assert span.resource["service.name"] == "llm-tests"
        for value in span.attributes.values():
            assert API_KEY not in str(value)
        assert span.attributes["llm_tracing.end_reason"] == "body_complete"

    a = chat.attributes
    assert chat.name == "chat gpt-4o-mini"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert isinstance(a["gen_ai.usage.input_tokens"], int)
    assert json.loads(a["langfuse.observation.input"]) == USER
    assert json.loads(a["langfuse.observation.output"]) == {"role": "assistant", "content": ANSWER}
    assert json.loads(a["langfuse.observation.model.parameters"]) == {
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert set(json.loads(a["langfuse.observation.usage_details"])) == {"input", "output", "total"}

    s = stream.attributes
    assert stream.name == "chat gpt-4o-mini"
    assert s["gen_ai.request.stream"] is True
    assert s["gen_ai.response.time_to_first_chunk"] > 0
    assert s["langfuse.observation.completion_start_time"].endswith("+00:00")
    assert json.loads(s["langfuse.observation.output"])["content"] == ANSWER

    e = embedding.attributes
    assert embedding.name == "embeddings text-embedding-3-small"
    assert e["langfuse.observation.type"] == "embedding"
    assert e["gen_ai.embeddings.dimension.count"] == 8
    assert e["gen_ai.usage.input_tokens"] == 1


async def test_otlp_grpc_export(llm_server, grpc_receiver, monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-tests")
    provider = setup_tracing(
        exporter="otlp", endpoint=grpc_receiver.endpoint, insecure=True, set_global=False
    )
    try:
        await three_calls(llm_server.base_url, provider)
        assert provider.flush(timeout=5)
        assert grpc_receiver.wait_for(3, timeout=5)
    finally:
        assert provider.shutdown(timeout=5)
    assert_generations(grpc_receiver.spans())


async def test_langfuse_export(llm_server, http_receiver, monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-tests")
    provider = setup_tracing(
        exporter="langfuse", langfuse_host=http_receiver.base_url, set_global=False
    )
    try:
        await three_calls(llm_server.base_url, provider)
        assert provider.flush(timeout=5)
        assert http_receiver.wait_for(3, timeout=5)
    finally:
        assert provider.shutdown(timeout=5)
    requests = http_receiver.requests
    assert requests and all(r.status == 200 for r in requests)
    assert http_receiver.other_paths == []
    for request in requests:
        headers = request.headers
        assert request.path == "/api/public/otel/v1/traces"
        assert (
            headers["authorization"] == "Basic " + base64.b64encode(f"{PK}:{SK}".encode()).decode()
        )
        assert headers["x-langfuse-ingestion-version"] == "4"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["content-encoding"] == "gzip"
    assert_generations(http_receiver.spans())


@pytest.mark.parametrize("exporter", ["otlp", "langfuse"])
async def test_shutdown_is_bounded_when_the_endpoint_is_down(llm_server, monkeypatch, exporter):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PK)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SK)
    port = free_port()
    provider = setup_tracing(
        exporter=exporter,
        endpoint=f"127.0.0.1:{port}",
        insecure=True,
        langfuse_host=f"http://127.0.0.1:{port}",
        set_global=False,
        export_timeout=1.0,
    )
    await three_calls(llm_server.base_url, provider)
    started = time.monotonic()
    provider.shutdown(timeout=1)
    assert time.monotonic() - started < 1.5


async def test_flush_and_shutdown_report_what_happened(llm_server, grpc_receiver):
    provider = setup_tracing(
        exporter="otlp", endpoint=grpc_receiver.endpoint, insecure=True, set_global=False
    )
    await three_calls(llm_server.base_url, provider)
    assert provider.flush(timeout=5) is True
    assert provider.shutdown(timeout=5) is True
    assert provider.shutdown(timeout=5) is True  # a second call says what the first did
    assert provider.flush(timeout=5) is False  # nothing can be exported after shutdown
