"""Trace-level attributes from the caller's context and per request, on generation spans."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aiohttp_llm_tracing import current_trace_attributes, trace_attributes

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import USER, attrs, openai_client  # noqa: E402

pytest_plugins = ["llm_fixtures"]

TRACE_KEYS = ("session.id", "user.id", "langfuse.trace.name", "langfuse.trace.tags")


async def chat(session, url: str, **kwargs: Any) -> None:
    body = {"model": "gpt-4o-mini", "messages": USER}
    async with session.post(f"{url}/chat/completions", json=body, **kwargs) as resp:
        await resp.read()


def trace_part(span) -> dict[str, Any]:
    return {
        k: v
        for k, v in attrs(span).items()
        if k in TRACE_KEYS or k.startswith("langfuse.trace.metadata.")
    }


async def test_trace_attributes_apply_to_generation_spans(llm_server, tracing):
    async with tracing.session() as s:
        with trace_attributes(
            session_id="sess-1",
            user_id="user-7",
            tags=["agent", "prod"],
            metadata={"tenant": "acme", "attempt": 2, "flags": {"beta": True}},
            trace_name="support-bot",
        ):
            await chat(s, llm_server.base_url)
    span = tracing.only()
    assert span.name == "chat gpt-4o-mini"  # the trace name does not rename the generation
    assert trace_part(span) == {
        "session.id": "sess-1",
        "user.id": "user-7",
        "langfuse.trace.name": "support-bot",
        "langfuse.trace.tags": ("agent", "prod"),
        "langfuse.trace.metadata.tenant": "acme",
        "langfuse.trace.metadata.attempt": 2,
        "langfuse.trace.metadata.flags": json.dumps({"beta": True}, separators=(",", ":")),
    }
    assert current_trace_attributes().session_id is None


async def test_nested_blocks_override_unite_and_restore(llm_server, tracing):
    async with tracing.session() as s:
        with trace_attributes(session_id="outer", user_id="u", tags=["a"], metadata={"x": 1}):
            await chat(s, llm_server.base_url)
            with trace_attributes(session_id="inner", tags=["b"], metadata={"y": 2}):
                assert current_trace_attributes().session_id == "inner"
                await chat(s, llm_server.base_url)
            assert current_trace_attributes().session_id == "outer"
            await chat(s, llm_server.base_url)
        await chat(s, llm_server.base_url)
    outer1, inner, outer2, outside = (trace_part(sp) for sp in tracing.spans())
    assert (
        outer1
        == outer2
        == {
            "session.id": "outer",
            "user.id": "u",
            "langfuse.trace.tags": ("a",),
            "langfuse.trace.metadata.x": 1,
        }
    )
    assert inner == {
        "session.id": "inner",
        "user.id": "u",
        "langfuse.trace.tags": ("a", "b"),
        "langfuse.trace.metadata.x": 1,
        "langfuse.trace.metadata.y": 2,
    }
    assert outside == {}
    assert current_trace_attributes().session_id is None
    tracing.assert_settled()


async def test_concurrent_tasks_keep_their_own_session(llm_server, tracing):
    # Both tasks are inside their blocks at the same time before either sends its request.
    inside = {"A": asyncio.Event(), "B": asyncio.Event()}

    async def user_turn(session, session_id: str) -> None:
        with trace_attributes(session_id=session_id, user_id=f"user-of-{session_id}"):
            inside[session_id].set()
            for event in inside.values():  # a barrier that also runs on Python 3.10
                await event.wait()
            await chat(session, llm_server.base_url, headers={"X-Session": session_id})

    async with tracing.session() as s:
        await asyncio.gather(user_turn(s, "A"), user_turn(s, "B"))

    spans = tracing.spans()
    assert len(spans) == 2
    by_session = {attrs(sp)["session.id"]: attrs(sp) for sp in spans}
    assert set(by_session) == {"A", "B"}
    assert by_session["A"]["user.id"] == "user-of-A"
    assert by_session["B"]["user.id"] == "user-of-B"
    # Each span's request really was that task's request.
    sent = {r["headers"]["x-request-id"]: r["headers"]["x-session"] for r in llm_server.requests}
    for session_id, a in by_session.items():
        assert sent[a["llm_tracing.request_id"]] == session_id
    tracing.assert_settled()


async def test_trace_request_ctx_per_request(llm_server, tracing):
    async with tracing.session() as s:
        with trace_attributes(session_id="ctx-session", user_id="u1", tags=["t1"]):
            await chat(
                s,
                llm_server.base_url,
                trace_request_ctx={"session_id": "req-session", "name": "my-gen", "tags": ["t2"]},
            )
            await chat(s, llm_server.base_url)
    named, plain = tracing.spans()
    assert named.name == "my-gen"  # renames the generation; the model is still recorded
    assert attrs(named)["gen_ai.request.model"] == "gpt-4o-mini"
    assert trace_part(named) == {
        "session.id": "req-session",
        "user.id": "u1",
        "langfuse.trace.tags": ("t1", "t2"),
    }
    assert plain.name == "chat gpt-4o-mini"
    assert attrs(plain)["session.id"] == "ctx-session"


async def test_name_in_trace_attributes_names_every_generation(llm_server, tracing):
    async with tracing.session() as s:
        with trace_attributes(name="summarise"):
            await chat(s, llm_server.base_url)
    assert tracing.only().name == "summarise"


async def test_trace_attributes_through_the_sdk(llm_server, tracing):
    async with openai_client(llm_server.base_url, tracing.config()) as client:
        with trace_attributes(session_id="sdk-session", tags=["sdk"]):
            await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    inside, outside = tracing.spans()
    assert trace_part(inside) == {"session.id": "sdk-session", "langfuse.trace.tags": ("sdk",)}
    assert trace_part(outside) == {}


async def test_generation_nests_under_the_callers_span(llm_server, tracing):
    tracer = tracing.provider.get_tracer("app")
    async with tracing.session() as s:
        with tracer.start_as_current_span("agent-step") as parent:
            await chat(s, llm_server.base_url)
    # The generation's end is done on the loop's next turn, so either may be exported first.
    agent, generation = sorted(tracing.spans(), key=lambda s: s.name != "agent-step")
    assert agent.name == "agent-step"
    assert generation.parent is not None
    assert generation.parent.span_id == parent.get_span_context().span_id
    assert generation.context.trace_id == parent.get_span_context().trace_id
    # The trace context went to the server too.
    traceparent = llm_server.requests[-1]["headers"]["traceparent"]
    assert traceparent.split("-")[2] == f"{generation.context.span_id:016x}"


@pytest.mark.parametrize(
    "ctx",
    [
        {"metadata": "x", "session_id": "s"},
        {"metadata": ["a"], "session_id": "s"},
        {"tags": 5, "session_id": "s"},
    ],
)
async def test_malformed_trace_request_ctx_is_ignored_not_fatal(llm_server, tracing, ctx):
    # trace_request_ctx is shared with other trace configs: a value of the wrong type for us
    # must cost the field, never the span.
    async with tracing.session() as s:
        await chat(s, llm_server.base_url, trace_request_ctx=ctx)
    span = tracing.only()
    assert span.name == "chat gpt-4o-mini"
    assert attrs(span)["session.id"] == "s"
    assert tracing.registry.stats().internal_errors == 0


async def test_a_single_tag_string_is_one_tag(llm_server, tracing):
    async with tracing.session() as s:
        with trace_attributes(tags="agent"):
            await chat(s, llm_server.base_url)
    assert attrs(tracing.only())["langfuse.trace.tags"] == ("agent",)
