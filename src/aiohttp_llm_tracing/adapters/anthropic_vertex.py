"""Anthropic's Messages API on Vertex AI: ``rawPredict`` and ``streamRawPredict``.

The bodies are Anthropic's own (``AnthropicMessages`` reads them); the model is named in the
path, percent-encoded, instead of the body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from .._sse import SSEEvent
from .anthropic_messages import AnthropicMessages
from .base import Adapter, ParsedRequest, ParsedResponse

__all__ = ["ADAPTERS", "AnthropicVertex"]

_VERTEX_PATH = re.compile(
    r"/publishers/anthropic/models/(?P<model>[^/:]+):(?P<op>rawPredict|streamRawPredict)$"
)
_MESSAGES = AnthropicMessages()


class AnthropicVertex:
    """``POST .../publishers/anthropic/models/{model}:rawPredict`` and ``:streamRawPredict``:
    Anthropic Messages bodies without ``model`` (it is in the path)."""

    operation = "chat"
    observation_type = "generation"
    provider = "gcp.vertex_ai"
    path_suffixes = (":rawPredict", ":streamRawPredict")

    def matches(self, path: str) -> bool:
        found = _VERTEX_PATH.search(path)
        # count-tokens:rawPredict counts a prompt; it generates nothing.
        return found is not None and found["model"] != "count-tokens"

    def provider_for(self, path: str) -> str:
        """Always Vertex AI: the same Messages shape on Anthropic's own API is another adapter."""
        return self.provider

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        request = _MESSAGES.parse_request(body, path)
        found = _VERTEX_PATH.search(path)
        if found is not None:
            request.model = unquote(found["model"])
            request.stream = request.stream or found["op"] == "streamRawPredict"
        return request

    def parse_response(self, body: Any) -> ParsedResponse:
        return _MESSAGES.parse_response(body)

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        return _MESSAGES.parse_stream(events)


ADAPTERS: tuple[Adapter, ...] = (AnthropicVertex(),)
"""This module's adapters, in matching order."""
