"""LLM API shapes. One module per API; adding a shape touches one file and this list."""

from __future__ import annotations

from . import anthropic_vertex, bedrock, cohere, gemini, ollama, textgen
from .anthropic_messages import AnthropicMessages
from .base import Adapter, ParsedRequest, ParsedResponse, Usage
from .openai_chat import OpenAIChat
from .openai_completions import OpenAICompletions
from .openai_embeddings import OpenAIEmbeddings
from .openai_responses import OpenAIResponses

__all__ = [
    "DEFAULT_ADAPTERS",
    "Adapter",
    "AnthropicMessages",
    "OpenAIChat",
    "OpenAICompletions",
    "OpenAIEmbeddings",
    "OpenAIResponses",
    "ParsedRequest",
    "ParsedResponse",
    "Usage",
]

# Order matters: the first adapter whose ``matches`` accepts the path wins.
DEFAULT_ADAPTERS: tuple[Adapter, ...] = (
    OpenAIChat(),
    OpenAICompletions(),
    OpenAIEmbeddings(),
    OpenAIResponses(),
    AnthropicMessages(),
    *gemini.ADAPTERS,
    *bedrock.ADAPTERS,
    *anthropic_vertex.ADAPTERS,
    *cohere.ADAPTERS,
    # Ollama's /api/generate ends with /generate too: it must be tried before TGI and SGLang.
    *ollama.ADAPTERS,
    *textgen.ADAPTERS,
)
