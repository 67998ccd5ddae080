"""A small tool-using agent, traced: nested steps, tool calls, one session and user per task.

    python examples/agent.py

Three users ask at the same time. Each task runs under its own ``trace_attributes`` (task-local,
so concurrent tasks never mix them) and its own root span, with a "plan" step whose LLM call
asks for a tool, the tool itself, and an "answer" step that feeds the tool's result back.
Talks to ``OPENAI_BASE_URL`` (with ``OPENAI_API_KEY``) when set, else to an embedded mock LLM.
Spans go to Langfuse or an OTLP collector when ``LANGFUSE_*`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
are set (try ``aiohttp-llm-tracing receive``), else to stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
from opentelemetry import trace

from aiohttp_llm_tracing import create_trace_config, setup_tracing, trace_attributes
from aiohttp_llm_tracing.mock_llm import MockLLMServer

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
QUESTIONS = {
    "alice": "What is the tallest mountain in Europe?",
    "bob": "Which river flows through Vienna?",
    "carol": "Where is the Louvre?",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search an encyclopedia.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]
tracer = trace.get_tracer("examples.agent")


def exporter_from_env() -> str:
    """Langfuse or OTLP when configured (``auto`` picks), else print spans to stdout."""
    configured = os.environ.get("LANGFUSE_SECRET_KEY") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "auto" if configured else "console"


class LLM:
    """Chat completions over a traced session: every call becomes a generation span."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self._session = session
        self._url = f"{base_url}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def chat(self, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        body = {"model": MODEL, "messages": messages, **params}
        async with self._session.post(self._url, json=body, headers=self._headers) as resp:
            resp.raise_for_status()
            data = await resp.json()
        return data["choices"][0]["message"]


def search(query: str) -> str:
    """The tool: an INTERNAL span of its own, a sibling of the LLM calls."""
    with tracer.start_as_current_span("tool: search", attributes={"tool.query": query}):
        return f"Encyclopedia entry for {query!r}: see the answer step."


async def run_agent(llm: LLM, user: str, question: str) -> str:
    """One agent run: plan (may call a tool), act, answer."""
    with (
        trace_attributes(session_id=f"session-{user}", user_id=user, trace_name="agent") as attrs,
        # The root span carries the trace attributes too, so the whole trace is attributed.
        tracer.start_as_current_span("agent run", attributes=attrs.span_attributes),
    ):
        messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
        with tracer.start_as_current_span("step: plan"):
            reply = await llm.chat(messages, tools=TOOLS)
        messages.append(reply)
        for call in reply.get("tool_calls") or []:
            arguments = json.loads(call["function"]["arguments"] or "{}")
            result = search(arguments.get("query", question))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        if not reply.get("tool_calls"):
            return reply.get("content") or ""
        with tracer.start_as_current_span("step: answer"):
            final = await llm.chat(messages)
        return final.get("content") or ""


async def run(base_url: str, api_key: str) -> None:
    provider = setup_tracing(exporter=exporter_from_env())
    try:
        async with aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session:
            llm = LLM(session, base_url, api_key)
            answers = await asyncio.gather(
                *(run_agent(llm, user, q) for user, q in QUESTIONS.items())
            )
        for user, answer in zip(QUESTIONS, answers):
            print(f"{user}: {answer}")
    finally:
        provider.shutdown()


async def main() -> None:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        await run(base_url.rstrip("/"), os.environ.get("OPENAI_API_KEY", ""))
        return
    async with MockLLMServer() as mock:
        print(f"OPENAI_BASE_URL is not set: using an embedded mock LLM at {mock.base_url}")
        await run(mock.base_url, "mock-key")


if __name__ == "__main__":
    asyncio.run(main())
