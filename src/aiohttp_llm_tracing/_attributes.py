"""Every attribute name this library emits, in one place.

HTTP names come from the OpenTelemetry semantic-conventions package (stable). The GenAI names
are written out here: the package marks every ``gen_ai`` constant deprecated from 0.65b0 on (the
conventions moved to their own repository), so importing them would warn, and a rename there
must not silently rename what we export. The Langfuse and ``llm_tracing.*`` names are Langfuse's
or ours and have no constants upstream.
"""

from __future__ import annotations

from typing import Final

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

# GenAI (development-status semantic conventions, as of semconv 1.41).
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"

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
