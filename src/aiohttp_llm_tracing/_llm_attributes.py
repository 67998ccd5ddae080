"""The generation's attributes, written from what the adapters parsed: request parameters,
content (masked and cut), response facts and token usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _attributes as A
from ._json import dumps
from .adapters import ParsedRequest, ParsedResponse, Usage

if TYPE_CHECKING:
    from ._llm import LLMCall

__all__ = [
    "cut",
    "mark",
    "parameter_attributes",
    "request_attributes",
    "response_attributes",
    "token_attributes",
    "usage_attributes",
]

_PARAMETER_ATTRIBUTES = {
    "temperature": A.GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": A.GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": A.GEN_AI_REQUEST_TOP_P,
    "top_k": A.GEN_AI_REQUEST_TOP_K,
    "frequency_penalty": A.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": A.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": A.GEN_AI_REQUEST_SEED,
}


def request_attributes(attributes: dict[str, Any], request: ParsedRequest, call: LLMCall) -> None:
    """What the request asked for, as attributes (content only when captured)."""
    if request.model:
        attributes[A.GEN_AI_REQUEST_MODEL] = request.model
    parameter_attributes(attributes, request.parameters, request.stream)
    attributes.update(request.attributes)
    options = call.options
    if options.langfuse_content:
        _content(call, attributes, A.LANGFUSE_OBSERVATION_INPUT, request.input)
    if options.gen_ai_content:
        # The semantic-conventions attributes are left out when empty.
        for key, value in (
            (A.GEN_AI_INPUT_MESSAGES, request.messages),
            (A.GEN_AI_SYSTEM_INSTRUCTIONS, request.system_instructions),
            (A.GEN_AI_TOOL_DEFINITIONS, request.tools),
        ):
            if value:
                _content(call, attributes, key, value)


def parameter_attributes(
    attributes: dict[str, Any], parameters: dict[str, Any], stream: bool
) -> None:
    """The sampling parameters under the GenAI names and as Langfuse's model parameters."""
    for name, value in parameters.items():
        key = _PARAMETER_ATTRIBUTES.get(name)
        if key is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[key] = value
    stop = parameters.get("stop", parameters.get("stop_sequences"))
    if stop is not None:
        attributes[A.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else stop
    if isinstance(parameters.get("n"), int) and parameters["n"] != 1:
        attributes[A.GEN_AI_REQUEST_CHOICE_COUNT] = parameters["n"]
    if stream:
        attributes[A.GEN_AI_REQUEST_STREAM] = True
    if parameters:
        attributes[A.LANGFUSE_OBSERVATION_MODEL_PARAMETERS] = dumps(parameters)


def response_attributes(
    attributes: dict[str, Any], response: ParsedResponse, model: str | None, call: LLMCall
) -> None:
    """What came back, as attributes (content only when captured)."""
    if response.id:
        attributes[A.GEN_AI_RESPONSE_ID] = response.id
    if response.model:
        attributes[A.GEN_AI_RESPONSE_MODEL] = response.model
    if model:
        attributes[A.LANGFUSE_OBSERVATION_MODEL] = model
    if response.finish_reasons:
        attributes[A.GEN_AI_RESPONSE_FINISH_REASONS] = response.finish_reasons
    usage = response.usage
    if usage is not None:
        usage_attributes(attributes, usage)
    attributes.update(response.attributes)
    if response.error_message:
        attributes[A.LANGFUSE_OBSERVATION_STATUS_MESSAGE] = cut(
            response.error_message, call.options.max_attribute_length
        )
        # An error body, or an error event inside a stream that began with 200: either way
        # the generation failed.
        attributes[A.LANGFUSE_OBSERVATION_LEVEL] = "ERROR"
        if A.ERROR_TYPE not in attributes:
            attributes[A.ERROR_TYPE] = response.error_type or "error"
    if call.options.langfuse_content:
        _content(call, attributes, A.LANGFUSE_OBSERVATION_OUTPUT, response.output)
    if call.options.gen_ai_content and response.messages:
        _content(call, attributes, A.GEN_AI_OUTPUT_MESSAGES, response.messages)


def _content(call: LLMCall, attributes: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    mask = call.options.mask
    if mask is not None:
        try:
            value = mask(value)
        except Exception as exc:
            # Fail closed: content the mask could not clean is not recorded at all.
            call.failed("llm.mask", exc)
            return
        if value is None:
            return
    attributes[key] = cut(
        value if isinstance(value, str) else dumps(value), call.options.max_attribute_length
    )


def usage_attributes(attributes: dict[str, Any], usage: Usage) -> None:
    """Token counts under the GenAI names and as Langfuse's usage details."""
    token_attributes(
        attributes,
        usage.input,
        usage.output,
        usage.total,
        usage.cache_read,
        usage.cache_creation,
        usage.reasoning,
    )


def token_attributes(
    attributes: dict[str, Any],
    input_tokens: int | None,
    output_tokens: int | None,
    total: int | None,
    cache_read: int | None,
    cache_creation: int | None,
    reasoning: int | None,
) -> None:
    """:func:`usage_attributes` from the counts themselves."""
    if input_tokens is not None:
        attributes[A.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if cache_read:
        attributes[A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
    if cache_creation:
        attributes[A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_creation
    if reasoning:
        attributes[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reasoning
    # Langfuse prices each bucket separately, so cached and reasoning tokens are split out of
    # input and output rather than counted twice (as its own OpenAI usage mapping does).
    details: dict[str, int] = {}
    # Langfuse rejects negative counts; an inconsistent usage object must not produce one.
    if input_tokens is not None:
        details["input"] = max(0, input_tokens - ((cache_read or 0) + (cache_creation or 0)))
    if output_tokens is not None:
        details["output"] = max(0, output_tokens - (reasoning or 0))
    if cache_read:
        details["input_cached_tokens"] = cache_read
    if cache_creation:
        details["input_cache_creation"] = cache_creation
    if reasoning:
        details["output_reasoning_tokens"] = reasoning
    if total is None and input_tokens is not None and output_tokens is not None:
        total = input_tokens + output_tokens
    if total is not None:
        details["total"] = total
    if details:
        attributes[A.LANGFUSE_OBSERVATION_USAGE_DETAILS] = dumps(details)


def mark(attributes: dict[str, Any], key: str, value: str) -> None:
    """Set a marker attribute, keeping an earlier value (request and response both cut)."""
    previous = attributes.get(key)
    attributes[key] = value if previous is None else f"{previous}, {value}"


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated {len(text) - limit} chars]"
