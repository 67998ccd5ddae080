"""OpenAI legacy text completions (``/v1/completions``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._sse import SSEEvent
from . import _common as c
from .base import ParsedRequest, ParsedResponse

_PARAMETERS = (
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "seed",
    "n",
    "best_of",
)


class OpenAICompletions:
    """``POST .../completions`` (not chat): ``prompt`` in, ``choices[].text`` out."""

    operation = "text_completion"
    observation_type = "generation"
    provider = "openai"
    path_suffixes = ("/completions",)

    def matches(self, path: str) -> bool:
        return path.endswith("/completions") and not path.endswith("/chat/completions")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        body = c.as_dict(body)
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return ParsedRequest(
            model=c.opt_str(body.get("model")) or c.azure_deployment(path),
            parameters=c.pick(body, _PARAMETERS),
            input=prompt,
            messages=[
                {"role": "user", "parts": [{"type": "text", "content": p}]}
                for p in prompts
                if isinstance(p, str)
            ]
            if c.messages_wanted()
            else None,
            stream=body.get("stream") is True,
        )

    def parse_response(self, body: Any) -> ParsedResponse:
        error = c.error_response(body)
        if error is not None:
            return error
        body = c.as_dict(body)
        choices = [ch for ch in c.as_list(body.get("choices")) if isinstance(ch, dict)]
        return self._result(
            body.get("id"),
            body.get("model"),
            [(ch.get("text") or "", ch.get("finish_reason")) for ch in choices],
            c.openai_usage(body.get("usage")),
            None,
        )

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        texts: dict[int, list[str]] = {}
        finish: dict[int, Any] = {}
        response_id = model = None
        usage = None
        first = None
        for event in events:
            chunk = c.json_loads(event.data) if event.data != "[DONE]" else None
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                error = c.error_response(chunk)
                if error is not None:
                    error.id, error.model = c.opt_str(response_id), c.opt_str(model)
                    error.first_chunk_offset = first
                    return error
            response_id = response_id or chunk.get("id")
            model = model or chunk.get("model")
            if chunk.get("usage"):
                usage = c.openai_usage(chunk["usage"])
            for choice in c.as_list(chunk.get("choices")):
                choice = c.as_dict(choice)
                index = choice.get("index", 0)
                index = index if isinstance(index, int) else 0
                text = choice.get("text")
                if isinstance(text, str) and text:
                    texts.setdefault(index, []).append(text)
                    first = event.offset if first is None else first
                if choice.get("finish_reason"):
                    finish[index] = choice["finish_reason"]
        pairs = [("".join(texts.get(i, [])), finish.get(i)) for i in sorted({*texts, *finish})]
        return self._result(response_id, model, pairs, usage, first)

    @staticmethod
    def _result(
        response_id: Any, model: Any, pairs: list[tuple[str, Any]], usage: Any, first: int | None
    ) -> ParsedResponse:
        texts = [text for text, _ in pairs]
        return ParsedResponse(
            id=c.opt_str(response_id),
            model=c.opt_str(model),
            finish_reasons=[str(r) for _, r in pairs if r],
            output=c.single_or_list(texts),
            messages=[
                {"role": "assistant", "parts": [{"type": "text", "content": t}], "finish_reason": r}
                for t, r in pairs
            ]
            if c.messages_wanted()
            else None,
            usage=usage,
            first_chunk_offset=first,
        )
