"""What content is recorded: capture switches, the mask, and the attribute length limit."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import ANSWER, TOOLS, USER, attrs, jattr, openai_client  # noqa: E402

pytest_plugins = ["llm_fixtures"]


# Both content vocabularies are checked here; the default writes only Langfuse's.
pytestmark = pytest.mark.usefixtures("both_content_formats")


CONTENT_KEYS = (
    "langfuse.observation.input",
    "langfuse.observation.output",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
)
ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


async def chat(tracing, url: str, config, **body: Any) -> None:
    payload = {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.1, **body}
    async with tracing.session(config=config) as s:
        async with s.post(f"{url}/chat/completions", json=payload) as resp:
            await resp.read()


def assert_no_content_but_the_rest(span) -> None:
    a = attrs(span)
    for key in CONTENT_KEYS:
        assert key not in a, key
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["langfuse.observation.model.name"] == "gpt-4o-mini"
    assert a["gen_ai.request.temperature"] == 0.1
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] > 0
    assert json.loads(a["langfuse.observation.usage_details"])["total"] > 0
    assert a["gen_ai.response.finish_reasons"] in (("stop",), ("tool_calls",))
    for value in a.values():
        assert "Mock answer" not in str(value)
        assert USER[0]["content"] not in str(value)


@pytest.mark.parametrize("stream", [False, True])
async def test_capture_content_false(llm_server, tracing, stream):
    extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    await chat(tracing, llm_server.base_url, tracing.config(capture_content=False), **extra)
    assert_no_content_but_the_rest(tracing.only())


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "no_content", "NO_CONTENT", " off "])
async def test_capture_content_off_by_environment(llm_server, tracing, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    await chat(tracing, llm_server.base_url, tracing.config(), tools=TOOLS)
    assert_no_content_but_the_rest(tracing.only())


@pytest.mark.parametrize("value", ["true", "span_only", ""])
async def test_capture_content_on_by_environment(llm_server, tracing, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    await chat(tracing, llm_server.base_url, tracing.config())
    assert jattr(tracing.only(), "langfuse.observation.input") == USER


async def test_explicit_argument_beats_the_environment(llm_server, tracing, monkeypatch):
    monkeypatch.setenv(ENV, "false")
    await chat(tracing, llm_server.base_url, tracing.config(capture_content=True))
    assert jattr(tracing.only(), "langfuse.observation.output")["content"] == ANSWER


async def test_capture_off_through_the_sdk_stream(llm_server, tracing, monkeypatch):
    monkeypatch.setenv(ENV, "false")
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            temperature=0.1,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
    span = tracing.only()
    assert_no_content_but_the_rest(span)
    assert attrs(span)["gen_ai.response.time_to_first_chunk"] > 0


# -- the mask ------------------------------------------------------------------------------------

EMAIL = re.compile(r"[\w.]+@[\w.]+")


def redact(value: Any) -> Any:
    """A user's mask: scrub e-mail addresses from whatever structure it is given."""
    return json.loads(EMAIL.sub("<email>", json.dumps(value)))


async def test_mask_is_applied_before_recording(llm_server, tracing):
    seen: list[Any] = []

    def mask(value: Any) -> Any:
        seen.append(value)
        return redact(value)

    messages = [{"role": "user", "content": "Mail alice@example.com about it"}]
    config = tracing.config(mask=mask)
    await chat(tracing, llm_server.base_url, config, messages=messages)
    span = tracing.only()
    for key, value in attrs(span).items():
        assert "alice@example.com" not in str(value), key
    assert jattr(span, "langfuse.observation.input") == [
        {"role": "user", "content": "Mail <email> about it"}
    ]
    # The answer echoes the prompt, so the mask cleaned the output too.
    assert "<email>" in jattr(span, "langfuse.observation.output")["content"]
    assert jattr(span, "gen_ai.input.messages")[0]["parts"][0]["content"] == (
        "Mail <email> about it"
    )
    assert messages in seen  # the mask saw the raw input as sent
    assert len(seen) == 4  # Langfuse input/output and the two semconv message lists


async def test_mask_returning_none_drops_the_value(llm_server, tracing):
    def mask(value: Any) -> Any:
        return None if isinstance(value, list) else value

    await chat(tracing, llm_server.base_url, tracing.config(mask=mask))
    a = attrs(tracing.only())
    assert "langfuse.observation.input" not in a  # a list: dropped
    assert "gen_ai.input.messages" not in a
    assert "langfuse.observation.output" in a  # a dict: kept


async def test_a_failing_mask_records_no_content_and_breaks_nothing(llm_server, tracing):
    def mask(value: Any) -> Any:
        raise RuntimeError("mask bug")

    await chat(tracing, llm_server.base_url, tracing.config(mask=mask))
    (span,) = tracing.spans()
    stats = tracing.registry.stats()
    assert stats.started == stats.ended_total == 1 and stats.in_flight == 0
    a = attrs(span)
    for key in CONTENT_KEYS:
        assert key not in a, key  # fail closed: nothing unmasked leaks
    assert a["gen_ai.usage.output_tokens"] > 0
    assert span.name == "chat gpt-4o-mini"
    assert tracing.registry.stats().internal_errors == 1
    assert len(tracing.registry) == 0


# -- attribute length ----------------------------------------------------------------------------


async def test_max_attribute_length_cuts_with_a_visible_marker(llm_server, tracing):
    long_prompt = "word " * 400
    messages = [{"role": "user", "content": long_prompt}]
    config = tracing.config(max_attribute_length=200)
    await chat(tracing, llm_server.base_url, config, messages=messages)
    a = attrs(tracing.only())
    full = json.dumps(messages, separators=(",", ":"))
    value = a["langfuse.observation.input"]
    assert value == f"{full[:200]}...[truncated {len(full) - 200} chars]"
    assert a["gen_ai.input.messages"].startswith('[{"role":"user"')
    assert a["gen_ai.input.messages"].endswith(" chars]")
    # Short values are not touched.
    assert json.loads(a["langfuse.observation.output"])["role"] == "assistant"
    assert json.loads(a["langfuse.observation.model.parameters"]) == {"temperature": 0.1}
