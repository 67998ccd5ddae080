"""Text-generation servers for benchmark harnesses: TGI /generate and /generate_stream,
SGLang /generate.

Both servers answer ``POST /generate`` and the LLM layer matches on the path alone, so one
adapter serves both and tells them apart by the body: a TGI request has ``inputs`` and
``parameters``, an SGLang request ``text`` (or ``input_ids``) and ``sampling_params``; a TGI
answer has ``generated_text`` (or a ``token`` per stream event), an SGLang answer ``text`` and
``meta_info``. vLLM's OpenAI-compatible server needs nothing here: the OpenAI adapters read it.

Neither server names the model in its bodies (TGI puts it in a response header, which adapters
do not see), so the model is known only when the caller put one in the request: ``model`` at the
top level, or in ``parameters``/``sampling_params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._sse import SSEEvent
from . import _common as c
from .base import Adapter, ParsedRequest, ParsedResponse, Usage

__all__ = ["ADAPTERS", "TextGeneration"]

TGI = "tgi"
"""``gen_ai.provider.name`` for TGI: the GenAI registry has no Hugging Face value."""
SGLANG = "sglang"

# The API's parameter name -> the name the LLM layer maps to gen_ai.request.* (or kept as is).
_TGI_PARAMETERS = {
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "typical_p": "typical_p",
    "repetition_penalty": "repetition_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "do_sample": "do_sample",
    "best_of": "best_of",
    "truncate": "truncate",
    "return_full_text": "return_full_text",
}
_SGLANG_PARAMETERS = {
    "max_new_tokens": "max_tokens",
    "min_new_tokens": "min_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repetition_penalty": "repetition_penalty",
    "sampling_seed": "seed",
    "stop": "stop",
    "ignore_eos": "ignore_eos",
    "n": "n",
}
_SGLANG_REQUEST_KEYS = ("text", "input_ids", "sampling_params", "input_embeds")


class TextGeneration:
    """``POST .../generate`` (TGI or SGLang, by body) and ``POST .../generate_stream`` (TGI)."""

    operation = "text_completion"
    observation_type = "generation"
    provider = TGI
    """The provider until the request body is read; an SGLang body overrides it."""
    path_suffixes = ("/generate", "/generate_stream")

    def matches(self, path: str) -> bool:
        """TGI and SGLang paths, but not Ollama's ``/api/generate`` (another shape entirely)."""
        if path.endswith("/generate_stream"):
            return True
        return path.endswith("/generate") and not path.endswith("/api/generate")

    def parse_request(self, body: Any, path: str) -> ParsedRequest:
        """TGI's ``inputs``/``parameters`` or SGLang's ``text``/``sampling_params``."""
        body = c.as_dict(body)
        if "inputs" not in body and any(key in body for key in _SGLANG_REQUEST_KEYS):
            return _sglang_request(body)
        return _tgi_request(body, path)

    def parse_response(self, body: Any) -> ParsedResponse:
        """One answer, or a list of them (TGI's compatibility route, SGLang batches)."""
        items = body if isinstance(body, list) else [body]
        if len(items) == 1:
            error = _error(items[0])
            if error is not None:
                return error
        outputs = [out for out in map(_output, items) if out is not None]
        return _result(outputs, None)

    def parse_stream(self, events: Sequence[SSEEvent]) -> ParsedResponse:
        """TGI's one-token events or SGLang's events carrying the text so far."""
        tgi = _TGIStream()
        sglang: dict[int, _SGLangSlot] = {}
        first = None
        for event in events:
            if event.data == "[DONE]":
                continue
            chunk = c.json_loads(event.data)
            if not isinstance(chunk, dict):
                continue
            error = _error(chunk)
            if error is not None:
                # An error event after a 200 (TGI mid-generation, SGLang's ValueError path).
                outputs = [s.output() for _, s in sorted(sglang.items())] or tgi.outputs()
                error.id = next((o.id for o in outputs if o.id), None)
                error.first_chunk_offset = first
                return error
            if isinstance(chunk.get("token"), dict):
                carried = tgi.add(chunk)
            elif _is_sglang_output(chunk):
                index = chunk.get("index", 0)
                slot = sglang.setdefault(index if isinstance(index, int) else 0, _SGLangSlot())
                carried = slot.add(chunk)
            else:
                carried = False
            if carried and first is None:
                first = event.offset
        outputs = [s.output() for _, s in sorted(sglang.items())] or tgi.outputs()
        return _result(outputs, first)


ADAPTERS: tuple[Adapter, ...] = (TextGeneration(),)
"""This module's adapters, in matching order."""


