"""The command line's tools: ``receive --http``, ``mock``, ``--content``, and the extras.

Every process is a subprocess as a user runs it, on 127.0.0.1, with a bounded lifetime
(``--max-seconds``) and stopped by the test itself (SIGINT, then a kill if it is still there).
A missing extra is simulated in the child with ``sys.modules[name] = None``, which makes every
import of that package fail, as it does in an environment without it.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rich.console import Console

from aiohttp_llm_tracing import create_trace_config, setup_tracing
from aiohttp_llm_tracing.mock_llm import MockLLMServer
from aiohttp_llm_tracing.receiver import ReceivedSpan
from aiohttp_llm_tracing.render import PREVIEW_CHARS, print_trees

# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


TIMEOUT = 60
PROMPT = "What is the capital of France? " * 5  # longer than a preview


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    # Wide enough that no tree line wraps, so the assertions can match whole labels.
    return {**env, "COLUMNS": "200", "NO_PROXY": "127.0.0.1,localhost"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiohttp_llm_tracing", *args]


def _cli_without(modules: tuple[str, ...], *args: str) -> list[str]:
    """The CLI in a child where importing any of ``modules`` fails (``sys.modules[m] = None``)."""
    code = (
        "import runpy, sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None\n"
        f"sys.argv = ['aiohttp-llm-tracing', *{args!r}]\n"
        "runpy.run_module('aiohttp_llm_tracing', run_name='__main__', alter_sys=True)\n"
    )
    return [sys.executable, "-c", code]


@contextmanager
def _running(cmd: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``cmd``; yield it and its first line (printed once it listens); always stop it."""
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


def _port(banner: str) -> int:
    match = re.search(r"127\.0\.0\.1:(\d+)", banner)
    assert match, banner
    return int(match.group(1))


async def _one_chat(provider: TracerProvider) -> None:
    """One traced chat completion against the embedded mock: a generation span."""
    config = create_trace_config(tracer_provider=provider)
    async with MockLLMServer() as mock, aiohttp.ClientSession(trace_configs=[config]) as session:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
        async with session.post(f"{mock.base_url}/chat/completions", json=body) as resp:
            assert resp.status == 200
            await resp.json()
    config.registry.close()


# receive --http


async def test_receive_http_shows_what_the_langfuse_exporter_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    json_path = tmp_path / "spans.jsonl"
    cmd = _cli("receive", "--http", "--port", "0", "--content", "--json", str(json_path))
    with _running([*cmd, "--max-seconds", str(TIMEOUT)]) as (proc, banner):
        port = _port(banner)
        assert "OTLP/HTTP" in banner
        assert f'langfuse_host="http://127.0.0.1:{port}"' in banner
        # The real Langfuse exporter: protobuf, gzip, Basic auth, on Langfuse's path.
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-local")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-local")
        provider = setup_tracing(
            exporter="langfuse",
            langfuse_host=f"http://127.0.0.1:{port}",
            set_global=False,
            export_timeout=5.0,
        )
        tracer = provider.get_tracer("tests.cli_tools")
        with tracer.start_as_current_span("agent run"):
            await _one_chat(provider)
        assert provider.flush(10.0)  # True only if the receiver accepted the batch
        provider.shutdown(timeout=5.0)

        # A plain OTLP/HTTP exporter posts to the standard /v1/traces.
        plain = TracerProvider()
        plain.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
        )
        with plain.get_tracer("tests.cli_tools").start_as_current_span("plain otlp"):
            pass
        plain.shutdown()
        out, _ = _stop(proc)

    assert re.search(r"└── agent run .*\n    └── chat gpt-4o-mini .* end=body_complete", out), out
    assert re.search(r"chat gpt-4o-mini .* tokens=\d+/\d+ http=200", out), out
    # --content: the generation's input and output, cut to a preview.
    input_line = re.search(r"input: (.*)", out)
    assert input_line, out
    assert "What is the capital of France?" in input_line.group(1)
    assert input_line.group(1).rstrip().endswith("…")
    assert re.search(r"output: .*Mock answer to: What is the capital", out), out
    assert re.search(r"└── plain otlp ", out), out
    assert "Stopped; received 3 spans." in out
    names = {json.loads(line)["name"] for line in json_path.read_text().splitlines()}
    assert names == {"agent run", "chat gpt-4o-mini", "plain otlp"}


