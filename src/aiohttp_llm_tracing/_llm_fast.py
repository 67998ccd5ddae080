"""The end of the most common LLM call in one pass: an OpenAI-style chat completion answered
with plain JSON.

The general end (``_llm_bodies``, then the adapter, then ``_llm_attributes``) runs some forty
small functions and builds three dataclasses. At the end of a real call the caches hold what
other work ran since the request went out, and there that costs far more than its instruction
count suggests: for the openai SDK's chat call, about 120 us of CPU against 18 us in a warm
loop (``benchmarks/llm_peers.py --parallel``, with the end's attributes stubbed to constants).
This reads the same shape in one function and the few helpers it shares with the general path,
which is what brings that down (measured in the README's Performance section).

Its attributes equal the general path's. Whatever is outside the shape (an error status or
body, a compressed, cut or redirected body, a stream, a request that asked for one, a mask,
GenAI-format content, JSON of other types, a body the adapter would find empty) returns ``None``
before anything is written, and the caller takes the general path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _attributes as A
from ._json import orjson
from ._llm_attributes import cut, parameter_attributes, token_attributes
from ._media import MIN_MEDIA_CHARS, elide_media
from .adapters._common import azure_deployment
from .adapters.openai_chat import PARAMETERS, chat_parameters, output_message

if TYPE_CHECKING:
    from ._llm import LLMCall

__all__ = ["chat_json_attributes"]


def chat_json_attributes(
    call: LLMCall, status: int
) -> tuple[str | None, str | None, dict[str, Any]] | None:
    """``(request model, model, attributes)`` of a plain JSON chat call, or ``None`` to leave
    it to the general path."""
    options = call.options
    request, response = call.request_body, call.response_body
    if (
        orjson is None
        or status >= 400
        or response is None
        or not response.total
        or response.truncated
        or call.content_encoding
        or call.stream_kind is not None
        or call.redirected_body is not None
        or not request.head
        or request.truncated
        or options.mask is not None
        or options.gen_ai_content
    ):
        return None
    head: bytes | bytearray = response.head
    if len(head) >= MIN_MEDIA_CHARS:
        # Generated images and audio come back as base64 too: placeholders, not blobs.
        head = elide_media(bytes(head))
    try:
        body = orjson.loads(request.head)
        data = orjson.loads(head)
    except ValueError:
        return None  # what orjson refuses the general path reads, or calls not JSON
    if type(body) is not dict or type(data) is not dict:
        return None
    if body.get("stream") is True or data.get("error") is not None:
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

    request_model = body.get("model")
    if type(request_model) is not str or not request_model:
        request_model = azure_deployment(call.path)
    attributes: dict[str, Any] = {}
    if request_model:
        attributes[A.GEN_AI_REQUEST_MODEL] = request_model
    if not body.keys().isdisjoint(PARAMETERS):
        parameter_attributes(attributes, chat_parameters(body), False)
    content = options.langfuse_content
    limit = options.max_attribute_length
    if content:
        messages = body.get("messages")
        if type(messages) is not list:
            messages = []
        tools = body.get("tools")
        prompt: Any = messages
        if type(tools) is list and tools:
            prompt = {"messages": messages, "tools": tools}
        text = orjson.dumps(prompt).decode()
        attributes[A.LANGFUSE_OBSERVATION_INPUT] = text if len(text) <= limit else cut(text, limit)
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
    if content and output is not None:
        text = orjson.dumps(output).decode()
        attributes[A.LANGFUSE_OBSERVATION_OUTPUT] = text if len(text) <= limit else cut(text, limit)
    return request_model, model, attributes


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
