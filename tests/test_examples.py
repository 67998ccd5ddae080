"""Every example runs as a user would run it: ``python examples/x.py``, in a subprocess.

They talk to a mock LLM server through ``OPENAI_BASE_URL`` (or start their own when it is unset)
and print their spans with the console exporter, which these tests parse back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiohttp_llm_tracing.mock_llm import ThreadedServer, run_in_thread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 60


@pytest.fixture(scope="module")
def mock_llm() -> Iterator[ThreadedServer]:
    server = run_in_thread()
    yield server
    server.stop()


def _env(**extra: str) -> dict[str, str]:
    # Only what the test sets: no Langfuse keys, OTLP endpoints or API keys from the machine.
    prefixes = ("LANGFUSE_", "OTEL_", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", **extra}


def _run(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stderr
    return result


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed: JSON objects that start on a line of their own."""
    decoder = json.JSONDecoder()
    spans, at = [], 0
    while (at := stdout.find("\n{\n", at)) != -1:
        span, end = decoder.raw_decode(stdout, at + 1)
        spans.append(span)
        at = end
    return spans


def _by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"] == name]


def test_quickstart_against_openai_base_url(mock_llm: ThreadedServer) -> None:
    before = len(mock_llm.requests)
    result = _run("quickstart.py", OPENAI_BASE_URL=mock_llm.base_url, OPENAI_API_KEY="sk-test")
    assert "answer: Mock answer to: Say hello" in result.stdout
    (span,) = _console_spans(result.stdout)
    attrs = span["attributes"]
    assert span["name"] == "chat gpt-4o-mini"
    assert span["kind"] == "SpanKind.CLIENT"
    assert attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["llm_tracing.end_reason"] == "body_complete"
    # The request really went to the mock, carrying the trace context and our request ID.
    (request,) = mock_llm.requests[before:]
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert span["context"]["trace_id"][2:] in request["headers"]["traceparent"]
    assert request["headers"]["x-request-id"] == attrs["llm_tracing.request_id"]


def test_quickstart_starts_its_own_mock_when_unset() -> None:
    result = _run("quickstart.py")
    assert "using an embedded mock LLM" in result.stdout
    assert [s["name"] for s in _console_spans(result.stdout)] == ["chat gpt-4o-mini"]


def test_openai_sdk_chat_and_stream(mock_llm: ThreadedServer) -> None:
    result = _run("openai_sdk.py", OPENAI_BASE_URL=mock_llm.base_url, OPENAI_API_KEY="sk-test")
    assert "chat:   Mock answer to: Name three French cheeses" in result.stdout
    assert "stream: Mock answer to: Name three French cheeses" in result.stdout
    chat, stream = _by_name(_console_spans(result.stdout), "chat gpt-4o-mini")
    assert "gen_ai.request.stream" not in chat["attributes"]
    assert stream["attributes"]["gen_ai.request.stream"] is True
    for span in (chat, stream):
        attrs = span["attributes"]
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["session.id"] == "openai-sdk-example"
        assert attrs["llm_tracing.end_reason"] == "body_complete"
    assert stream["attributes"]["gen_ai.response.time_to_first_chunk"] >= 0


def test_agent_keeps_sessions_apart_under_concurrency(mock_llm: ThreadedServer) -> None:
    result = _run("agent.py", OPENAI_BASE_URL=mock_llm.base_url, OPENAI_API_KEY="sk-test")
    users = ("alice", "bob", "carol")
    for user in users:
        assert f"{user}: Mock answer to:" in result.stdout
    spans = _console_spans(result.stdout)
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["context"]["trace_id"], []).append(span)
    assert len(traces) == 3
    sessions = set()
    for trace_spans in traces.values():
        by_id = {s["context"]["span_id"]: s for s in trace_spans}
        (root,) = _by_name(trace_spans, "agent run")
        assert root["parent_id"] is None
        session = root["attributes"]["session.id"]
        sessions.add(session)
        names = sorted(s["name"] for s in trace_spans)
        assert names == sorted(
            ["agent run", "step: plan", "tool: search", "step: answer", *["chat gpt-4o-mini"] * 2]
        )
        for chat in _by_name(trace_spans, "chat gpt-4o-mini"):
            # Each LLM call sits under its step, and carries its own task's session and user.
            assert by_id[chat["parent_id"]]["name"] in {"step: plan", "step: answer"}
            assert chat["attributes"]["session.id"] == session
            assert chat["attributes"]["user.id"] == session.removeprefix("session-")
        (plan_call,) = [
            c
            for c in _by_name(trace_spans, "chat gpt-4o-mini")
            if by_id[c["parent_id"]]["name"] == "step: plan"
        ]
        assert plan_call["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert sessions == {f"session-{u}" for u in users}


def test_langfuse_openai_without_settings_explains_and_exits_0(mock_llm: ThreadedServer) -> None:
    before = len(mock_llm.requests)
    result = _run("langfuse_openai.py", OPENAI_BASE_URL=mock_llm.base_url)
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "OPENAI_API_KEY"):
        assert name in result.stdout
    assert len(mock_llm.requests) == before  # nothing was sent anywhere
