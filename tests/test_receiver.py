"""End-to-end tests for the local OTLP receivers and the rich trace renderer.

The real OpenTelemetry OTLP exporters are used on the sending side so the receivers are
checked against what production code actually puts on the wire.
"""

from __future__ import annotations

import gc
import gzip
import json
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from rich.console import Console

from aiohttp_llm_tracing.receiver import (
    OTLPGrpcReceiver,
    OTLPHttpReceiver,
    ReceivedSpan,
    spans_from_request,
)
from aiohttp_llm_tracing.render import build_trees, print_trees, spans_to_json

TRACES_PATH = "/api/public/otel/v1/traces"


def _provider(exporter: SpanExporter) -> tuple[TracerProvider, SpanProcessor]:
    provider = TracerProvider(resource=Resource.create({"service.name": "receiver-tests"}))
    processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return provider, processor


def _emit_parent_and_child(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("tests.receiver")
    with tracer.start_as_current_span("agent.run", kind=SpanKind.INTERNAL) as parent:
        parent.set_attribute("session.id", "sess-1")
        parent.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as child:
            child.set_attributes(
                {
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 12,
                    "gen_ai.response.time_to_first_chunk": 0.25,
                    "llm_tracing.streamed": True,
                    "gen_ai.response.finish_reasons": ["stop", "length"],
                    "llm_tracing.retry_delays": [1, 2],
                }
            )
            child.add_event("first_token", {"llm_tracing.chunk_index": 0})
            child.set_status(Status(StatusCode.ERROR, "upstream said no"))


@pytest.fixture
def http_receiver() -> Iterator[OTLPHttpReceiver]:
    with OTLPHttpReceiver(require_auth="Basic cGs6c2s=") as receiver:
        yield receiver


def test_grpc_exporter_round_trip(grpc_receiver: OTLPGrpcReceiver) -> None:
    exporter = GrpcSpanExporter(
        endpoint=grpc_receiver.endpoint,
        insecure=True,
        timeout=5,
        headers={"x-test-header": "hello"},
    )
    provider, _ = _provider(exporter)
    try:
        _emit_parent_and_child(provider)
        assert provider.force_flush(10_000)
        assert grpc_receiver.wait_for(2, timeout=10)
    finally:
        provider.shutdown()

    by_name = {s.name: s for s in grpc_receiver.spans()}
    parent, child = by_name["agent.run"], by_name["chat gpt-4o"]

    assert len(parent.trace_id) == 32 and len(parent.span_id) == 16
    assert parent.parent_span_id is None
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert child.kind == Span.SpanKind.SPAN_KIND_CLIENT
    assert parent.kind == Span.SpanKind.SPAN_KIND_INTERNAL

    assert child.attributes == {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.response.time_to_first_chunk": 0.25,
        "llm_tracing.streamed": True,
        "gen_ai.response.finish_reasons": ("stop", "length"),
        "llm_tracing.retry_delays": (1, 2),
    }
    # bool must not collapse into int (or vice versa) on the way through.
    assert type(child.attributes["llm_tracing.streamed"]) is bool
    assert type(child.attributes["gen_ai.usage.input_tokens"]) is int

    assert (child.status_code, child.status_message) == (2, "upstream said no")
    assert parent.status_code == 1
    assert child.events == [("first_token", {"llm_tracing.chunk_index": 0})]
    assert child.resource["service.name"] == "receiver-tests"
    assert child.scope == "tests.receiver"
    assert 0 <= child.duration_ms <= parent.duration_ms

    assert grpc_receiver.metadata
    assert all(md.get("x-test-header") == "hello" for md in grpc_receiver.metadata)


def test_grpc_receiver_on_spans_wait_timeout_and_clear() -> None:
    seen: list[ReceivedSpan] = []
    with OTLPGrpcReceiver(on_spans=seen.extend) as receiver:
        assert receiver.wait_for(1, timeout=0.05) is False
        provider, _ = _provider(GrpcSpanExporter(endpoint=receiver.endpoint, insecure=True))
        try:
            provider.get_tracer("t").start_span("solo").end()
            assert provider.force_flush(10_000)
            assert receiver.wait_for(1)
        finally:
            provider.shutdown()
        assert [s.name for s in seen] == ["solo"]
        receiver.clear()
        assert receiver.spans() == [] and receiver.metadata == []


def test_a_receiver_that_keeps_nothing_only_hands_batches_on() -> None:
    seen: list[ReceivedSpan] = []
    with OTLPGrpcReceiver(on_spans=seen.extend, keep=False) as receiver:
        provider, _ = _provider(GrpcSpanExporter(endpoint=receiver.endpoint, insecure=True))
        try:
            for name in ("a", "b"):
                provider.get_tracer("t").start_span(name).end()
            assert provider.force_flush(10_000)
            assert receiver.wait_for(2)  # still counted
        finally:
            provider.shutdown()
        assert sorted(s.name for s in seen) == ["a", "b"]
        assert receiver.spans() == [] and receiver.metadata == []  # nothing held


def test_http_exporter_round_trip_with_gzip(http_receiver: OTLPHttpReceiver) -> None:
    exporter = HttpSpanExporter(
        endpoint=http_receiver.base_url + TRACES_PATH,
        headers={"Authorization": "Basic cGs6c2s=", "x-langfuse-ingestion-version": "4"},
        compression=Compression.Gzip,
        timeout=5,
    )
    provider, _ = _provider(exporter)
    try:
        _emit_parent_and_child(provider)
        assert provider.force_flush(10_000)
        assert http_receiver.wait_for(2, timeout=10)
    finally:
        provider.shutdown()

    requests = http_receiver.requests
    assert [r.status for r in requests] == [200] * len(requests)
    req = requests[0]
    assert req.path == TRACES_PATH
    assert req.headers["authorization"] == "Basic cGs6c2s="
    assert req.headers["x-langfuse-ingestion-version"] == "4"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/x-protobuf"
    assert http_receiver.other_paths == []

    by_name = {s.name: s for s in http_receiver.spans()}
    parent, child = by_name["agent.run"], by_name["chat gpt-4o"]
    assert child.parent_span_id == parent.span_id
    assert child.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert child.attributes["gen_ai.response.time_to_first_chunk"] == 0.25
    assert child.status_code == 2
    assert [name for name, _ in child.events] == ["first_token"]
    assert [s for r in requests for s in r.spans] == http_receiver.spans()


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read(), err.headers.get("Content-Type", "")


def _one_span_request() -> bytes:
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name="manual",
        start_time_unix_nano=1,
        end_time_unix_nano=2_000_001,
    )
    req = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    return req.SerializeToString()


