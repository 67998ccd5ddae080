"""Bedrock runtime: Converse, ConverseStream, and InvokeModel(WithResponseStream) with
Anthropic bodies.

Bedrock names the model in the path (``/model/{modelId}/converse``), percent-encoded: an
inference-profile ARN arrives as ``arn%3Aaws%3A...%2F...``. Streams come in AWS's binary
eventstream framing, which the LLM layer decodes into one event per frame before they get here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from .._sse import SSEEvent
from . import _common as c
from .anthropic_messages import AnthropicMessages
from .base import Adapter, ParsedRequest, ParsedResponse, Usage

__all__ = ["ADAPTERS", "BedrockConverse", "BedrockInvoke"]

_BEDROCK_PATH = re.compile(
    r"/model/(?P<model>.+)/(?P<op>converse-stream|converse|invoke-with-response-stream|invoke)$"
)
# inferenceConfig name -> the name the LLM layer maps to a gen_ai.request.* attribute
_INFERENCE = (
    ("maxTokens", "max_tokens"),
    ("temperature", "temperature"),
    ("topP", "top_p"),
    ("stopSequences", "stop_sequences"),
)
_PARAMETERS = ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences")
_STREAM_EVENTS = {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop"}
_STREAM_EVENTS |= {"messageStop", "metadata"}
_ANTHROPIC = AnthropicMessages()


def _bedrock_path(path: str) -> tuple[str | None, str]:
    """(model id, decoded; operation) of a Bedrock runtime path, or (None, "")."""
    found = _BEDROCK_PATH.search(path)
    if found is None:
        return None, ""
    return unquote(found["model"]), found["op"]


# -- Converse ----------------------------------------------------------------------------------


class BedrockConverse:
    """``POST /model/{modelId}/converse`` and ``/converse-stream``: Bedrock's own chat shape."""

    operation = "chat"
    observation_type = "generation"
    provider = "aws.bedrock"
    path_suffixes = ("/converse", "/converse-stream")

    def matches(self, path: str) -> bool:
        return _bedrock_path(path)[1] in ("converse", "converse-stream")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        model, op = _bedrock_path(path)
        request = _converse_request(c.as_dict(body))
        request.model = model
        request.stream = op == "converse-stream"
        return request

    def parse_response(self, body: Any) -> ParsedResponse:
        body = c.as_dict(body)
        return _aws_error(body) or _converse_response(body)

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return _converse_stream(events)


def _converse_request(body: dict[str, Any]) -> ParsedRequest:
    """A Converse request body (also Amazon Nova's InvokeModel body, which has its shape)."""
    messages = c.as_list(body.get("messages"))
    system = c.as_list(body.get("system"))
    config = c.as_dict(body.get("inferenceConfig"))
    parameters = c.pick({ours: config.get(theirs) for theirs, ours in _INFERENCE}, _PARAMETERS)
    # top_k is not a Converse field: models that take it get it as a model-specific field.
    extra = c.as_dict(body.get("additionalModelRequestFields"))
    top_k = extra.get("top_k", extra.get("topK", config.get("topK")))
    if c.opt_int(top_k) is not None:
        parameters["top_k"] = top_k
    texts = [c.as_dict(block).get("text") for block in system]
    tools = [
        c.as_dict(tool)["toolSpec"]
        for tool in c.as_list(c.as_dict(body.get("toolConfig")).get("tools"))
        if isinstance(c.as_dict(tool).get("toolSpec"), dict)
    ]
    return ParsedRequest(
        parameters=parameters,
        input=messages if not system else {"system": system, "messages": messages},
        messages=[
            {"role": m.get("role"), "parts": _converse_parts(m.get("content"))}
            for m in messages
            if isinstance(m, dict)
        ]
        if c.messages_wanted()
        else None,
        system_instructions=[{"type": "text", "content": t} for t in texts if isinstance(t, str)]
        or None,
        tools=tools or None,
    )


def _converse_parts(content: Any) -> list[dict[str, Any]]:
    """Converse content blocks (one key each: ``text``, ``toolUse``...) as semconv parts."""
    parts: list[dict[str, Any]] = []
    for block in c.as_list(content):
        block = c.as_dict(block)
        if isinstance(block.get("text"), str):
            parts.append({"type": "text", "content": block["text"]})
        elif "toolUse" in block:
            use = c.as_dict(block["toolUse"])
            parts.append(
                {
                    "type": "tool_call",
                    "id": use.get("toolUseId"),
                    "name": use.get("name"),
                    "arguments": use.get("input"),
                }
            )
        elif "toolResult" in block:
            result = c.as_dict(block["toolResult"])
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": result.get("toolUseId"),
                    "response": result.get("content"),
                }
            )
        elif "reasoningContent" in block:
            reasoning = c.as_dict(c.as_dict(block["reasoningContent"]).get("reasoningText"))
            parts.append({"type": "reasoning", "content": reasoning.get("text")})
        elif block and "cachePoint" not in block:  # a cache point is a marker, not content
            parts.append({"type": next(iter(block))})  # image, document, video, guardContent
    return parts


