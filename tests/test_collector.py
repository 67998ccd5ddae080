"""The collector route, for real: our OTLP/gRPC exporter -> rotel -> a Langfuse-shaped endpoint.

Runs ``examples/collector/rotel.sh`` itself, so the script users copy is the one under test.
Everything binds to 127.0.0.1; the collector is stopped by its PID whatever happens.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from aiohttp_llm_tracing import create_trace_config, setup_tracing, trace_attributes
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.receiver import OTLPHttpReceiver
from conftest import free_port

COLLECTOR_DIR = Path(__file__).resolve().parents[1] / "examples" / "collector"
ROTEL_SH = COLLECTOR_DIR / "rotel.sh"
PUBLIC_KEY, SECRET_KEY = "pk-lf-test", "sk-lf-test1"  # 21 bytes: the token ends in "=" padding
AUTH = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
READY_TIMEOUT = 15.0


def _rotel_bin() -> str:
    try:
        import rotel
    except ImportError:
        if os.environ.get("CI"):
            raise  # CI installs the test extras; a missing collector is a broken install
        pytest.skip("rotel is not installed (pip install rotel)")
    binary = str(Path(rotel.__file__).parent / "rotel-agent")
    # The wheel's binary links the libpython it was built against; an interpreter built without
    # a shared libpython (pyenv's default) cannot run it. That is the machine, not our route.
    probe = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        reason = f"rotel-agent cannot run here: {(probe.stderr or probe.stdout).strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Bounded readiness probe: the collector accepts connections, or it has exited."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)  # an external process: nothing to wait on but the port itself
    return False


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    out = proc.stdout.read() if proc.stdout else b""
    return out.decode(errors="replace")


@pytest.fixture
def langfuse_endpoint() -> Iterator[OTLPHttpReceiver]:
    with OTLPHttpReceiver(require_auth=AUTH) as receiver:
        yield receiver


@pytest.fixture
def rotel(langfuse_endpoint: OTLPHttpReceiver, tmp_path: Path) -> Iterator[str]:
    """rotel.sh forwarding to ``langfuse_endpoint``; yields its gRPC endpoint."""
    env = {
        **os.environ,
        "LANGFUSE_PUBLIC_KEY": PUBLIC_KEY,
        "LANGFUSE_SECRET_KEY": SECRET_KEY,
        "LANGFUSE_HOST": langfuse_endpoint.base_url,
        "ROTEL_BIN": _rotel_bin(),
        "ROTEL_BATCH_TIMEOUT": "100ms",
        "ROTEL_PID_FILE": str(tmp_path / "rotel.pid"),
        "ROTEL_LOG_FILE": str(tmp_path / "rotel.log"),
    }
    last_output = ""
    for _ in range(3):  # a free port can be taken between probe and bind; retry, bounded
        grpc_port = free_port()
        env["ROTEL_GRPC_ENDPOINT"] = f"127.0.0.1:{grpc_port}"
        env["ROTEL_HTTP_ENDPOINT"] = f"127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            ["bash", str(ROTEL_SH)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            if _wait_listening(proc, grpc_port):
                yield f"127.0.0.1:{grpc_port}"
                return
        finally:
            last_output = _stop(proc)
    pytest.fail(f"rotel did not start:\n{last_output}")


@pytest.mark.slow
async def test_spans_cross_rotel_to_langfuse_endpoint(
    rotel: str, langfuse_endpoint: OTLPHttpReceiver
) -> None:
    provider = setup_tracing(
        exporter="otlp",
        endpoint=rotel,
        insecure=True,
        set_global=False,
        schedule_delay=0.1,
        export_timeout=5.0,
        service_name="collector-test",
    )
    try:
        tracer = provider.get_tracer("tests.collector")
        config = create_trace_config(tracer_provider=provider)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
        async with MockLLMServer() as llm, aiohttp.ClientSession(trace_configs=[config]) as s:
            with (
                trace_attributes(session_id="s-rotel", user_id="u-rotel"),
                tracer.start_as_current_span("agent run"),
            ):
                async with s.post(f"{llm.base_url}/chat/completions", json=body) as resp:
                    await resp.json()
        assert provider.flush(10.0)
        assert langfuse_endpoint.wait_for(2, timeout=15.0), langfuse_endpoint.requests
    finally:
        provider.shutdown(timeout=5.0)

    spans = {s.name: s for s in langfuse_endpoint.spans()}
    root, chat = spans["agent run"], spans["chat gpt-4o-mini"]
    assert chat.trace_id == root.trace_id
    assert chat.parent_span_id == root.span_id
    assert root.parent_span_id is None
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["session.id"] == "s-rotel"
    assert chat.attributes["llm_tracing.end_reason"] == "body_complete"
    assert chat.resource["service.name"] == "collector-test"

    requests = langfuse_endpoint.requests
    assert requests and all(r.status == 200 for r in requests)
    for request in requests:
        assert request.path == "/api/public/otel/v1/traces"
        assert request.headers["authorization"] == AUTH
        assert request.headers["x-langfuse-ingestion-version"] == "4"
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.headers.get("content-encoding") == "gzip"
    assert langfuse_endpoint.other_paths == []


def test_rotel_script_requires_langfuse_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}
    result = subprocess.run(
        ["bash", str(ROTEL_SH)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "LANGFUSE_PUBLIC_KEY" in result.stderr


def test_otelcol_config_routes_to_langfuse() -> None:
    # No YAML parser in the test extras: check the parts that are easy to get wrong.
    text = (COLLECTOR_DIR / "otelcol-config.yaml").read_text()
    assert "traces_endpoint: ${env:LANGFUSE_HOST}/api/public/otel/v1/traces" in text
    assert 'x-langfuse-ingestion-version: "4"' in text
    assert "Authorization: Basic ${env:LANGFUSE_AUTH}" in text
    assert "endpoint: 127.0.0.1:4317" in text
