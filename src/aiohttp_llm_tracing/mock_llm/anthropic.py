"""Anthropic Messages wire shape, JSON and SSE.

Also Anthropic on Vertex AI: ``POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/
anthropic/models/{model}:rawPredict`` (and ``:streamRawPredict``) take the same body without
``model`` (``anthropic_version: vertex-2023-10-16``); the model is the path's, and the body's
``stream`` picks JSON or SSE, as on ``/v1/messages``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._wire import Built, chunk_count, count_tokens, llm_handler, prompt_of, split, sse


@llm_handler
def _messages(request: web.Request, body: dict[str, Any], model: str) -> Built:
    _, text, itok = prompt_of(body)
    msg: dict[str, Any] = {"id": "msg_mock_1", "type": "message", "role": "assistant"}
    msg["model"] = model
    done = {"stop_reason": "end_turn", "stop_sequence": None}
    if not body.get("stream"):
        usage = {"input_tokens": itok, "output_tokens": count_tokens(text)}
        return {**msg, "content": [{"type": "text", "text": text}], **done, "usage": usage}

    def ev(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, event=kind)

    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None}
    deltas = [{"type": "text_delta", "text": p} for p in split(text, chunk_count(request))]
    return [
        ev("message_start", message={**start, "usage": {"input_tokens": itok, "output_tokens": 1}}),
        ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        *(ev("content_block_delta", index=0, delta=d) for d in deltas),
        ev("content_block_stop", index=0),
        ev("message_delta", delta=done, usage={"output_tokens": count_tokens(text)}),
        ev("message_stop"),
    ], 2


def add_routes(app: web.Application) -> None:
    """``POST /v1/messages`` and Vertex AI's ``...:rawPredict`` / ``...:streamRawPredict``."""
    app.router.add_post("/v1/messages", _messages)
    # A Vertex body has no "model": model_of() falls back to the path's, match_info["model"].
    vertex = "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers/anthropic/"
    action = "{action:rawPredict|streamRawPredict}"
    app.router.add_post(vertex + "models/{model:[^/:]+}:" + action, _messages)