def _converse_response(body: dict[str, Any]) -> ParsedResponse:
    message = c.as_dict(c.as_dict(body.get("output")).get("message"))
    content, stop = message.get("content"), body.get("stopReason")
    return _converse_result(message.get("role"), content, stop, body.get("usage"))


def _converse_result(role: Any, content: Any, stop: Any, usage: Any) -> ParsedResponse:
    stop = c.opt_str(stop)
    answered = isinstance(content, list)
    role = c.opt_str(role) or "assistant"
    return ParsedResponse(
        finish_reasons=[stop] if stop else [],
        output={"role": role, "content": content} if answered else None,
        messages=[{"role": role, "parts": _converse_parts(content), "finish_reason": stop}]
        if answered and c.messages_wanted()
        else None,
        usage=_converse_usage(usage),
    )


def _converse_usage(value: Any) -> Usage | None:
    usage = c.as_dict(value)
    read = c.opt_int(usage.get("cacheReadInputTokens"))
    write = c.opt_int(usage.get("cacheWriteInputTokens"))
    fresh = c.opt_int(usage.get("inputTokens"))
    output = c.opt_int(usage.get("outputTokens"))
    # Bedrock's inputTokens excludes cached tokens; the GenAI conventions count them in.
    total_input = None if fresh is None else fresh + (read or 0) + (write or 0)
    if total_input is None and output is None:
        return None
    total = c.opt_int(usage.get("totalTokens"))
    if total is None and total_input is not None and output is not None:
        total = total_input + output
    return Usage(total_input, output, total, cache_read=read or None, cache_creation=write or None)


def _converse_stream(events: Sequence[SSEEvent]) -> ParsedResponse:
    role: Any = None
    blocks: dict[int, dict[str, Any]] = {}
    # Deltas are collected and joined once: appending to a string per delta is quadratic.
    pieces: dict[tuple[int, str], list[str]] = {}
    stop = usage = None
    first = None
    seen = False
    for event in events:
        kind, data = event.event, c.as_dict(c.json_loads(event.data))
        if not kind:
            # Nova's InvokeModel stream chunks wrap each event in its name, as botocore does
            # (the last one beside Bedrock's "amazon-bedrock-invocationMetrics").
            kind = next((key for key in data if key in _STREAM_EVENTS), "")
            data = c.as_dict(data.get(kind))
        if kind.endswith("Exception"):
            # An exception frame (throttlingException, modelStreamErrorException...) ends the
            # stream; the HTTP status was 200 long before.
            message = c.opt_str(data.get("message")) or c.opt_str(data.get("Message")) or kind
            return ParsedResponse(error_message=message, error_type=kind, first_chunk_offset=first)
        index = c.opt_int(data.get("contentBlockIndex")) or 0
        if kind == "messageStart":
            role, seen = data.get("role"), True
        elif kind == "contentBlockStart":
            use = c.as_dict(c.as_dict(data.get("start")).get("toolUse"))
            if use:
                blocks[index] = {"toolUse": dict(use)}
        elif kind == "contentBlockDelta":
            seen = True
            delta = c.as_dict(data.get("delta"))
            reasoning = c.as_dict(delta.get("reasoningContent"))
            for key, piece in (
                ("text", delta.get("text")),
                ("input", c.as_dict(delta.get("toolUse")).get("input")),
                ("reasoning", reasoning.get("text")),
            ):
                if isinstance(piece, str):
                    pieces.setdefault((index, key), []).append(piece)
                    first = event.offset if first is None else first
        elif kind == "messageStop":
            stop = data.get("stopReason")
        elif kind == "metadata":
            usage = data.get("usage")
    for (index, key), parts in pieces.items():
        block = blocks.setdefault(index, {})
        joined = "".join(parts)
        if key == "input":
            parsed = c.json_loads(joined)
            block.setdefault("toolUse", {})["input"] = parsed if parsed is not None else joined
        elif key == "reasoning":
            block["reasoningContent"] = {"reasoningText": {"text": joined}}
        else:
            block["text"] = joined
    content = [block for _, block in sorted(blocks.items())]
    result = _converse_result(role, content if seen else None, stop, usage)
    result.first_chunk_offset = first
    return result


def _aws_error(body: dict[str, Any]) -> ParsedResponse | None:
    """An AWS error body, ``{"message": ...}``; its type is in a header adapters do not see,
    unless the body names it too (``__type``)."""
    message = c.opt_str(body.get("message")) or c.opt_str(body.get("Message"))
    if message is None or "output" in body or "content" in body:
        return None
    kind = c.opt_str(body.get("__type"))
    return ParsedResponse(
        error_message=message, error_type=kind.rpartition("#")[2] if kind else None, output=body
    )


# -- InvokeModel -------------------------------------------------------------------------------


