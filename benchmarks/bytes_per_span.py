"""OTLP bytes per LLM span: one openai-SDK chat call with a 20 KB prompt, content captured.

    python benchmarks/bytes_per_span.py              # ours, each content format
    .venv-peers/bin/python benchmarks/bytes_per_span.py   # the same, plus openai-v2's span

Each span is encoded exactly as the OTLP exporters send it (``encode_spans`` from
``opentelemetry-exporter-otlp-proto-common``, serialized protobuf, before gzip) and measured, with
gzip's size beside it (Langfuse's exporter compresses). Our modes differ only in
``content_format``: ``langfuse`` (the default: the prompt and completion leave once, as
``langfuse.observation.input``/``output``), ``gen_ai`` (once, as ``gen_ai.input.messages``/...)
and ``both`` (twice, as before). The openai-v2 instrumentation (opentelemetry-instrumentation-
openai-v2, content on with ``SPAN_ONLY``) makes its own span for the same call when it is
importable (the peers venv of ``llm_peers.py``). Written to benchmarks/results/bytes_per_span.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROMPT = ("Summarise this log line for an incident report, keep every number. " * 300)[:20_000]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]


def _size(spans: list[Any]) -> tuple[int, int]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    raw = encode_spans(spans).SerializeToString()
    return len(raw), len(gzip.compress(raw))


async def _call(base_url: str, client_factory: Any) -> None:
    async with client_factory(base_url) as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def _ours(content_format: str) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from aiohttp_llm_tracing import create_trace_config, openai_http_client

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = create_trace_config(
        tracer_provider=provider, content_format=content_format, sweep_interval=None
    )

    def factory(base_url: str) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(
            base_url=base_url, api_key="k", http_client=openai_http_client(trace_config=config)
        )

    return exporter, factory


def _openai_v2() -> Any:
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ImportError:
        return None
    from openai import AsyncOpenAI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)

    def factory(base_url: str) -> Any:
        return AsyncOpenAI(base_url=base_url, api_key="k")

    return exporter, factory


async def _measure() -> dict[str, Any]:
    from aiohttp_llm_tracing.mock_llm import MockLLMServer

    rows: dict[str, Any] = {}
    async with MockLLMServer() as server:
        modes = {f"ours_{fmt}": _ours(fmt) for fmt in ("langfuse", "gen_ai", "both")}
        for name, (exporter, factory) in modes.items():
            await _call(server.base_url, factory)
            spans = list(exporter.get_finished_spans())
            raw, zipped = _size(spans)
            rows[name] = {"spans": len(spans), "bytes": raw, "gzip_bytes": zipped}
        peer = _openai_v2()
        if peer is not None:
            exporter, factory = peer
            await _call(server.base_url, factory)
            spans = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
            raw, zipped = _size(spans)
            rows["openai_v2"] = {"spans": len(spans), "bytes": raw, "gzip_bytes": zipped}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "bytes_per_span.json"))
    args = parser.parse_args(argv)
    rows = asyncio.run(_measure())
    report = {"prompt_chars": len(PROMPT), "python": sys.version.split()[0], "rows": rows}
    if "openai_v2" in rows:
        for name in ("ours_langfuse", "ours_gen_ai", "ours_both"):
            report[f"{name}_to_openai_v2"] = round(
                rows[name]["bytes"] / rows["openai_v2"]["bytes"], 2
            )
    from _common import write_report

    write_report(args.out, report)
    for name, row in rows.items():
        print(f"{name:16} {row['bytes']:>8,} B  ({row['gzip_bytes']:,} B gzip)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
