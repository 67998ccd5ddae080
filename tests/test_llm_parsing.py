"""The pieces under the LLM layer on their own: bounded capture, SSE parsing, cut-JSON recovery."""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiohttp_llm_tracing._capture import BodyCapture
from aiohttp_llm_tracing._llm_bodies import utc_isoformat
from aiohttp_llm_tracing._sse import parse_sse
from aiohttp_llm_tracing._truncated import top_level_fields

MiB = 1 << 20


# -- BodyCapture ------------------------------------------------------------------------------


def test_capture_keeps_head_and_tail_and_counts_everything():
    capture = BodyCapture(10, tail_limit=4)
    for piece in (b"0123", b"456789ab", b"cdefgh", b"ijklmnop"):
        capture.feed(piece)
    assert capture.head == b"0123456789"
    assert capture.total == 26
    assert capture.truncated
    assert 4 <= len(capture.tail) <= 8
    assert b"abcdefghijklmnop".endswith(bytes(capture.tail))
    # The tail's first byte sits at total - len(tail) in the body.
    body = b"0123456789abcdefghijklmnop"
    assert body[capture.total - len(capture.tail) :] == capture.tail


def test_capture_under_the_cap_is_exact():
    capture = BodyCapture(100)
    capture.feed(b"hello ")
    capture.feed(memoryview(b"world"))
    assert capture.head == b"hello world" and not capture.truncated and capture.tail == b""


def test_one_huge_feed_costs_the_cap_not_the_chunk():
    # aiohttp's resp.read() hands the whole body over in one piece.
    chunk = b"x" * (48 * MiB)
    capture = BodyCapture(MiB)
    tracemalloc.start()
    try:
        capture.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB
    assert len(capture.head) == MiB
    assert len(capture.tail) == 65_536
    assert capture.total == len(chunk)


def test_request_capture_without_tail_keeps_nothing_past_the_cap():
    capture = BodyCapture(4, tail_limit=0)
    capture.feed(b"abcdefgh")
    assert capture.head == b"abcd" and capture.tail == b"" and capture.truncated


def test_arrival_times_map_offsets_to_reads():
    capture = BodyCapture(100, timed=True)
    capture.feed(b"aaaa")
    capture.feed(b"bbbb")
    (o1, t1), (o2, t2) = capture.marks
    assert (o1, o2) == (0, 4) and t1 <= t2
    assert capture.arrival_ns(0) == capture.arrival_ns(3) == t1
    assert capture.arrival_ns(4) == capture.arrival_ns(7) == t2
    assert capture.marks_complete
    assert BodyCapture(10).marks == [] and BodyCapture(10).arrival_ns(0) is None


def test_arrival_marks_are_capped():
    capture = BodyCapture(1 << 16, timed=True)
    for _ in range(600):
        capture.feed(b"xyz")
        capture.feed(b"\n")  # a bare line ending: no clock read
    assert len(capture.marks) == 32 and not capture.marks_complete
    assert capture.arrival_ns(10) is not None
    assert capture.arrival_ns(1790) is None  # past the marks: unknown, not a wrong time


# -- parse_sse --------------------------------------------------------------------------------


def test_sse_basic_fields_and_offsets():
    body = b'event: a\ndata: {"x": 1}\n\n: comment\n\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n'
    events = parse_sse(body)
    assert [(e.event, e.data) for e in events] == [
        ("a", '{"x": 1}'),
        ("", "line1\nline2"),
        ("", "[DONE]"),
    ]
    assert body[events[1].offset :].startswith(b"data: line1")


