"""Gemini (AI Studio and Vertex): generateContent, streamGenerateContent, embedContent,
batchEmbedContents.

The model is in the path, not the body: ``.../models/{model}:{action}`` on AI Studio
(``/v1beta``, ``/v1``, or bare ``/models`` as litellm sends it) and
``/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:{action}`` on
Vertex AI. Field names are proto JSON: camelCase, but snake_case is accepted too because SDKs
send either (google-genai sends ``thinkingConfig.thinking_budget``, litellm
``max_output_tokens``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote

from .. import _attributes as A
from .._sse import SSEEvent
from . import _common as c
from . import _gemini_parts as schema
from ._gemini_parts import field
from .base import Adapter, ParsedRequest, ParsedResponse, Usage

__all__ = ["ADAPTERS", "GeminiEmbeddings", "GeminiGenerateContent"]

# generationConfig field -> the parameter name the LLM layer maps onto gen_ai.request.*
_PARAMETERS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "maxOutputTokens": "max_tokens",
    "stopSequences": "stop_sequences",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    # "n" is what the LLM layer turns into gen_ai.request.choice_count.
    "candidateCount": "n",
    "responseMimeType": "response_mime_type",
}
# Finish reasons that mean the answer was withheld, not merely ended.
_BLOCKED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_GENERATE = ("generateContent", "streamGenerateContent")
_EMBED = ("embedContent", "batchEmbedContents")
# The segment before "{model}:{action}" in every path family the API has.
_COLLECTIONS = frozenset({"models", "tunedModels", "endpoints"})


def _suffixes(actions: tuple[str, ...]) -> tuple[str, ...]:
    # The colon may arrive percent-encoded when a caller built the URL from an encoded string.
    return tuple(f"{sep}{a}" for a in actions for sep in (":", "%3A", "%3a"))


def split_path(path: str) -> tuple[str | None, str | None]:
    """``(model, action)`` of a ``.../{collection}/{model}:{action}`` path, percent-decoded."""
    head, _, last = path.rpartition("/")
    name, sep, action = unquote(last).rpartition(":")
    if not sep or head.rpartition("/")[2] not in _COLLECTIONS:
        return None, None
    return (name or None), action


def provider_for(path: str) -> str:
    """``gcp.vertex_ai`` for Vertex AI paths (projects, publishers, endpoints), else AI Studio."""
    vertex = "/projects/" in path or "/publishers/" in path or "/endpoints/" in path
    return "gcp.vertex_ai" if vertex else "gcp.gemini"


class _GeminiPaths:
    """Path matching and provider choice shared by the Gemini adapters."""

    actions: tuple[str, ...] = ()

    def matches(self, path: str) -> bool:
        return split_path(path)[1] in self.actions

    def provider_for(self, path: str) -> str:
        return provider_for(path)


class GeminiGenerateContent(_GeminiPaths):
    """``:generateContent`` and ``:streamGenerateContent`` (SSE with ``alt=sse``, otherwise a
    JSON array of chunks, which arrives whole in :meth:`parse_response`)."""

    operation = "generate_content"
    observation_type = "generation"
    provider = "gcp.gemini"
    actions = _GENERATE
    path_suffixes = _suffixes(_GENERATE)

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        model, action = split_path(path)
        contents = field(body, "contents")
        # The REST API wants a list; a lone Content is tolerated by the server, so here too.
        contents = [contents] if isinstance(contents, dict) else c.as_list(contents)
        system = field(body, "systemInstruction")
        tools = c.as_list(field(body, "tools"))
        extra = {"systemInstruction": system, "tools": tools or None}
        extra = {k: v for k, v in extra.items() if v is not None}
        langfuse_input = {"contents": contents, **extra} if extra else contents
        return ParsedRequest(
            model=model,
            parameters=_parameters(c.as_dict(field(body, "generationConfig"))),
            input=langfuse_input,
            messages=[
                {"role": schema.role(field(m, "role")), "parts": schema.parts(field(m, "parts"))}
                for m in contents
                if isinstance(m, dict)
            ]
            if c.messages_wanted()
            else None,
            system_instructions=schema.system_parts(system),
            tools=schema.tool_definitions(tools),
            stream=action == "streamGenerateContent",
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        if isinstance(body, list):  # the JSON-array stream, whole
            return _Merger().fold((chunk, None) for chunk in body)
        error = _error(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        candidates = [x for x in c.as_list(field(body, "candidates")) if isinstance(x, dict)]
        contents = [c.as_dict(field(x, "content")) for x in candidates]
        reasons = [c.opt_str(field(x, "finishReason")) for x in candidates]
        answered = any(c.as_list(field(x, "parts")) for x in contents)
        result = ParsedResponse(
            id=c.opt_str(field(body, "responseId")),
            model=c.opt_str(field(body, "modelVersion")),
            finish_reasons=[r for r in reasons if r],
            output=c.single_or_list(contents) if answered else None,
            messages=[
                {"role": "assistant", "parts": schema.parts(field(x, "parts")), "finish_reason": r}
                for x, r in zip(contents, reasons)
            ]
            if answered and c.messages_wanted()
            else None,
            usage=_usage(field(body, "usageMetadata")),
        )
        _blocked(result, c.as_dict(field(body, "promptFeedback")), answered)
        return result

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return _Merger().fold((c.json_loads(e.data), e.offset) for e in events)


class _Merger:
    """Folds stream chunks into one response: text runs per candidate are joined once at the
    end (appending per delta is quadratic), and only the last chunk's usage counts (every
    chunk repeats a prompt-only usageMetadata, so a sum would count the prompt many times)."""

    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        # candidate index -> ordered segments: [kind, pieces] for text runs, or [None, part]
        self.segments: dict[int, list[list[Any]]] = {}
        self.reasons: dict[int, str] = {}
        self.first: int | None = None
        self.error: ParsedResponse | None = None

    def fold(self, chunks: Iterable[tuple[Any, int | None]]) -> ParsedResponse:
        """The response the ``(chunk, byte offset)`` pairs add up to; an error chunk ends it."""
        for chunk, offset in chunks:
            self.error = _error(chunk)
            if self.error is not None:
                break
            self.add(chunk, offset)
        return self.result()

    def add(self, chunk: Any, offset: int | None) -> None:
        """Fold one chunk that is not an error."""
        chunk = c.as_dict(chunk)
        for key in ("responseId", "modelVersion", "usageMetadata", "promptFeedback"):
            value = field(chunk, key)
            if value is not None:
                self.top[key] = value
        for position, cand in enumerate(c.as_list(field(chunk, "candidates"))):
            cand = c.as_dict(cand)
            index = c.opt_int(field(cand, "index"))
            index = position if index is None else index
            segments = self.segments.setdefault(index, [])
            for part in c.as_list(field(c.as_dict(field(cand, "content")), "parts")):
                if self._add_part(segments, part) and self.first is None:
                    self.first = offset
            reason = c.opt_str(field(cand, "finishReason"))
            if reason:
                self.reasons[index] = reason

    @staticmethod
    def _add_part(segments: list[list[Any]], part: Any) -> bool:
        if not isinstance(part, dict) or not part:
            return False
        text = part.get("text")
        if isinstance(text, str):
            # Extra keys (thoughtSignature) are opaque and dropped from the merged text.
            kind = "thought" if part.get("thought") is True else "text"
            if segments and segments[-1][0] == kind:
                segments[-1][1].append(text)
            else:
                segments.append([kind, [text]])
            return bool(text)
        segments.append([None, part])  # function calls arrive whole, in one chunk
        return True

    def result(self) -> ParsedResponse:
        candidates = []
        for index in sorted(set(self.segments) | set(self.reasons)):
            parts: list[Any] = []
            for kind, value in self.segments.get(index, []):
                if kind is None:
                    parts.append(value)
                else:
                    joined = "".join(value)
                    parts.append(
                        {"text": joined, "thought": True} if kind == "thought" else {"text": joined}
                    )
            cand: dict[str, Any] = {"index": index}
            if parts:
                cand["content"] = {"role": "model", "parts": parts}
            if index in self.reasons:
                cand["finishReason"] = self.reasons[index]
            candidates.append(cand)
        body = dict(self.top)
        if candidates:
            body["candidates"] = candidates
        result = GeminiGenerateContent().parse_response(body)
        if self.error is not None:
            self.error.id, self.error.model = result.id, result.model
            self.error.usage, result = result.usage, self.error
        result.first_chunk_offset = self.first
        return result


class GeminiEmbeddings(_GeminiPaths):
    """``:embedContent`` and ``:batchEmbedContents``: recorded as the vector count and size."""

    operation = "embeddings"
    observation_type = "embedding"
    provider = "gcp.gemini"
    actions = _EMBED
    path_suffixes = _suffixes(_EMBED)

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        requests = [r for r in c.as_list(field(body, "requests")) if isinstance(r, dict)]
        first = requests[0] if requests else body
        parameters = {}
        for name, key in (("outputDimensionality", "dimensions"), ("taskType", "task_type")):
            value = field(first, name)
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                parameters[key] = value
        if requests or "requests" in body:
            texts: Any = [field(r, "content") for r in requests]
        else:
            texts = field(body, "content")
        return ParsedRequest(model=split_path(path)[0], parameters=parameters, input=texts)

    def parse_response(self, body: Any) -> ParsedResponse:
        error = _error(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        single = field(body, "embedding")
        vectors = [single] if isinstance(single, dict) else c.as_list(field(body, "embeddings"))
        values = [field(v, "values") for v in vectors if isinstance(v, dict)]
        return _embedding_result(values, _usage(field(body, "usageMetadata")))

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return ParsedResponse()


def _embedding_result(values: list[Any], usage: Usage | None) -> ParsedResponse:
    dimensions = len(values[0]) if values and isinstance(values[0], list) else None
    return ParsedResponse(
        output={"count": len(values), "dimensions": dimensions} if values else None,
        usage=usage,
        attributes={} if dimensions is None else {A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: dimensions},
    )


def _error(body: Any) -> ParsedResponse | None:
    """Gemini's (google.rpc.Status) error body, ``{"error": {"code", "message", "status"}}``;
    a JSON-array stream that failed is a one-element list of it."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    error = c.as_dict(body).get("error")
    if not isinstance(error, dict):
        return c.error_response(body)  # a plain string error, or None
    kind = c.opt_str(error.get("status")) or error.get("code")
    return ParsedResponse(
        error_message=c.opt_str(error.get("message")) or str(kind or "error"),
        error_type=None if kind is None else str(kind),
        output={"error": error},
    )


