"""Text-generation server wire shapes: TGI /generate and /generate_stream, SGLang /generate.

``POST /generate`` is SGLang's when the body has ``text``, ``input_ids`` or ``sampling_params``
(and no ``inputs``), else TGI's; ``POST /generate_stream`` is always TGI's. The answer is
``"Mock answer to: <first 40 chars of the prompt>"``, one mock token per word.

Neither server reads a model from the body, so the behaviours are chosen by a ``model`` the
caller adds: at the top level (TGI and SGLang ignore it), or as ``parameters.model`` (TGI) or
``sampling_params.model`` (SGLang):

* any model: TGI answers ``{"generated_text"}``, plus ``details`` (``finish_reason``,
  ``generated_tokens``, ``seed``, ``prefill``, ``tokens``) when ``parameters.details`` is true;
  ``prefill`` lists one entry per prompt word only with ``decoder_input_details``, as TGI does.
  Its stream sends ``data:{...}`` (no space, as TGI's axum does) per token: ``index`` (from
  1), ``token``, and on the last ``generated_text`` and, with ``details``, ``details`` with
  ``input_length``. The answer ends with a special ``</s>`` token (``eos_token``) unless
  ``max_new_tokens`` cut it first (``length``). SGLang answers ``{"text", "output_ids",
  "meta_info"}``; with ``stream: true`` its SSE events each carry the *whole text so far*
  (``metadata.mock_chunks`` events, default 8), then ``data: [DONE]``;
* a model containing ``cached``: SGLang's ``meta_info.cached_tokens`` is half the prompt;
* ``error-<status>``: TGI's ``{"error": "...", "error_type": "..."}`` or SGLang's
  ``{"error": {"message": "..."}}`` with that status (on /generate_stream too, as a gateway in
  front of TGI answers);
* ``stream-error``: a 200 stream of two tokens, then the error event the server sends when
  generation fails (TGI's ``error_type: generation``; SGLang's, then ``[DONE]``);
* ``truncated-sse``, ``never-ending``, ``invalid-json``, ``binary``, ``unknown-shape``,
  ``huge``, ``slow-headers``, ``gzip``/``deflate``/``br``: as in :func:`._wire.special`.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from aiohttp import web

from ._wire import (
    BODY,
    Built,
    body_of,
    chunk_count,
    count_tokens,
    error_status,
    llm_handler,
    model_of,
    sse,
)

EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}
SGLANG_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TGI_ERRORS = {
    400: ("Input validation error: `inputs` must not be empty", "validation"),
    422: ("Input validation error: `temperature` must be strictly positive", "validation"),
    424: ("Request failed during generation: Server error: mock failure", "generation"),
    429: ("Model is overloaded", "overloaded"),
    500: ("Incomplete generation", "incomplete_generation"),
}
FAILURE = "Request failed during generation: Server error: CUDA out of memory (mock)"


def _is_sglang(body: dict[str, Any]) -> bool:
    return "inputs" not in body and any(
        key in body for key in ("text", "input_ids", "sampling_params", "input_embeds")
    )


def _params(body: dict[str, Any]) -> dict[str, Any]:
    found = body.get("sampling_params" if _is_sglang(body) else "parameters")
    return found if isinstance(found, dict) else {}


def _words(text: str) -> list[str]:
    # Mock tokens: each word with the whitespace before it, so they join back into the text.
    return re.findall(r"\s*\S+", text) or [text]


def _answer(prompt: str, params: dict[str, Any]) -> tuple[list[str], bool]:
    """The answer's tokens and whether ``max_new_tokens`` cut it short."""
    words = _words(f"Mock answer to: {prompt[:40]}")
    cap = params.get("max_new_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 < cap < len(words):
        return words[:cap], True
    return words, False


def _tgi_token(i: int, text: str) -> dict[str, Any]:
    return {"id": 1000 + i, "text": text, "logprob": -0.5, "special": False}


@llm_handler
def _tgi(request: web.Request, body: dict[str, Any], model: str) -> Built:
    inputs: str = body["inputs"] if isinstance(body.get("inputs"), str) else ""
    params = _params(body)
    words, cut = _answer(inputs, params)
    tokens = [_tgi_token(i, w) for i, w in enumerate(words)] + ([] if cut else [EOS])
    text = "".join(words)
    if params.get("return_full_text") is True:
        text = inputs + text
    finish = "length" if cut else "eos_token"
    seed = params.get("seed") if isinstance(params.get("seed"), int) else None
    if not request.path.endswith("/generate_stream"):
        out: dict[str, Any] = {"generated_text": text}
        if params.get("details") is True:
            prefill = []
            if params.get("decoder_input_details") is True:
                prefill = [
                    {"id": 500 + i, "text": w, "logprob": None if i == 0 else -1.0}
                    for i, w in enumerate(_words(inputs))
                ]
            out["details"] = {
                "finish_reason": finish,
                "generated_tokens": len(tokens),
                "seed": seed,
                "prefill": prefill,
                "tokens": tokens,
            }
        return out

    def event(payload: dict[str, Any]) -> bytes:
        return b"data:" + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    if model == "stream-error":
        failure = {"error": FAILURE, "error_type": "generation"}
        events = [
            event({"index": i + 1, "token": t, "generated_text": None, "details": None})
            for i, t in enumerate(tokens[:2])
        ]
        return [*events, event(failure)], 0
    events = []
    for i, token in enumerate(tokens, 1):
        last = i == len(tokens)
        payload = {"index": i, "token": token, "generated_text": text if last else None}
        payload["details"] = None
        if last and params.get("details") is True:
            payload["details"] = {
                "finish_reason": finish,
                "generated_tokens": len(tokens),
                "seed": seed,
                "input_length": count_tokens(inputs),
            }
        events.append(event(payload))
    return events, 0


@llm_handler
def _sglang(request: web.Request, body: dict[str, Any], model: str) -> Built:
    prompt: str = body["text"] if isinstance(body.get("text"), str) else ""
    ids = body.get("input_ids")
    prompt_tokens = len(ids) if isinstance(ids, list) and not prompt else count_tokens(prompt)
    words, cut = _answer(prompt, _params(body))
    text = "".join(words)
    finish = {"type": "length", "length": len(words)} if cut else {"type": "stop", "matched": 2}
    meta: dict[str, Any] = {
        "id": SGLANG_ID,
        "finish_reason": finish,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(words),
        "cached_tokens": prompt_tokens // 2 if "cached" in model else 0,
        "e2e_latency": 0.012,
    }
    output_ids = [1000 + i for i in range(len(words))]
    if not body.get("stream"):
        return {"text": text, "output_ids": output_ids, "meta_info": meta}
    # Whole tokens per event (SGLang streams at token boundaries), the text so far in each.
    n = chunk_count(request)
    cuts = sorted({len(words) * i // max(1, n) for i in range(n + 1)})
    groups = [words[a:b] for a, b in itertools.pairwise(cuts)]
    if model == "stream-error":
        groups = groups[:2]
    events, done = [], 0
    for i, group in enumerate(groups):
        done += len(group)
        last = i == len(groups) - 1 and model != "stream-error"
        step = {**meta, "finish_reason": finish if last else None, "completion_tokens": done}
        so_far = "".join(words[:done])
        events.append(sse({"text": so_far, "output_ids": output_ids[:done], "meta_info": step}))
    if model == "stream-error":
        events.append(sse({"error": {"message": FAILURE}}))
    return [*events, sse("[DONE]")], 0


def _error(request: web.Request, sglang: bool) -> web.Response | None:
    """The server's own error body for ``error-<status>`` models, else None.

    It must run before :func:`._wire.special`, which would answer in OpenAI's shape.
    """
    model = model_of(request)
    status = error_status(model)
    if status is None:
        return None
    message, kind = TGI_ERRORS.get(status, ("Mock error", "generation"))
    body: dict[str, Any] = {"error": message, "error_type": kind}
    if sglang:
        body = {"error": {"message": message}}
    return web.json_response(body, status=status, headers={"retry-after-ms": "10"})


async def _generate(request: web.Request) -> web.StreamResponse:
    body = body_of(request)
    sglang = not request.path.endswith("/generate_stream") and _is_sglang(body)
    model = body.get("model") or _params(body).get("model")
    if model and "model" not in body:
        # The shared helpers read the top-level model; the recorded request stays as sent.
        request[BODY] = {**body, "model": model}
    error = _error(request, sglang)
    if error is not None:
        return error
    return await (_sglang if sglang else _tgi)(request)


def add_routes(app: web.Application) -> None:
    """Register this API's paths on ``app``."""
    app.router.add_post("/generate", _generate)
    app.router.add_post("/generate_stream", _generate)