def test_receive_http_reports_a_busy_port() -> None:
    with _running(_cli("receive", "--http", "--port", "0", "--max-seconds", "30")) as (p, line):
        port = _port(line)
        result = subprocess.run(
            _cli("receive", "--http", "--port", str(port), "--max-seconds", "5"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        _stop(p)
    assert result.returncode == 1
    assert f"Could not listen on 127.0.0.1:{port}" in result.stdout


# --content (rendering)


def _span(attributes: dict[str, object], name: str = "chat m") -> ReceivedSpan:
    return ReceivedSpan(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        parent_span_id=None,
        name=name,
        kind=3,
        start_ns=0,
        end_ns=1_000_000,
        attributes=attributes,
    )


def _render(spans: list[ReceivedSpan], content: bool) -> str:
    buffer = io.StringIO()
    print_trees(spans, Console(file=buffer, width=200), content=content)
    return buffer.getvalue()


def test_without_content_shows_no_previews() -> None:
    spans = [_span({"langfuse.observation.input": "hello", "langfuse.observation.output": "hi"})]
    assert "input:" not in _render(spans, content=False)


def test_content_previews_are_cut_one_line_and_escaped() -> None:
    long_input = json.dumps([{"role": "user", "content": "x" * 500}])
    spans = [
        _span(
            {
                "langfuse.observation.input": long_input,
                "langfuse.observation.output": "[bold]line one\nline two[/bold]",
            }
        )
    ]
    out = _render(spans, content=True)
    (input_line,) = [line for line in out.splitlines() if "input:" in line]
    preview = input_line.split("input: ", 1)[1].rstrip()
    assert len(preview) == PREVIEW_CHARS and preview.endswith("…")
    assert preview.startswith('[{"role": "user", "content": "xxx')
    # Markup in content is shown, not interpreted; newlines do not break the tree.
    assert "output: [bold]line one line two[/bold]" in out


def test_content_falls_back_to_genai_messages_and_skips_spans_without_content() -> None:
    spans = [
        _span({"gen_ai.input.messages": '[{"role":"user"}]'}),
        _span({"http.response.status_code": 200}, name="GET"),
    ]
    out = _render(spans, content=True)
    assert 'input: [{"role":"user"}]' in out
    assert "output:" not in out
    assert out.count("input:") == 1


def test_demo_content_shows_previews() -> None:
    result = subprocess.run(
        _cli("demo", "--content"), env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"chat gpt-4o-mini .*\n.*input: .*What is the capital of France", out), out
    assert re.search(r"output: .*Mock answer to: ", out), out


# mock


async def test_mock_serves_a_chat_completion_until_ctrl_c() -> None:
    with _running(_cli("mock", "--port", "0", "--max-seconds", str(TIMEOUT))) as (proc, banner):
        port = _port(banner)
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(10)]
        shapes = "".join(lines)
        for shape in ("OpenAI", "Anthropic", "Gemini", "Bedrock", "Cohere", "Ollama", "TGI"):
            assert shape in shapes, shapes
        openai_line = next(line for line in lines if line.strip().startswith("OpenAI "))
        base_url = re.search(r"(http://127\.0\.0\.1:\d+/v1)\b", openai_line)
        assert base_url and base_url.group(1) == f"http://127.0.0.1:{port}/v1", openai_line
        async with aiohttp.ClientSession() as session:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
            async with session.post(f"{base_url.group(1)}/chat/completions", json=body) as resp:
                assert resp.status == 200
                reply = await resp.json()
            async with session.post(
                f"{base_url.group(1)}/chat/completions", json={**body, "model": "error-429"}
            ) as resp:
                assert resp.status == 429
        out, _ = _stop(proc)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"].startswith("Mock answer to: Hi")
    assert "Stopped." in out


def test_mock_reports_a_busy_port() -> None:
    with _running(_cli("mock", "--port", "0", "--max-seconds", "30")) as (proc, banner):
        port = _port(banner)
        result = subprocess.run(
            _cli("mock", "--port", str(port), "--max-seconds", "5"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        _stop(proc)
    assert result.returncode == 1
    assert f"Could not listen on 127.0.0.1:{port}" in result.stdout


# extras


def _message(command: str, extra: str) -> str:
    return (
        f"aiohttp-llm-tracing {command} needs the [{extra}] extra: "
        f"pip install 'aiohttp-llm-tracing[{extra}]'"
    )


@pytest.mark.parametrize(
    ("missing", "args", "message"),
    [
        (("rich",), ("receive", "--port", "0", "--max-seconds", "5"), _message("receive", "cli")),
        (("rich",), ("receive", "--http", "--max-seconds", "5"), _message("receive", "cli")),
        (("rich",), ("demo",), _message("demo", "demo")),
        (("openai",), ("demo", "--content"), _message("demo", "demo")),
    ],
)
def test_a_command_without_its_extra_says_which_to_install(
    missing: tuple[str, ...], args: tuple[str, ...], message: str
) -> None:
    result = subprocess.run(
        _cli_without(missing, *args), env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == message + "\n"
    assert result.stdout == ""


def test_help_and_mock_need_no_extra() -> None:
    missing = ("rich", "openai", "botocore")
    result = subprocess.run(
        _cli_without(missing, "--help"), env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "receive" in result.stdout and "mock" in result.stdout
    result = subprocess.run(
        _cli_without(missing, "mock", "--port", "0", "--max-seconds", "0.2"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert "Mock LLM server on http://127.0.0.1:" in result.stdout


def test_the_library_imports_without_rich_openai_or_botocore() -> None:
    code = (
        "import sys\n"
        "for name in ('rich', 'openai', 'botocore'):\n"
        "    sys.modules[name] = None\n"
        "import aiohttp_llm_tracing, aiohttp_llm_tracing.cli, aiohttp_llm_tracing.receiver\n"
        "import aiohttp_llm_tracing.render, aiohttp_llm_tracing._demo\n"
        "import aiohttp_llm_tracing.mock_llm, aiohttp_llm_tracing.testing\n"
        "aiohttp_llm_tracing.instrument()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_py_typed_ships_with_the_package() -> None:
    import aiohttp_llm_tracing

    assert (Path(aiohttp_llm_tracing.__file__).parent / "py.typed").is_file()
