"""Every attribute name this library emits, in one place.

HTTP and GenAI names come from the OpenTelemetry semantic-conventions package so they track
the spec; the Langfuse and ``llm_tracing.*`` names are ours or Langfuse's and have no constants
upstream.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import (
    error_attributes,
    exception_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
)

# HTTP (stable semantic conventions).
HTTP_REQUEST_METHOD: Final = http_attributes.HTTP_REQUEST_METHOD
HTTP_REQUEST_METHOD_ORIGINAL: Final = http_attributes.HTTP_REQUEST_METHOD_ORIGINAL
HTTP_RESPONSE_STATUS_CODE: Final = http_attributes.HTTP_RESPONSE_STATUS_CODE
URL_FULL: Final = url_attributes.URL_FULL
SERVER_ADDRESS: Final = server_attributes.SERVER_ADDRESS
SERVER_PORT: Final = server_attributes.SERVER_PORT
NETWORK_PROTOCOL_VERSION: Final = network_attributes.NETWORK_PROTOCOL_VERSION
ERROR_TYPE: Final = error_attributes.ERROR_TYPE
EXCEPTION_MESSAGE: Final = exception_attributes.EXCEPTION_MESSAGE
EXCEPTION_STACKTRACE: Final = exception_attributes.EXCEPTION_STACKTRACE

# GenAI (development-status semantic conventions).
GEN_AI_OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_TEMPERATURE: Final = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_MAX_TOKENS: Final = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TOP_P: Final = _gen_ai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_TOP_K: Final = _gen_ai.GEN_AI_REQUEST_TOP_K
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY
GEN_AI_REQUEST_STOP_SEQUENCES: Final = _gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_REQUEST_SEED: Final = _gen_ai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_CHOICE_COUNT: Final = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_REQUEST_STREAM: Final = _gen_ai.GEN_AI_REQUEST_STREAM
GEN_AI_REQUEST_ENCODING_FORMATS: Final = _gen_ai.GEN_AI_REQUEST_ENCODING_FORMATS
GEN_AI_RESPONSE_ID: Final = _gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_MODEL: Final = _gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_FINISH_REASONS: Final = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = _gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
GEN_AI_USAGE_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = _gen_ai.GEN_AI_EMBEDDINGS_DIMENSION_COUNT
GEN_AI_INPUT_MESSAGES: Final = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES: Final = _gen_ai.GEN_AI_OUTPUT_MESSAGES
GEN_AI_SYSTEM_INSTRUCTIONS: Final = _gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
GEN_AI_TOOL_DEFINITIONS: Final = _gen_ai.GEN_AI_TOOL_DEFINITIONS

# Langfuse (read by its OTLP ingestion; JSON-valued ones are JSON strings).
LANGFUSE_OBSERVATION_TYPE: Final = "langfuse.observation.type"
LANGFUSE_OBSERVATION_INPUT: Final = "langfuse.observation.input"
LANGFUSE_OBSERVATION_OUTPUT: Final = "langfuse.observation.output"
LANGFUSE_OBSERVATION_MODEL: Final = "langfuse.observation.model.name"
LANGFUSE_OBSERVATION_MODEL_PARAMETERS: Final = "langfuse.observation.model.parameters"
LANGFUSE_OBSERVATION_USAGE_DETAILS: Final = "langfuse.observation.usage_details"
LANGFUSE_OBSERVATION_COMPLETION_START_TIME: Final = "langfuse.observation.completion_start_time"
LANGFUSE_OBSERVATION_LEVEL: Final = "langfuse.observation.level"
LANGFUSE_OBSERVATION_STATUS_MESSAGE: Final = "langfuse.observation.status_message"
LANGFUSE_TRACE_NAME: Final = "langfuse.trace.name"
LANGFUSE_TRACE_TAGS: Final = "langfuse.trace.tags"
LANGFUSE_TRACE_METADATA_PREFIX: Final = "langfuse.trace.metadata."
LANGFUSE_RELEASE: Final = "langfuse.release"
LANGFUSE_VERSION: Final = "langfuse.version"
LANGFUSE_ENVIRONMENT: Final = "langfuse.environment"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"

# Ours.
REQUEST_ID: Final = "llm_tracing.request_id"
END_REASON: Final = "llm_tracing.end_reason"
BODY_TRUNCATED: Final = "llm_tracing.body_truncated"
PARSE_ERROR: Final = "llm_tracing.parse_error"