# -- requests -----------------------------------------------------------------------------------


def _parameters(source: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    picked = c.pick(source, tuple(names))
    return {names[name]: value for name, value in picked.items()}


def _user_messages(prompt: Any) -> list[dict[str, Any]] | None:
    if not c.messages_wanted():
        return None
    prompts = prompt if isinstance(prompt, list) else [prompt]
    return [
        {"role": "user", "parts": [{"type": "text", "content": p}]}
        for p in prompts
        if isinstance(p, str)
    ]


def _tgi_request(body: dict[str, Any], path: str) -> ParsedRequest:
    params = c.as_dict(body.get("parameters"))
    inputs = body.get("inputs")
    return ParsedRequest(
        model=c.opt_str(body.get("model")) or c.opt_str(params.get("model")),
        parameters=_parameters(params, _TGI_PARAMETERS),
        input=inputs,
        messages=_user_messages(inputs),
        # TGI's compatibility route streams on ``stream: true``; /generate_stream always does.
        stream=path.endswith("/generate_stream") or body.get("stream") is True,
    )


def _sglang_request(body: dict[str, Any]) -> ParsedRequest:
    sampling = body.get("sampling_params")
    if isinstance(sampling, list):  # a batch may give one set per prompt: the first stands in
        sampling = next(iter(sampling), None)
    sampling = c.as_dict(sampling)
    text = body.get("text")
    prompt: Any = text
    if text is None and body.get("input_ids") is not None:
        prompt = {"input_ids": body["input_ids"]}  # pre-tokenized: the ids are the input
    return ParsedRequest(
        model=c.opt_str(body.get("model")) or c.opt_str(sampling.get("model")),
        parameters=_parameters(sampling, _SGLANG_PARAMETERS),
        input=prompt,
        messages=_user_messages(text),
        stream=body.get("stream") is True,
        # The span started as TGI (same path); the body says it is SGLang.
        provider=SGLANG,
    )


# -- responses ----------------------------------------------------------------------------------


@dataclass
class _Output:
    """One generated sequence, whichever server made it."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    id: str | None = None
    error: str | None = None


def _error(body: Any) -> ParsedResponse | None:
    """TGI's ``{"error": "...", "error_type": "..."}``, SGLang's ``{"error": {"message"}}``,
    an OpenAI-style ``{"object": "error", "message"}`` or FastAPI's ``{"detail": ...}``."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str) and error:
        kind = c.opt_str(body.get("error_type"))
        output = {"error": error, "error_type": kind} if kind else {"error": error}
        return ParsedResponse(error_message=error, error_type=kind, output=output)
    if isinstance(error, dict):
        return c.error_response(body)
    if body.get("object") == "error" and isinstance(body.get("message"), str):
        kind = body.get("type")
        return ParsedResponse(
            error_message=body["message"],
            error_type=None if kind is None else str(kind),
            output={"error": body},
        )
    detail = body.get("detail")
    if detail and not ({"generated_text", "text", "meta_info", "token"} & body.keys()):
        # A request FastAPI (SGLang) refused before it reached the server: 422 and a list.
        first = c.as_dict(next(iter(c.as_list(detail)), None))
        message = c.opt_str(detail) or c.opt_str(first.get("msg")) or "invalid request"
        return ParsedResponse(error_message=message, output={"error": detail})
    return None


def _output(item: Any) -> _Output | None:
    item = c.as_dict(item)
    if isinstance(item.get("generated_text"), str):
        details = c.as_dict(item.get("details"))
        return _Output(
            text=item["generated_text"],
            finish_reason=c.opt_str(details.get("finish_reason")),
            usage=_tgi_usage(details, None),
        )
    if _is_sglang_output(item):
        return _sglang_output(c.opt_str(item.get("text")) or "", c.as_dict(item.get("meta_info")))
    return None


def _is_sglang_output(item: dict[str, Any]) -> bool:
    return isinstance(item.get("meta_info"), dict) or isinstance(item.get("text"), str)


def _tgi_usage(details: dict[str, Any], counted: int | None) -> Usage | None:
    """TGI counts output in ``generated_tokens``; input only as ``prefill`` (non-streamed,
    with ``decoder_input_details``), as ``input_length`` (newer streams) or as
    ``prompt_tokens`` (some forks)."""
    output = c.opt_int(details.get("generated_tokens"))
    if output is None:
        output = counted
    prefill = c.as_list(details.get("prefill"))
    input_tokens = len(prefill) if prefill else None
    for key in ("input_length", "prompt_tokens"):
        if input_tokens is None:
            input_tokens = c.opt_int(details.get(key))
    if input_tokens is None and output is None:
        return None
    return Usage(input=input_tokens, output=output)


def _sglang_output(text: str, meta: dict[str, Any]) -> _Output:
    finish = meta.get("finish_reason")
    reason = c.opt_str(finish)
    error = None
    if isinstance(finish, dict):
        reason = c.opt_str(finish.get("type"))
        if reason == "abort":
            # SGLang ends a request it refused or dropped with an abort and a message.
            error = c.opt_str(finish.get("message")) or "aborted"
    usage = None
    prompt, completion = (
        c.opt_int(meta.get("prompt_tokens")),
        c.opt_int(meta.get("completion_tokens")),
    )
    if prompt is not None or completion is not None:
        # cached_tokens are the prompt tokens found in the radix cache: part of prompt_tokens.
        usage = Usage(
            input=prompt, output=completion, cache_read=c.opt_int(meta.get("cached_tokens")) or None
        )
    return _Output(
        text=text, finish_reason=reason, usage=usage, id=c.opt_str(meta.get("id")), error=error
    )


class _TGIStream:
    """Folds TGI's stream: one event per generated token, the whole text on the last."""

    __slots__ = ("count", "details", "final", "final_index", "pieces")

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.count = 0
        self.final: str | None = None
        self.final_index: int | None = None
        self.details: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold one event; ``True`` if it carried generated text."""
        token = chunk["token"]
        self.count += 1
        if isinstance(chunk.get("generated_text"), str):
            self.final = chunk["generated_text"]
            self.final_index = c.opt_int(chunk.get("index"))
        if isinstance(chunk.get("details"), dict):
            self.details = chunk["details"]
        text = c.opt_str(token.get("text"))
        # Special tokens (end of sequence) are not part of the text, as TGI's client skips them.
        if text and token.get("special") is not True:
            self.pieces.append(text)
            return True
        return False

    def outputs(self) -> list[_Output]:
        if not self.count:
            return []
        # Without ``details`` TGI gives no counts; a finished stream has one event per token
        # (its last ``index`` agrees unless events are missing, e.g. past the capture cap).
        counted = None
        if self.final is not None and self.final_index in (None, self.count):
            counted = self.count
        return [
            _Output(
                text=self.final if self.final is not None else "".join(self.pieces),
                finish_reason=c.opt_str(self.details.get("finish_reason")),
                usage=_tgi_usage(self.details, counted),
            )
        ]


class _SGLangSlot:
    """Folds one SGLang sequence's events: each normally carries the whole text so far."""

    __slots__ = ("cumulative", "meta", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.cumulative = True
        self.meta: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold one event; ``True`` if it carried text."""
        if isinstance(chunk.get("meta_info"), dict):
            self.meta = chunk["meta_info"]  # its counts are running totals: the last one wins
        text = c.opt_str(chunk.get("text"))
        if not text:
            return False
        # A server started with --stream-output sends disjoint pieces instead: an event that
        # does not extend the previous text gives that away.
        if self.texts and not text.startswith(self.texts[-1]):
            self.cumulative = False
        self.texts.append(text)
        return True

    def output(self) -> _Output:
        texts = self.texts
        text = (texts[-1] if texts else "") if self.cumulative else "".join(texts)
        return _sglang_output(text, self.meta)


def _result(outputs: list[_Output], first: int | None) -> ParsedResponse:
    errors = [o.error for o in outputs if o.error]
    reasons = [o.finish_reason for o in outputs]
    return ParsedResponse(
        id=next((o.id for o in outputs if o.id), None),
        finish_reasons=[r for r in reasons if r],
        output=c.single_or_list([o.text for o in outputs]),
        messages=(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": o.text}],
                    "finish_reason": r,
                }
                for o, r in zip(outputs, reasons)
            ]
            or None
        )
        if c.messages_wanted()
        else None,
        usage=_sum_usage([o.usage for o in outputs]),
        first_chunk_offset=first,
        error_message=errors[0] if errors else None,
        error_type="abort" if errors else None,
    )


def _sum_usage(usages: list[Usage | None]) -> Usage | None:
    """One usage for a batch: each count summed when every sequence reported it."""
    if not usages or any(u is None for u in usages):
        return None
    known = [u for u in usages if u is not None]

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in known]
        return None if any(v is None for v in values) else sum(values)

    cached = [u.cache_read for u in known if u.cache_read is not None]
    # A sequence that found nothing in the cache reports 0, read as "no cache read" (None).
    return Usage(input=total("input"), output=total("output"), cache_read=sum(cached) or None)
