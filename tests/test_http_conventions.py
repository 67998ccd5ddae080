"""Parity with OpenTelemetry's aiohttp-client instrumentation: method names, hooks, filters and
the HTTP conventions' environment variables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from aiohttp_llm_tracing import create_trace_config
from aiohttp_llm_tracing._trace_config import SCHEMA_URL
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.testing import TracingFixture


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    async def any_method(request: web.Request) -> web.Response:
        return web.json_response(
            {"method": request.method},
            headers={"x-ratelimit-remaining-requests": "42", "x-request-id": "req-1"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_method)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _spans(url: str, method: str = "GET", **options: Any) -> tuple[list[Any], Any]:
    tracing = TracingFixture()
    config = create_trace_config(
        tracer_provider=tracing.provider, registry=tracing.registry, **options
    )
    async with aiohttp.ClientSession(trace_configs=[config]) as s:
        async with s.request(method, url) as resp:
            await resp.read()
    spans = tracing.spans()
    stats = tracing.registry.stats()
    tracing.close()
    return spans, stats


@pytest.mark.parametrize("method", ["GET", "QUERY", "PATCH"])
async def test_known_methods_keep_their_name(echo, method):
    (span,), _ = await _spans(f"{echo}/x", method)
    assert span.name == method
    assert span.attributes["http.request.method"] == method
    assert "http.request.method_original" not in span.attributes


async def test_an_unknown_method_is_other_and_the_span_is_named_http(echo):
    (span,), _ = await _spans(f"{echo}/x", "PURGE")
    assert span.name == "HTTP"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"


async def test_the_known_methods_variable_is_honoured(echo, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET,PURGE")
    (purge,), _ = await _spans(f"{echo}/x", "PURGE")
    (post,), _ = await _spans(f"{echo}/x", "POST")
    assert (purge.name, purge.attributes["http.request.method"]) == ("PURGE", "PURGE")
    assert (post.name, post.attributes["http.request.method"]) == ("HTTP", "_OTHER")


async def test_user_info_is_kept_as_redacted(echo):
    url = URL(echo).with_user("alice").with_password("s3cret") / "x"
    (span,), _ = await _spans(str(url.with_query(token="t", q="1")))
    assert span.attributes["url.full"].startswith("http://REDACTED:REDACTED@127.0.0.1:")
    assert span.attributes["url.full"].endswith("/x?token=REDACTED&q=1")


async def test_hooks_see_the_span_and_a_failing_hook_never_reaches_the_caller(echo):
    seen: list[str] = []

    def request_hook(span: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(f"request {params.method}")
        span.set_attribute("custom.request", "yes")

    def response_hook(span: Any, params: Any) -> None:
        seen.append(f"response {params.response.status}")
        raise RuntimeError("a bug in the user's hook")

    (span,), stats = await _spans(
        f"{echo}/x", request_hook=request_hook, response_hook=response_hook
    )
    assert seen == ["request GET", "response 200"]
    assert span.attributes["custom.request"] == "yes"
    assert stats.internal_errors == 1 and stats.ended_total == 1


async def test_url_filter_then_redaction(echo):
    def url_filter(url: URL) -> str:
        return str(url.with_path("/filtered").with_query(url.query))

    (span,), _ = await _spans(f"{echo}/secret/path?api_key=k", url_filter=url_filter)
    assert span.attributes["url.full"].endswith("/filtered?api_key=REDACTED")


@pytest.mark.parametrize(
    "variable", ["OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"]
)
async def test_excluded_urls_get_no_span(echo, monkeypatch, variable):
    monkeypatch.setenv(variable, "health,/internal/.*")
    excluded, stats = await _spans(f"{echo}/internal/metrics")
    assert excluded == [] and stats.started == 0
    kept, _ = await _spans(f"{echo}/api")
    assert len(kept) == 1


async def test_response_headers_are_captured_by_allowlist(echo, monkeypatch):
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", "X-Request-Id,content-type"
    )
    (span,), _ = await _spans(f"{echo}/x")
    assert span.attributes["http.response.header.x-request-id"] == ("req-1",)
    assert span.attributes["http.response.header.content-type"][0].startswith("application/json")
    assert "http.response.header.x-ratelimit-remaining-requests" not in span.attributes


async def test_llm_calls_record_the_request_id_and_rate_limits_by_default(tracing_llm_server):
    server, tracing = tracing_llm_server
    body = {"model": "error-429", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(trace_configs=[tracing.trace_config]) as s:
        async with s.post(f"{server.base_url}/chat/completions", json=body) as resp:
            await resp.read()
    (span,) = tracing.spans()
    # The mock answers a 429 with retry-after-ms, as OpenAI does.
    assert span.attributes["http.response.header.retry-after-ms"] == ("10",)
    assert not any(k.startswith("http.request.header") for k in span.attributes)


async def test_the_tracer_carries_the_schema_url(echo):
    (span,), _ = await _spans(f"{echo}/x")
    assert span.instrumentation_scope.schema_url == SCHEMA_URL


@pytest.fixture
async def tracing_llm_server() -> AsyncIterator[tuple[MockLLMServer, TracingFixture]]:
    tracing = TracingFixture()
    async with MockLLMServer() as server:
        yield server, tracing
    tracing.close()
