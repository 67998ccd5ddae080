"""The command line: ``demo`` end to end and ``receive`` with its stop paths.

Both run in subprocesses, as a user runs them (``receive`` is stopped with a real SIGINT); the
demo also runs in-process once, to show it leaves its host process as it found it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aiohttp_llm_tracing import setup_tracing
from aiohttp_llm_tracing.cli import main

TIMEOUT = 60


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    # Wide enough that no tree line wraps, so the assertions can match whole labels.
    return {**env, "COLUMNS": "200", "NO_PROXY": "127.0.0.1,localhost"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiohttp_llm_tracing", *args]


def test_demo_shows_every_end_path_and_exits_0() -> None:
    result = subprocess.run(
        _cli("demo"), env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "session=demo-session user=demo-user" in out
    labels = [
        r"agent run .* unset",
        r"tool: search .*",
        r"GET .* end=response http=200",
        r"chat gpt-4o-mini .* end=body_complete model=gpt-4o-mini tokens=\d+/\d+ http=200",
        r"chat gpt-4o-mini .* end=body_complete .* ttft=[\d.]+ ms http=200",
        r"embeddings text-embedding-3-small .* end=body_complete",
        r"generate_content gemini-2.5-flash .* model=gemini-2.5-flash tokens=\d+/\d+ http=200",
        r"generate_content gemini-2.5-flash .* tokens=\d+/\d+ ttft=[\d.]+ ms http=200",
        r"chat anthropic.claude-3-5-haiku-20241022-v1:0 .* end=body_complete .*tokens=\d+/\d+",
        r"chat error-500 .* ERROR.* end=body_complete.* http=500 error.type=500",
        r"chat slow-headers .* unset end=cancelled",
        r"chat gpt-4o-mini .* unset end=released",
    ]
    for label in labels:
        assert re.search(label, out), label
    # Tree order: the tool's GET nests under it, the calls under the root.
    assert re.search(r"├── tool: search .*\n\s+│\s+└── GET ", out)
    for row in (
        r"started\s+│\s+11",
        r"ended: response\s+│\s+1",
        r"ended: body_complete\s+│\s+8",
        r"ended: released\s+│\s+1",
        r"ended: cancelled\s+│\s+1",
        r"in flight\s+│\s+0",
        r"internal errors\s+│\s+0",
    ):
        assert re.search(row, out), row
    assert "Send the same traces to Langfuse" in out
    assert 'setup_tracing(exporter="langfuse")' in out
    assert "examples/collector/" in out
    assert "All 13 spans arrived; nothing is in flight." in out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("aiohttp-llm-tracing")
    if not script.exists():
        pytest.skip("package not installed in this environment")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0
    assert "demo" in result.stdout and "receive" in result.stdout


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "demo" in out and "receive" in out


def test_receive_prints_trees_writes_json_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    json_path = tmp_path / "spans.jsonl"
    proc = subprocess.Popen(
        _cli("receive", "--port", "0", "--json", str(json_path), "--max-seconds", "60"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once the port is bound
        match = re.search(r"127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        provider = setup_tracing(
            exporter="otlp",
            endpoint=f"127.0.0.1:{match.group(1)}",
            insecure=True,
            set_global=False,
            export_timeout=5.0,
        )
        tracer = provider.get_tracer("tests.cli")
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
            pass
        # The export call returns after the receiver's callback ran: printed and written.
        assert provider.flush(10.0)
        provider.shutdown(timeout=5.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert re.search(r"└── outer .*\n    └── inner ", out), out
    assert "Stopped; received 2 spans." in out
    records = [json.loads(line) for line in json_path.read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    assert set(by_name) == {"outer", "inner"}
    assert by_name["inner"]["parent_span_id"] == by_name["outer"]["span_id"]
    assert by_name["inner"]["trace_id"] == by_name["outer"]["trace_id"]


def test_receive_stops_by_itself_after_max_seconds() -> None:
    result = subprocess.run(
        _cli("receive", "--port", "0", "--max-seconds", "0.2"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "Stopped; received 0 spans." in result.stdout


def test_receive_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            _cli("receive", "--port", str(port), "--max-seconds", "5"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert result.returncode == 1
    assert f"Could not listen on 127.0.0.1:{port}" in result.stdout


def test_demo_in_process_leaves_the_global_provider_and_environment_alone(monkeypatch) -> None:
    import io

    from opentelemetry import trace
    from rich.console import Console

    from aiohttp_llm_tracing._demo import run_demo

    monkeypatch.setenv("NO_PROXY", "example.com")
    monkeypatch.delenv("no_proxy", raising=False)
    before = trace.get_tracer_provider()
    result = run_demo(Console(file=io.StringIO(), width=200))
    assert result.ok, result.problems
    assert trace.get_tracer_provider() is before
    assert os.environ["NO_PROXY"] == "example.com" and "no_proxy" not in os.environ
