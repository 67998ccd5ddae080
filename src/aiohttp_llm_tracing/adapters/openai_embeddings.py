"""OpenAI-compatible embeddings (``/v1/embeddings``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from .. import _attributes as A
from .._sse import SSEEvent
from . import _common as c
from .base import ParsedRequest, ParsedResponse


class OpenAIEmbeddings:
    """``POST .../embeddings``: the output recorded is the vector count and size, not vectors."""

    operation = "embeddings"
    observation_type = "embedding"
    provider = "openai"
    path_suffixes = ("/embeddings",)

    def matches(self, path: str) -> bool:
        return path.endswith("/embeddings")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        attributes: dict[str, Any] = {}
        if isinstance(body.get("encoding_format"), str):
            attributes[A.GEN_AI_REQUEST_ENCODING_FORMATS] = [body["encoding_format"]]
        return ParsedRequest(
            model=c.opt_str(body.get("model")) or c.azure_deployment(path),
            parameters=c.pick(body, ("dimensions", "encoding_format")),
            input=body.get("input"),
            attributes=attributes,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        data = [d for d in c.as_list(body.get("data")) if isinstance(d, dict)]
        dimensions = _dimensions(data[0].get("embedding")) if data else None
        attributes = {}
        if dimensions is not None:
            attributes[A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimensions
        return ParsedResponse(
            model=c.opt_str(body.get("model")),
            output={"count": len(data), "dimensions": dimensions} if data else None,
            usage=c.openai_usage(body.get("usage")),
            attributes=attributes,
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return ParsedResponse()


def _dimensions(embedding: Any) -> int | None:
    if isinstance(embedding, list):
        return len(embedding)
    if isinstance(embedding, str):  # base64 of little-endian float32, as the openai SDK asks
        try:
            return len(base64.b64decode(embedding, validate=False)) // 4
        except ValueError:
            return None
    return None
