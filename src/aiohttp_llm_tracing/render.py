"""Render received spans as one rich tree per trace.

Used by the ``receive`` CLI command and the demo to show, at a glance, how LLM call spans
nest and what they recorded (model, token usage, time to first token, end reason, errors and,
with ``content=True``, a short preview of each generation's input and output).

Rendering needs ``rich`` (the ``[cli]`` extra); it is imported on first use, so
:func:`spans_to_json` and importing this module work without it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.trace.v1.trace_pb2 import Status

if TYPE_CHECKING:
    # Only needed for annotations; rendering is duck-typed on the span fields.
    from rich.console import Console
    from rich.tree import Tree

    from .receiver import ReceivedSpan

__all__ = ["PREVIEW_CHARS", "build_trees", "print_trees", "spans_to_json"]

_STATUS_OK = Status.STATUS_CODE_OK
_STATUS_ERROR = Status.STATUS_CODE_ERROR

#: How many characters of a generation's input and output ``content=True`` shows.
PREVIEW_CHARS = 80
# What a preview shows, first key present wins: Langfuse's own attributes, then the GenAI
# semantic conventions' (set by other instrumentations).
_PREVIEWS = (
    ("input", ("langfuse.observation.input", "gen_ai.input.messages")),
    ("output", ("langfuse.observation.output", "gen_ai.output.messages")),
)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _one_line(value: object) -> str:
    # Tree labels must stay on one line; attribute values and status messages can carry
    # newlines (e.g. provider error bodies).
    return _escape(" ".join(str(value).split()))


def _preview(value: object) -> str:
    text = " ".join(str(value).split())
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 1] + "…"
    return _escape(text)  # after the cut, so no escape sequence is split


def _content_lines(span: ReceivedSpan) -> list[str]:
    lines = []
    for shown, keys in _PREVIEWS:
        value = next((span.attributes[k] for k in keys if k in span.attributes), None)
        if value is not None:
            lines.append(f"[dim]{shown}:[/dim] {_preview(value)}")
    return lines


def _fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms"


def _span_label(span: ReceivedSpan) -> str:
    attrs = span.attributes
    parts = [f"[bold]{_escape(span.name)}[/bold]", _fmt_ms(span.duration_ms)]

    if span.status_code == _STATUS_ERROR:
        status = "ERROR"
        if span.status_message:
            status += f": {_one_line(span.status_message)}"
        parts.append(f"[red]{status}[/red]")
    elif span.status_code == _STATUS_OK:
        parts.append("[green]OK[/green]")
    else:
        parts.append("[green]unset[/green]")

    end_reason = attrs.get("llm_tracing.end_reason")
    if end_reason is not None:
        parts.append(f"end={_one_line(end_reason)}")

    req_model = attrs.get("gen_ai.request.model")
    resp_model = attrs.get("gen_ai.response.model")
    if req_model is not None and resp_model is not None and req_model != resp_model:
        parts.append(f"model={_one_line(req_model)}→{_one_line(resp_model)}")
    elif req_model is not None or resp_model is not None:
        parts.append(f"model={_one_line(resp_model if resp_model is not None else req_model)}")

    tokens_in = attrs.get("gen_ai.usage.input_tokens")
    tokens_out = attrs.get("gen_ai.usage.output_tokens")
    if tokens_in is not None or tokens_out is not None:
        shown_in = "?" if tokens_in is None else _one_line(tokens_in)
        shown_out = "?" if tokens_out is None else _one_line(tokens_out)
        parts.append(f"tokens={shown_in}/{shown_out}")

    ttft = attrs.get("gen_ai.response.time_to_first_chunk")
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool):
        parts.append(f"ttft={_fmt_ms(ttft * 1000)}")

    http_status = attrs.get("http.response.status_code")
    if http_status is not None:
        parts.append(f"http={_one_line(http_status)}")

    error_type = attrs.get("error.type")
    if error_type is not None:
        parts.append(f"[red]error.type={_one_line(error_type)}[/red]")

    return " ".join(parts)


def _trace_label(trace_id: str, spans: list[ReceivedSpan]) -> str:
    parts = [f"[dim]trace[/dim] {_escape(trace_id)}"]
    # Identity attributes may sit on any span (often only on the LLM span), so take the
    # earliest one present anywhere in the trace.
    for key, shown in (("session.id", "session"), ("user.id", "user")):
        value = next((s.attributes[key] for s in spans if key in s.attributes), None)
        if value is not None:
            parts.append(f"{shown}={_one_line(value)}")
    return " ".join(parts)


def build_trees(spans: Iterable[ReceivedSpan], *, content: bool = False) -> list[Tree]:
    """Build one :class:`rich.tree.Tree` per trace.

    Traces are ordered by their earliest span start; within a trace, children nest under
    their parents in start order. A span whose parent is not among ``spans`` (not exported
    yet, or dropped) is shown as an additional root of its trace rather than being hidden.
    With ``content=True`` each span that recorded an input or output (a generation) gets
    one dim line for each, cut to :data:`PREVIEW_CHARS` characters, above its children.
    """
    from rich.tree import Tree

    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    for trace_spans in by_trace.values():
        trace_spans.sort(key=lambda s: (s.start_ns, s.end_ns))

    trees: list[Tree] = []
    for trace_id, trace_spans in sorted(by_trace.items(), key=lambda kv: kv[1][0].start_ns):
        ids = {s.span_id for s in trace_spans}
        children: dict[str, list[ReceivedSpan]] = {}
        roots: list[ReceivedSpan] = []
        for span in trace_spans:
            parent = span.parent_span_id
            if parent is None or parent not in ids or parent == span.span_id:
                roots.append(span)
            else:
                children.setdefault(parent, []).append(span)

        tree = Tree(_trace_label(trace_id, trace_spans), guide_style="dim")
        visited: set[int] = set()
        for root in roots:
            _add_subtree(tree, root, children, visited, content)
        # Spans caught in a parent cycle (malformed input) are unreachable from any root;
        # show them as roots so nothing silently disappears.
        for span in trace_spans:
            if id(span) not in visited:
                _add_subtree(tree, span, children, visited, content)
        trees.append(tree)
    return trees


def _add_subtree(
    node: Tree,
    span: ReceivedSpan,
    children: Mapping[str, list[ReceivedSpan]],
    visited: set[int],
    content: bool,
) -> None:
    # Identity (not span_id) marks visits so duplicate exports of one span still render.
    visited.add(id(span))
    child_node = node.add(_span_label(span))
    if content:
        for line in _content_lines(span):
            child_node.add(line)
    for child in children.get(span.span_id, []):
        if id(child) not in visited:
            _add_subtree(child_node, child, children, visited, content)


def print_trees(
    spans: Iterable[ReceivedSpan], console: Console | None = None, *, content: bool = False
) -> None:
    """Print :func:`build_trees` output to ``console`` (a new stdout console by default)."""
    if console is None:
        from rich.console import Console

        console = Console()
    for tree in build_trees(spans, content=content):
        console.print(tree)


def _jsonable(value: object) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def spans_to_json(spans: Iterable[ReceivedSpan]) -> list[dict[str, Any]]:
    """Convert spans to JSON-serialisable dicts (bytes attribute values become base64)."""
    return [
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "kind": span.kind,
            "start_ns": span.start_ns,
            "end_ns": span.end_ns,
            "duration_ms": span.duration_ms,
            "attributes": _jsonable(span.attributes),
            "status_code": span.status_code,
            "status_message": span.status_message,
            "events": [
                {"name": name, "attributes": _jsonable(attrs)} for name, attrs in span.events
            ],
            "resource": _jsonable(span.resource),
            "scope": span.scope,
        }
        for span in spans
    ]