def test_sse_crlf_and_cr_line_endings():
    assert [e.data for e in parse_sse(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n")] == ["a", "b", "c"]


def test_sse_unterminated_last_event_is_kept():
    events = parse_sse(b'data: {"a": 1}\n\ndata: {"b": ')
    assert [e.data for e in events] == ['{"a": 1}', '{"b": ']


def test_sse_partial_head_drops_the_first_block_and_shifts_offsets():
    events = parse_sse(
        b'artial": 1}\n\ndata: {"usage": 2}\n\n', base_offset=1000, partial_head=True
    )
    assert [e.data for e in events] == ['{"usage": 2}']
    assert events[0].offset == 1000 + len(b'artial": 1}\n\n')


def test_sse_invalid_utf8_does_not_raise():
    events = parse_sse(b"data: \xff\xfe\n\n")
    assert events[0].data == "\ufffd\ufffd"


# -- recovering fields from a JSON document too big to parse ----------------------------------


def test_fields_from_a_cut_chat_response():
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "model": "gpt-4o",
            "choices": [{"message": {"content": 'he said "model": "fake" ' + "x" * 5000}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()
    head, tail = body[:1000], body[-200:]
    assert top_level_fields(head, tail) == {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def test_fields_from_a_cut_embeddings_response_come_from_the_tail():
    body = json.dumps(
        {
            "object": "list",
            "data": [{"embedding": [0.5] * 3000, "index": 0}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 9, "total_tokens": 9},
        }
    ).encode()
    fields = top_level_fields(body[:500], body[-300:])
    assert fields == {
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }


def test_fields_from_a_cut_request_ignore_nested_objects():
    tools = [{"type": "function", "function": {"parameters": {"model": {"type": "string"}}}}]
    body = json.dumps(
        {"messages": [{"content": "y" * 5000}], "tools": tools, "model": "m-1", "stream": True}
    ).encode()
    assert top_level_fields(body[:100], body[-400:]) == {"model": "m-1", "stream": True}


def test_fields_from_a_cut_request_keep_every_recorded_parameter():
    params = {"temperature": 0.1, "top_p": 0.9, "top_k": 5, "frequency_penalty": 0.5}
    params |= {"presence_penalty": 0.2, "seed": 7, "max_tokens": 9}
    body = json.dumps({"model": "m-1", **params, "messages": [{"content": "y" * 5000}]}).encode()
    assert top_level_fields(body[:300], b"") == {"model": "m-1", **params}


@pytest.mark.parametrize("tail", [b"", b'"usage": {"prompt_tokens": 1', b"\xff\xfe"])
def test_fields_tolerate_garbage(tail):
    assert top_level_fields(b'{"id": "a"', tail) == {"id": "a"}


# -- adapters never raise on odd JSON -----------------------------------------------------------

ODD_VALUES = [
    None,
    1,
    "x",
    [],
    [1, "a"],
    {},
    {"model": 5, "messages": "hi", "stream": "yes", "stop": [1, 2], "n": "2"},
    {"messages": [None, 1, {"role": None, "content": [None, {"type": None}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": "f"}]}]},
    {"input": [{"content": {"a": 1}}], "instructions": 3, "reasoning": "high"},
    {"system": [None, {"text": 1}], "tools": {"a": 1}},
    {"choices": "x", "usage": [1], "error": None},
    {"choices": [{"index": [1], "message": None, "finish_reason": 3, "text": 4}]},
    {"choices": [{"index": "a", "delta": {"tool_calls": [{"index": {}, "function": None}]}}]},
    {"content": [None, {"type": "tool_use", "input": None}], "usage": {"input_tokens": "1"}},
    {"output": [None, {"type": "message", "content": "x"}], "usage": {"input_tokens": None}},
    {"data": [{"embedding": "!!not base64!!"}], "usage": {"prompt_tokens": True}},
    {"error": {"message": None, "type": []}},
    {"type": "error", "error": "boom"},
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_adapters_take_any_json(value):
    from aiohttp_llm_tracing._sse import SSEEvent
    from aiohttp_llm_tracing.adapters import DEFAULT_ADAPTERS

    events = [
        SSEEvent(0, "", json.dumps(value)),
        SSEEvent(10, "content_block_start", json.dumps(value)),
        SSEEvent(20, "content_block_delta", json.dumps(value)),
        SSEEvent(30, "message_delta", json.dumps(value)),
        SSEEvent(40, "response.completed", json.dumps({"response": value})),
        SSEEvent(50, "", "not json"),
    ]
    for adapter in DEFAULT_ADAPTERS:
        adapter.parse_request(value, "/v1/x")
        adapter.parse_response(value)
        adapter.parse_stream(events)


@pytest.mark.parametrize(
    ("body", "cut"),
    [
        (b'data: {"a": 1}\n\ndata: {"b": ', True),
        (b'data: {"a": 1}\n\ndata: {"b": 2}', False),  # only the final blank line is missing
        (b"data: [DONE]\n", False),
        (b"data: [DONE]\n\n", False),
        (b"event: ping", False),
        (b"", False),
        (b'data: {"a": 1}\r\n\r\n', False),
        # A final event longer than 64 KiB, cut: still seen whole, from its blank line on.
        (b'data: {"a": 1}\n\ndata: {"big": "' + b"x" * 70_000, True),
        (b'data: {"a": 1}\n\ndata: {"big": "' + b"x" * 70_000 + b'"}', False),
    ],
)
def test_stream_cut_mid_event(body, cut):
    from aiohttp_llm_tracing._llm_bodies import _cut_mid_event

    assert _cut_mid_event(body) is cut


def _events(*pairs: tuple[str, dict]) -> list:
    from aiohttp_llm_tracing._sse import SSEEvent

    return [SSEEvent(i * 100, name, json.dumps(data)) for i, (name, data) in enumerate(pairs)]


def test_anthropic_stream_merges_thinking_text_and_tool_input():
    from aiohttp_llm_tracing.adapters import AnthropicMessages

    result = AnthropicMessages().parse_stream(
        _events(
            (
                "message_start",
                {"message": {"id": "m1", "model": "claude", "usage": {"input_tokens": 5}}},
            ),
            (
                "content_block_start",
                {"index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            ),
            (
                "content_block_delta",
                {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm"}},
            ),
            ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
            (
                "content_block_start",
                {
                    "index": 2,
                    "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                },
            ),
            (
                "content_block_delta",
                {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"q": '}},
            ),
            (
                "content_block_delta",
                {"index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
            ),
            (
                "message_delta",
                {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
            ),
        )
    )
    assert result.first_chunk_offset == 200  # the thinking delta is the first output
    assert result.output["content"] == [
        {"type": "thinking", "thinking": "Hm"},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": 1}},
    ]
    assert result.finish_reasons == ["tool_use"]
    assert (result.usage.input, result.usage.output) == (5, 7)


def test_responses_stream_cut_after_created_keeps_id_and_model():
    from aiohttp_llm_tracing.adapters import OpenAIResponses

    result = OpenAIResponses().parse_stream(
        _events(
            ("response.created", {"response": {"id": "r1", "model": "gpt-4.1", "output": []}}),
            ("response.function_call_arguments.delta", {"delta": '{"a"'}),
        )
    )
    assert (result.id, result.model, result.output) == ("r1", "gpt-4.1", None)
    assert result.first_chunk_offset == 100


def test_chat_finish_reasons_stay_with_their_choice():
    from aiohttp_llm_tracing.adapters import OpenAIChat

    result = OpenAIChat().parse_response(
        {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "a"}},
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": "b"},
                    "finish_reason": "stop",
                },
            ]
        }
    )
    assert [m["finish_reason"] for m in result.messages] == [None, "stop"]
    assert result.finish_reasons == ["stop"]


def test_usage_details_split_cached_and_reasoning_and_never_go_negative():
    from aiohttp_llm_tracing._llm_attributes import usage_attributes as _usage_attributes
    from aiohttp_llm_tracing.adapters import Usage

    out: dict = {}
    _usage_attributes(out, Usage(input=100, output=50, total=150, cache_read=30, reasoning=20))
    assert json.loads(out["langfuse.observation.usage_details"]) == {
        "input": 70,
        "output": 30,
        "input_cached_tokens": 30,
        "output_reasoning_tokens": 20,
        "total": 150,
    }
    assert out["gen_ai.usage.input_tokens"] == 100  # the semconv count includes cached tokens
    assert out["gen_ai.usage.cache_read.input_tokens"] == 30
    odd: dict = {}
    _usage_attributes(odd, Usage(input=5, output=1, cache_read=8, reasoning=4))
    details = json.loads(odd["langfuse.observation.usage_details"])
    assert details["input"] == 0 and details["output"] == 0


# -- the completion start time ----------------------------------------------------------------


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999_000))  # to year 9999
@settings(max_examples=500, deadline=None)
def test_utc_isoformat_is_datetimes_text_rounded_to_the_microsecond(ns):
    micros = (ns + 500) // 1000
    exact = datetime.fromtimestamp(micros // 10**6, tz=timezone.utc).replace(
        microsecond=micros % 10**6
    )
    assert utc_isoformat(ns) == exact.isoformat()
    assert datetime.fromisoformat(utc_isoformat(ns)) == exact


def test_utc_isoformat_rounds_half_up_and_drops_a_zero_fraction():
    second = 1_700_000_000 * 10**9
    assert utc_isoformat(second) == "2023-11-14T22:13:20+00:00"
    assert utc_isoformat(second + 499) == "2023-11-14T22:13:20+00:00"
    assert utc_isoformat(second + 500) == "2023-11-14T22:13:20.000001+00:00"
    assert utc_isoformat(second - 1) == "2023-11-14T22:13:20+00:00"  # rounds up into the next
    assert utc_isoformat(second - 501) == "2023-11-14T22:13:19.999999+00:00"
    # The second's text is reused only for its own second.
    assert utc_isoformat(second + 10**9) == "2023-11-14T22:13:21+00:00"
    assert utc_isoformat(second + 999_999_499) == "2023-11-14T22:13:20.999999+00:00"
