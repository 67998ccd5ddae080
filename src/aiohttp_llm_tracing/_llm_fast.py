"""The end of the commonest LLM calls in one pass: an OpenAI-style chat completion, answered
with plain JSON or streamed as SSE.

The general end (``_llm_bodies``, then the adapter, then ``_llm_attributes``) runs some forty
small functions and builds three dataclasses. At the end of a real call the caches hold what
other work ran since the request went out, and there that costs far more than its instruction
count suggests: for the openai SDK's chat call, about 120 us of CPU against 18 us in a warm
loop (``benchmarks/llm_peers.py --parallel``, with the end's attributes stubbed to constants).
This reads the same shapes in one function and the few helpers it shares with the general path,
which is what brings that down (measured in docs/performance.md).

Its attributes equal the general path's. Whatever is outside the shapes (an error status or
body, a compressed, cut or redirected body, a stream not read to its end or cut mid-event, a
JSON answer to a request that asked for a stream, a mask, GenAI-format content, JSON of other
types, a body the adapter would find empty) returns ``None`` before anything is written, and the
caller takes the general path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _attributes as A
from ._json import orjson
from ._llm_attributes import cut, parameter_attributes, response_attributes, token_attributes
from ._llm_bodies import first_chunk_attributes
from ._media import MIN_MEDIA_CHARS, elide_media
from ._reasons import EndReason
from .adapters._common import MESSAGES_WANTED, azure_deployment
from .adapters.openai_chat import PARAMETERS, chat_parameters, output_message

if TYPE_CHECKING:
    from ._llm import LLMCall

__all__ = ["chat_attributes"]


def chat_attributes(
    call: LLMCall, status: int, reason: str
) -> tuple[str | None, str | None, dict[str, Any]] | None:
    """``(request model, model, attributes)`` of a plain chat call, or ``None`` to leave it to
    the general path."""
    options = call.options
    request, response = call.request_body, call.response_body
    if (
        orjson is None
        or status >= 400
        or response is None
        or not response.total
        or response.truncated
        or call.content_encoding
        or call.redirected_body is not None
        or not request.head
        or request.truncated
        or options.mask is not None
        or options.gen_ai_content
    ):
        return None
    try:
        body = orjson.loads(request.head)
    except ValueError:
        return None  # what orjson refuses the general path reads, or calls not JSON
    if type(body) is not dict:
        return None
    stream = body.get("stream") is True
    kind = call.stream_kind
    if kind is None and not stream:
        return _json_call(call, body)
    if kind == "sse" and reason == EndReason.BODY_COMPLETE:
        return _sse_call(call, body, stream)
    return None


def _json_call(
    call: LLMCall, body: dict[str, Any]
) -> tuple[str | None, str | None, dict[str, Any]] | None:
    head: bytes | bytearray = call.response_body.head  # type: ignore[union-attr]
    if len(head) >= MIN_MEDIA_CHARS:
        # Generated images and audio come back as base64 too: placeholders, not blobs.
        head = elide_media(bytes(head))
    try:
        data = orjson.loads(head)
    except ValueError:
        return None
    if type(data) is not dict or data.get("error") is not None:
        return None
    outputs: list[dict[str, Any]] = []
    reasons: list[str] = []
    choices = data.get("choices")
    if type(choices) is list:
        for choice in choices:
            if type(choice) is dict:
                message = choice.get("message")
                outputs.append(output_message(message if type(message) is dict else {}))
                reason = choice.get("finish_reason")
                if type(reason) is str and reason:
                    reasons.append(reason)
    response_id = data.get("id")
    if type(response_id) is not str:
        response_id = None
    response_model = data.get("model")
    if type(response_model) is not str:
        response_model = None
    output = None if not outputs else outputs[0] if len(outputs) == 1 else outputs
    usage = data.get("usage")
    if type(usage) is not dict or not usage:
        usage = None
    if not (response_id or response_model or output is not None or usage is not None or reasons):
        return None  # the general path says the shape is unrecognised

    attributes: dict[str, Any] = {}
    request_model = _request(call, body, False, attributes)
    if response_id:
        attributes[A.GEN_AI_RESPONSE_ID] = response_id
    if response_model:
        attributes[A.GEN_AI_RESPONSE_MODEL] = response_model
    model = response_model or request_model
    if model:
        attributes[A.LANGFUSE_OBSERVATION_MODEL] = model
    if reasons:
        attributes[A.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    if usage is not None:
        _usage(attributes, usage)
    if output is not None and call.options.langfuse_content:
        text = orjson.dumps(output).decode()
        limit = call.options.max_attribute_length
        attributes[A.LANGFUSE_OBSERVATION_OUTPUT] = text if len(text) <= limit else cut(text, limit)
    return request_model, model, attributes


def _sse_call(
    call: LLMCall, body: dict[str, Any], stream: bool
) -> tuple[str | None, str | None, dict[str, Any]] | None:
    capture = call.response_body
    assert capture is not None
    head = bytes(capture.head)
    # Read to its end and finished with a blank line: nothing can be cut off mid-event.
    if not head.endswith(b"\n\n"):
        return None
    token = MESSAGES_WANTED.set(False)
    try:
        response = call.adapter.parse_stream_body(head)  # type: ignore[attr-defined]
    finally:
        MESSAGES_WANTED.reset(token)
    if (
        response is None
        or response.error_message
        or response.wrong_types
        or not (
            response.id
            or response.model
            or response.output is not None
            or response.usage is not None
            or response.finish_reasons
        )
    ):
        return None
    attributes: dict[str, Any] = {}
    offset = response.first_chunk_offset
    if offset is not None:
        arrived = capture.arrival_ns(offset)
        if arrived is not None:
            first_chunk_attributes(attributes, call.started_ns, arrived)
    request_model = _request(call, body, stream, attributes)
    model = response.model or request_model
    response_attributes(attributes, response, model, call)
    return request_model, model, attributes


def _request(
    call: LLMCall, body: dict[str, Any], stream: bool, attributes: dict[str, Any]
) -> str | None:
    """The request's attributes; returns its model."""
    model = body.get("model")
    if type(model) is not str or not model:
        model = azure_deployment(call.path)
    if model:
        attributes[A.GEN_AI_REQUEST_MODEL] = model
    if stream or not body.keys().isdisjoint(PARAMETERS):
        parameter_attributes(attributes, chat_parameters(body), stream)
    options = call.options
    if options.langfuse_content:
        messages = body.get("messages")
        if type(messages) is not list:
            messages = []
        tools = body.get("tools")
        prompt: Any = messages
        if type(tools) is list and tools:
            prompt = {"messages": messages, "tools": tools}
        text = orjson.dumps(prompt).decode()
        limit = options.max_attribute_length
        attributes[A.LANGFUSE_OBSERVATION_INPUT] = text if len(text) <= limit else cut(text, limit)
    return model


def _usage(attributes: dict[str, Any], usage: dict[str, Any]) -> None:
    # adapters._common.openai_usage, for the counts alone.
    prompt = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    completion = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    cache_read = prompt.get("cached_tokens") if type(prompt) is dict else None
    reasoning = completion.get("reasoning_tokens") if type(completion) is dict else None
    input_tokens = usage.get("prompt_tokens")
    if type(input_tokens) is not int:
        input_tokens = usage.get("input_tokens")
        if type(input_tokens) is not int:
            input_tokens = None
    output_tokens = usage.get("completion_tokens")
    if type(output_tokens) is not int:
        output_tokens = usage.get("output_tokens")
        if type(output_tokens) is not int:
            output_tokens = None
    total = usage.get("total_tokens")
    token_attributes(
        attributes,
        input_tokens,
        output_tokens,
        total if type(total) is int else None,
        cache_read if type(cache_read) is int and cache_read else None,
        None,
        reasoning if type(reasoning) is int and reasoning else None,
    )