class BedrockInvoke:
    """``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream``: the model's own
    body. Anthropic Messages bodies in full (Nova's Converse-like ones too); other families'
    text, finish reason and usage where their common fields say it."""

    operation = "chat"
    observation_type = "generation"
    provider = "aws.bedrock"
    path_suffixes = ("/invoke", "/invoke-with-response-stream")

    def matches(self, path: str) -> bool:
        return _bedrock_path(path)[1] in ("invoke", "invoke-with-response-stream")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        model, op = _bedrock_path(path)
        body = c.as_dict(body)
        if "anthropic_version" in body or (model and "anthropic" in model):
            request = _ANTHROPIC.parse_request(body, path)
        elif "schemaVersion" in body or "inferenceConfig" in body:
            request = _converse_request(body)  # Amazon Nova
        else:
            # Llama, Mistral, Titan, Cohere...: a prompt and a few sampling fields.
            prompt = body.get("prompt", body.get("inputText", body.get("messages")))
            named = {**body, **c.as_dict(body.get("textGenerationConfig"))}
            named.setdefault("max_tokens", named.get("max_gen_len", named.get("maxTokenCount")))
            request = ParsedRequest(parameters=c.pick(named, _PARAMETERS), input=prompt)
        request.model = model
        request.stream = op == "invoke-with-response-stream"
        return request

    def parse_response(self, body: Any) -> ParsedResponse:
        body = c.as_dict(body)
        error = _aws_error(body)
        if error is not None:
            return error
        if body.get("type") in ("message", "error") or isinstance(body.get("content"), list):
            return _ANTHROPIC.parse_response(body)
        if "output" in body:
            return _converse_response(body)  # Amazon Nova
        return _other_family([body])

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        chunks: list[SSEEvent] = []
        error = None
        for event in events:
            if event.event.endswith("Exception"):
                data = c.as_dict(c.json_loads(event.data))
                message = c.opt_str(data.get("message")) or event.event
                error = ParsedResponse(error_message=message, error_type=event.event)
                break
            # Each chunk carries one of the model's own stream events, base64 in a JSON payload;
            # the frame's offset stays, so the first content still dates from its arrival.
            encoded = c.opt_str(c.as_dict(c.json_loads(event.data)).get("bytes"))
            if encoded is None:
                continue
            try:
                raw = base64.b64decode(encoded)
            except (binascii.Error, ValueError):
                continue
            chunks.append(SSEEvent(event.offset, "", raw.decode("utf-8", "replace")))
        # The family is told by the first chunk that is a JSON object.
        decoded = [c.json_loads(e.data) for e in chunks]
        head = next((d for d in decoded if isinstance(d, dict)), {})
        if "type" in head:
            result = _ANTHROPIC.parse_stream(chunks)
        elif any(key in _STREAM_EVENTS for key in head):
            result = _converse_stream(chunks)  # Amazon Nova
        else:
            result = _other_family(decoded, chunks)
        if error is None:
            return result
        error.id, error.model = result.id, result.model
        error.first_chunk_offset = result.first_chunk_offset
        return error


def _other_family(bodies: list[Any], events: Sequence[SSEEvent] = ()) -> ParsedResponse:
    """Text, finish reason and usage from Llama (``generation``), Mistral (``outputs``), Titan
    (``results``) or Cohere (``generations``) bodies, or from each chunk of their streams."""
    texts: list[str] = []
    stop = None
    usage = Usage()
    first = None
    for i, body in enumerate(bodies):
        body = c.as_dict(body)
        items = [body] if "generation" in body else []
        for key in ("outputs", "results", "generations"):
            items += [c.as_dict(item) for item in c.as_list(body.get(key))]
        for item in items:
            text = next((item[k] for k in ("generation", "text", "outputText") if k in item), None)
            if isinstance(text, str) and text:
                texts.append(text)
                first = events[i].offset if first is None and events else first
            reason = item.get("stop_reason") or item.get("completionReason")
            stop = c.opt_str(item.get("finish_reason") or reason) or stop
        # Streams end with Bedrock's own accounting, whatever the model family.
        metrics = c.as_dict(body.get("amazon-bedrock-invocationMetrics"))
        for field, names in (
            ("input", ("prompt_token_count", "inputTextTokenCount", "inputTokenCount")),
            ("output", ("generation_token_count", "outputTokenCount")),
        ):
            for value in [body.get(n) for n in names] + [metrics.get(n) for n in names]:
                if c.opt_int(value) is not None:
                    setattr(usage, field, value)
    if not texts and stop is None:
        return ParsedResponse()
    parts = [{"type": "text", "content": "".join(texts)}]
    return ParsedResponse(
        finish_reasons=[stop] if stop else [],
        output={"role": "assistant", "content": parts[0]["content"]},
        messages=[{"role": "assistant", "parts": parts, "finish_reason": stop}]
        if c.messages_wanted()
        else None,
        usage=usage if usage.input is not None or usage.output is not None else None,
        first_chunk_offset=first,
    )


ADAPTERS: tuple[Adapter, ...] = (BedrockConverse(), BedrockInvoke())
"""This module's adapters, in matching order."""