def _blocked(result: ParsedResponse, feedback: dict[str, Any], answered: bool) -> None:
    """Mark a safety block as the call's error: the prompt refused, or an answer withheld."""
    reason = c.opt_str(field(feedback, "blockReason"))
    if reason and not answered:
        detail = c.opt_str(field(feedback, "blockReasonMessage"))
        result.error_message = f"Prompt blocked: {reason}" + (f" ({detail})" if detail else "")
        result.error_type = reason
        result.output = {"promptFeedback": feedback}
        return
    withheld = [r for r in result.finish_reasons if r in _BLOCKED]
    if withheld and not answered:
        result.error_message = f"Response blocked: {withheld[0]}"
        result.error_type = withheld[0]


def _usage(value: Any) -> Usage | None:
    usage = c.as_dict(value)
    if not usage:
        return None
    prompt = c.opt_int(field(usage, "promptTokenCount"))
    # Tool-use prompt tokens (search results fed back in) are billed as input and are part of
    # totalTokenCount; promptTokenCount already includes cachedContentTokenCount.
    tool_prompt = c.opt_int(field(usage, "toolUsePromptTokenCount"))
    if tool_prompt:
        prompt = (prompt or 0) + tool_prompt
    candidates = c.opt_int(field(usage, "candidatesTokenCount"))
    thoughts = c.opt_int(field(usage, "thoughtsTokenCount"))
    # Gemini counts thinking apart from the answer; the Usage convention counts it in output.
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return Usage(
        input=prompt,
        output=output,
        total=c.opt_int(field(usage, "totalTokenCount")),
        cache_read=c.opt_int(field(usage, "cachedContentTokenCount")) or None,
        reasoning=thoughts or None,
    )


def _parameters(config: dict[str, Any]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for name, key in _PARAMETERS.items():
        value = field(config, name)
        if isinstance(value, (str, int, float)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            parameters[key] = value
    budget = field(c.as_dict(field(config, "thinkingConfig")), "thinkingBudget")
    if c.opt_int(budget) is not None:
        parameters["thinking_budget"] = budget
    return parameters


ADAPTERS: tuple[Adapter, ...] = (
    GeminiGenerateContent(),
    GeminiEmbeddings(),
)
"""This module's adapters, in matching order."""
