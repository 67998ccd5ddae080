"""The chat adapter's fast stream reading equals the general path on every shape it meets."""

from __future__ import annotations

import json
import random

import pytest

from aiohttp_llm_tracing._sse import parse_sse
from aiohttp_llm_tracing.adapters import OpenAIChat

ADAPTER = OpenAIChat()


def _chunk(delta, finish=None, index=0, usage=None, choices=True, **extra):
    body = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": "m-1", **extra}
    body["choices"] = (
        [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if choices
        else []
    )
    body["usage"] = usage
    return body


def _body(chunks, *, compact=True, newline="\n"):
    sep = (",", ":") if compact else (", ", ": ")
    events = [
        "data: " + json.dumps(c, separators=sep, ensure_ascii=False) + newline * 2 for c in chunks
    ]
    return ("".join(events) + f"data: [DONE]{newline * 2}").encode()


def _texts(words):
    return [_chunk({"content": w}) for w in words]


HEAD = [_chunk({"role": "assistant", "content": ""})]
TAIL = [
    _chunk({}, finish="stop"),
    _chunk(
        None, choices=False, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    ),
]

SHAPES = {
    "plain": HEAD + _texts(["Hello", " world"]) + TAIL,
    "escapes and unicode": HEAD + _texts(['He said "hi"\n', "café\\", "日本", "\t\u2028"]) + TAIL,
    "empty deltas between": HEAD + _texts(["a"]) + [_chunk({})] + _texts(["b"]) + TAIL,
    "tool calls": [
        *HEAD,
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "search", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": 1}'}}]}),
        _chunk({}, finish="tool_calls"),
    ],
    "two choices": [_chunk({"content": "x"}, index=i) for i in (0, 1, 0, 1)] + TAIL,
    "usage inside a text chunk": HEAD
    + _texts(["a"])
    + [_chunk({"content": "b"}, usage={"prompt_tokens": 1, "completion_tokens": 2})]
    + _texts(["c"]),
    "finish in the last text chunk": HEAD
    + _texts(["a"])
    + [_chunk({"content": "b"}, finish="stop")],
    "error mid-stream": HEAD
    + _texts(["a"])
    + [{"error": {"message": "overloaded"}}]
    + _texts(["b"]),
    "no text chunks": HEAD + TAIL,
    "two choices in one chunk": [
        *HEAD,
        *[
            {
                **_chunk(None, choices=False),
                "choices": [
                    {"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None},
                    {"index": 1, "delta": {"content": w.upper()}, "finish_reason": None},
                ],
            }
            for w in ("a", "b")
        ],
        *TAIL,
    ],
    "extra fields": [*HEAD, _chunk({"content": "a"}, system_fingerprint="fp", service_tier="x")],
}


def _general(body: bytes):
    return ADAPTER.parse_stream(parse_sse(body))


def _same(a, b) -> None:
    assert (a.id, a.model, a.output, a.messages, a.usage, a.finish_reasons, a.error_message) == (
        b.id,
        b.model,
        b.output,
        b.messages,
        b.usage,
        b.finish_reasons,
        b.error_message,
    )
    assert a.first_chunk_offset == b.first_chunk_offset


# The shapes the fast path takes; every other one must be sent to the general path.
FAST = {"plain", "escapes and unicode", "finish in the last text chunk", "extra fields"}


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_fast_equals_general(shape, compact):
    body = _body(SHAPES[shape], compact=compact)
    fast = ADAPTER.parse_stream_body(body)
    general = _general(body)
    assert (fast is not None) == (shape in FAST)
    if fast is not None:
        _same(fast, general)


def test_invalid_utf8_costs_a_character_not_the_response():
    body = _body(SHAPES["plain"]).replace(b'"Hello"', b'"He\\\\l\xfflo"')
    fast = ADAPTER.parse_stream_body(body)
    assert fast is not None
    _same(fast, _general(body))
    assert fast.output["content"] == "He\\l\ufffdlo world"


def test_fast_path_taken_for_plain_streams():
    body = _body(SHAPES["plain"])
    assert ADAPTER.parse_stream_body(body) is not None
    assert ADAPTER.parse_stream_body(_body(SHAPES["plain"], newline="\r\n")) is None


def test_random_text_round_trips():
    rng = random.Random(7)
    alphabet = 'ab "\\\n\t/é日\u2028{}:,[]data: '
    fast_taken = 0
    for _ in range(200):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(8)]
        body = _body(HEAD + _texts(words) + TAIL, compact=rng.random() < 0.5)
        fast = ADAPTER.parse_stream_body(body)
        general = _general(body)
        assert general.output["content"] == ("".join(words) or None)
        if fast is not None:
            fast_taken += 1
            _same(fast, general)
    assert fast_taken > 150  # the fast path really ran, escapes and all


def test_mixed_spacing_equals_general():
    # The compact pattern is tried first; chunks written with spaces among compact ones must
    # still come out as the general path reads them (fast or not).
    compact = _body(SHAPES["plain"]).split(b"data: [DONE]")[0]
    spaced = _body(_texts([" again", "!"]) + TAIL, compact=False)
    for body in (compact + spaced, spaced.split(b"data: [DONE]")[0] + _body(_texts(["x"]))):
        fast = ADAPTER.parse_stream_body(body)
        assert fast is not None
        _same(fast, _general(body))


def test_first_text_chunk_empty_keeps_first_chunk_offset():
    body = _body(HEAD + _texts(["", "", "a", "b"]) + TAIL)
    fast = ADAPTER.parse_stream_body(body)
    assert fast is not None
    _same(fast, _general(body))
    # The event of the first text that is not empty.
    assert fast.first_chunk_offset == body.rfind(b"\n\n", 0, body.index(b'"content":"a"')) + 2


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    "between", [b": keep-alive\n\n", b"event: delta\n", b"id: 7\n", b"\n", b"retry: 10\n"]
)
def test_other_lines_among_text_chunks_read_as_the_general_path_does(between, compact):
    # Comments, event names, ids and extra blank lines among the text chunks: whichever path
    # reads the body, the result is the general path's.
    body = _body(SHAPES["plain"], compact=compact)
    second = body.index(b"data: ", body.index(b"Hello"))
    body = body[:second] + between + body[second:]
    general = _general(body)
    assert general.output["content"] == "Hello world"
    fast = ADAPTER.parse_stream_body(body)
    if fast is not None:
        _same(fast, general)