def test_http_receiver_responses_and_rejections(http_receiver: OTLPHttpReceiver) -> None:
    url = http_receiver.base_url + TRACES_PATH
    good = {"Content-Type": "application/x-protobuf", "Authorization": "Basic cGs6c2s="}
    body = _one_span_request()

    # Success replies with an empty protobuf body, never JSON.
    assert _post(url, gzip.compress(body), {**good, "Content-Encoding": "gzip"}) == (
        200,
        b"",
        "application/x-protobuf",
    )
    assert _post(url, body, good)[0] == 200
    assert _post(url, body, {**good, "Authorization": "Basic wrong"})[0] == 401
    assert _post(url, b"{}", {**good, "Content-Type": "application/json"})[0] == 400
    assert _post(url, b"\xff\xff\xff", good)[0] == 400
    assert _post(http_receiver.base_url + "/v1/traces", body, good)[0] == 404

    assert [r.status for r in http_receiver.requests] == [200, 200, 401, 400, 400]
    assert http_receiver.other_paths == ["/v1/traces"]
    spans = http_receiver.spans()
    assert [s.name for s in spans] == ["manual", "manual"]
    assert spans[0].trace_id == bytes(range(16)).hex()
    assert spans[0].duration_ms == 2.0


@pytest.mark.asyncio
async def test_http_receiver_from_async_code_stops_cleanly() -> None:
    gc.collect()  # what earlier tests left for the collector is not this receiver's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        receiver = OTLPHttpReceiver()
        receiver.start()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    receiver.base_url + TRACES_PATH,
                    data=_one_span_request(),
                    headers={"Content-Type": "application/x-protobuf"},
                ) as resp,
            ):
                assert resp.status == 200
                assert await resp.read() == b""
            assert receiver.wait_for(1, timeout=5)
        finally:
            receiver.stop()
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, (ResourceWarning, RuntimeWarning))]
    assert not [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in leaks]
    assert not [t for t in threading.enumerate() if t.name == "otlp-http-receiver"]


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def test_spans_from_request_decodes_all_any_value_kinds() -> None:
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        parent_span_id=b"\x03" * 8,
        name="decode",
        attributes=[
            _kv("b", AnyValue(bytes_value=b"\x00\x01")),
            _kv("d", AnyValue(double_value=1.5)),
            _kv("empty", AnyValue()),
            _kv(
                "arr",
                AnyValue(
                    array_value=ArrayValue(
                        values=[AnyValue(double_value=0.5), AnyValue(bool_value=False)]
                    )
                ),
            ),
            _kv(
                "kv",
                AnyValue(
                    kvlist_value=KeyValueList(values=[_kv("inner", AnyValue(string_value="x"))])
                ),
            ),
        ],
    )
    req = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    (decoded,) = spans_from_request(req)
    assert decoded.parent_span_id == "03" * 8
    assert decoded.attributes == {
        "b": b"\x00\x01",
        "d": 1.5,
        "empty": None,
        "arr": (0.5, False),
        "kv": {"inner": "x"},
    }
    assert json.loads(json.dumps(spans_to_json([decoded])))[0]["attributes"]["b"] == "AAE="


def _span(
    name: str,
    span_id: str,
    parent: str | None,
    start_ms: int,
    end_ms: int,
    trace_id: str = "a" * 32,
    status: tuple[int, str] = (0, ""),
    **attributes: object,
) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=1,
        start_ns=start_ms * 1_000_000,
        end_ns=end_ms * 1_000_000,
        attributes={k.replace("__", "."): v for k, v in attributes.items()},
        status_code=status[0],
        status_message=status[1],
    )


def test_render_nests_children_and_shows_llm_details() -> None:
    spans = [
        _span(
            "chat [gpt-4o]",
            "2" * 16,
            "1" * 16,
            10,
            510,
            gen_ai__request__model="gpt-4o",
            gen_ai__response__model="gpt-4o-2024-08-06",
            gen_ai__usage__input_tokens=12,
            gen_ai__usage__output_tokens=34,
            gen_ai__response__time_to_first_chunk=0.15,
            llm_tracing__end_reason="completed",
            http__response__status_code=200,
            user__id="u-7",
        ),
        _span("agent.run", "1" * 16, None, 0, 600, status=(1, ""), session__id="sess-9"),
        _span("orphan", "3" * 16, "9" * 16, 700, 710, status=(2, "bad\nthing")),
        _span("other-trace", "4" * 16, None, 1, 2, trace_id="b" * 32, error__type="Timeout"),
    ]
    console = Console(record=True, width=120, color_system=None)
    print_trees(spans, console=console)
    lines = console.export_text().splitlines()

    def line_of(text: str) -> int:
        (idx,) = [i for i, line in enumerate(lines) if text in line]
        return idx

    trace_a, root, child, orphan = (
        line_of("a" * 32),
        line_of("agent.run"),
        line_of("chat [gpt-4o]"),  # escaped markup must come out literally
        line_of("orphan"),
    )
    trace_b = line_of("b" * 32)
    assert trace_a < root < child < orphan < trace_b
    indent = {i: len(lines[i]) - len(lines[i].lstrip(" │├└─")) for i in (root, child, orphan)}
    assert indent[child] > indent[root] == indent[orphan]

    assert "session=sess-9" in lines[trace_a] and "user=u-7" in lines[trace_a]
    assert "tokens=12/34" in lines[child]
    assert "model=gpt-4o→gpt-4o-2024-08-06" in lines[child]
    assert "ttft=150.0 ms" in lines[child]
    assert "end=completed" in lines[child] and "http=200" in lines[child]
    assert "500.0 ms" in lines[child]
    assert "OK" in lines[root]
    assert "ERROR: bad thing" in lines[orphan]  # newline in the message flattened
    assert "error.type=Timeout" in lines[line_of("other-trace")]
    assert len(build_trees(spans)) == 2