def test_stream_cut_inside_its_last_text_chunk_goes_the_general_way():
    body = _body(HEAD + _texts(["a", "b", "c"]))
    cut = body[: body.index(b'"c"') + 3]
    fast = ADAPTER.parse_stream_body(cut)
    assert fast is None or fast.output == _general(cut).output


@pytest.mark.parametrize("compact", [True, False])
def test_a_choice_shaped_array_under_another_key_is_not_a_choice(compact):
    # The exact patterns start at the array and check the key behind it.
    impostor = {**_chunk(None, choices=False), "echo": [{"index": 0, "delta": {"content": "x"}}]}
    impostor["echo"][0]["finish_reason"] = None
    body = _body(HEAD + _texts(["a"]) + [impostor] + _texts(["b"]) + TAIL, compact=compact)
    general = _general(body)
    assert general.output["content"] == "ab"
    fast = ADAPTER.parse_stream_body(body)
    if fast is not None:
        _same(fast, general)


def _without_logprobs(chunks):
    out = []
    for chunk in chunks:
        chunk = json.loads(json.dumps(chunk))
        for choice in chunk.get("choices") or []:
            choice.pop("logprobs", None)
        out.append(chunk)
    return out


@pytest.mark.parametrize("compact", [True, False])
def test_streams_without_logprobs_take_the_fast_path(compact):
    body = _body(_without_logprobs(SHAPES["escapes and unicode"]), compact=compact)
    assert b'"logprobs"' not in body
    fast = ADAPTER.parse_stream_body(body)
    assert fast is not None
    _same(fast, _general(body))


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("which", ["first chunk only", "text chunks only", "alternating"])
def test_logprobs_in_some_chunks_only_equals_general(which, compact):
    # The exact pattern is chosen by the first chunk; chunks that differ from it must still
    # come out as the general path reads them.
    chunks = HEAD + _texts(["Hello", " world", "x", "y"]) + TAIL
    stripped = _without_logprobs(chunks)
    mixed = {
        "first chunk only": chunks[:1] + stripped[1:],
        "text chunks only": stripped[:1] + chunks[1:],
        "alternating": [c if i % 2 else s for i, (c, s) in enumerate(zip(chunks, stripped))],
    }[which]
    body = _body(mixed, compact=compact)
    fast = ADAPTER.parse_stream_body(body)
    assert fast is not None  # the flexible pattern reads every chunk
    _same(fast, _general(body))


USAGE_A = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
USAGE_B = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    ("tail_usage", "fast_taken"),
    [
        (USAGE_B, True),  # the usage chunk at the end replaces what text chunks carried
        ({}, False),  # an empty usage replaces nothing: the text chunks' usage stands
        (None, False),
    ],
)
def test_usage_in_text_chunks_equals_general(tail_usage, fast_taken, compact):
    # Some servers put running usage in every chunk. The general path keeps the last one seen,
    # so the text run is only read for usage when nothing after it set one.
    texts = [_chunk({"content": w}, usage=USAGE_A) for w in ("a", "b", "c")]
    tail = [_chunk({}, finish="stop"), _chunk(None, choices=False, usage=tail_usage)]
    body = _body(HEAD + texts + tail, compact=compact)
    fast = ADAPTER.parse_stream_body(body)
    general = _general(body)
    assert (fast is not None) == fast_taken
    if fast is not None:
        _same(fast, general)
        assert fast.usage == general.usage
        assert fast.usage.input == 3


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize(
    "bad",
    [b"He\\xllo", b"He\\u12llo", b"He\tllo", b"He\x01llo", b"He\\\tllo"],
    ids=["unknown escape", "short unicode escape", "raw tab", "raw control", "escaped tab"],
)
def test_a_text_chunk_that_is_not_json_reads_as_the_general_path_does(bad, compact):
    # The general path drops a chunk its JSON decoder refuses; the fast path must not keep it,
    # nor fail on it.
    body = _body(SHAPES["plain"], compact=compact).replace(b'"Hello"', b'"' + bad + b'"')
    general = _general(body)
    assert general.output["content"] == " world"
    fast = ADAPTER.parse_stream_body(body)
    if fast is not None:
        _same(fast, general)


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_an_escape_cut_at_a_texts_end_does_not_borrow_the_next_text(compact, ascii_only):
    # "He\u00" is no JSON string, so the general path drops that chunk; read together with the
    # next text ("e9...") the cut escape would become a valid "é".
    rest = " world" if ascii_only else " wörld"
    body = _body(HEAD + _texts(["x", "y", rest]) + TAIL, compact=compact)
    body = body.replace(b'"x"', b'"He\\u00"').replace(b'"y"', b'"e9"')
    general = _general(body)
    assert general.output["content"] == "e9" + rest
    fast = ADAPTER.parse_stream_body(body)
    if fast is not None:
        _same(fast, general)
