"""Property and fuzz tests (hypothesis): what the caller reads never changes, every span ends
exactly once and reaches a real OTLP receiver, for every adapter shape and framing, valid or
corrupted, compressed or not, whatever way the caller reads the body.

Deterministic (``derandomize=True``) and bounded; ``FUZZ_SCALE`` scales the number of
examples per test for a deeper local run (the default keeps the file well under a minute).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from aiohttp_llm_tracing import SpanRegistry, create_trace_config, setup_tracing
from aiohttp_llm_tracing._sse import parse_sse
from aiohttp_llm_tracing.adapters import OpenAIChat
from fuzz_shapes import SHAPES
from fuzz_strategies import LoopbackServer, Plan, draw_body

# Nothing in the repo: no example database, and hypothesis's caches in the temp directory.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "aiohttp-llm-tracing-hypothesis"))
settings.register_profile(
    "aiohttp-llm-fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
FUZZ = settings.get_profile("aiohttp-llm-fuzz")
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
EXAMPLE_TIMEOUT = 20.0

# -- 1. the chat stream's fast path equals the general path ------------------------------------

ADAPTER = OpenAIChat()
HIGH, LOW = st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)


@st.composite
def _escaped_text(draw: st.DrawFn) -> list[str]:
    """JSON string contents for consecutive chunks, each char raw, escaped or ``\\uXXXX``; an
    astral char can be split into two escapes across two chunks, and lone surrogates occur."""
    pieces: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        out = []
        for ch in draw(st.text(max_size=5)):
            how = draw(st.sampled_from(["raw", "json", "u"]))
            if how == "u" or (how == "raw" and ch in '"\\' + "".join(map(chr, range(32)))):
                units = ch.encode("utf-16-be")
                out += [f"\\u{units[i : i + 2].hex()}" for i in range(0, len(units), 2)]
            elif how == "json":
                out.append(json.dumps(ch)[1:-1])
            else:
                out.append(ch)
        extra = draw(st.sampled_from(["", "", "lone", "split"]))
        if extra == "lone":
            out.insert(draw(st.integers(0, len(out))), f"\\u{draw(HIGH | LOW):04x}")
        pieces.append("".join(out))
        if extra == "split":  # an astral char as two escapes, the halves in two chunks
            pieces[-1] += f"\\u{draw(HIGH):04x}"
            pieces.append(f"\\u{draw(LOW):04x}")
    return pieces


def _chunk(content: str, sep: str) -> str:
    c, k = ("," + sep, ":" + sep) if sep else (",", ":")
    return (
        f'{{"id"{k}"c1"{c}"model"{k}"m"{c}"choices"{k}[{{"index"{k}0{c}"delta"{k}'
        f'{{"content"{k}"{content}"}}{c}"logprobs"{k}null{c}"finish_reason"{k}null}}]}}'
    )


@settings(FUZZ, max_examples=int(300 * SCALE))
@given(
    texts=_escaped_text(),
    sep=st.sampled_from(["", " "]),
    head=st.booleans(),
    finish=st.booleans(),
    usage=st.booleans(),
    done=st.booleans(),
)
def test_chat_fast_path_equals_general_path(texts, sep, head, finish, usage, done) -> None:
    events = []
    if head:
        events.append(
            '{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
            '"content":""},"finish_reason":null}]}'
        )
    events += [_chunk(t, sep) for t in texts]
    if finish:
        events.append('{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    if usage:
        events.append('{"id":"c1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}')
    if done:
        events.append("[DONE]")
    body = "".join(f"data: {e}\n\n" for e in events).encode("utf-8", "surrogatepass")
    fast = ADAPTER.parse_stream_body(body)
    general = ADAPTER.parse_stream(parse_sse(body))
    if fast is not None:
        assert _facts(fast) == _facts(general)


def _facts(r: Any) -> tuple[Any, ...]:
    return (
        r.id,
        r.model,
        r.output,
        r.messages,
        r.usage,
        r.finish_reasons,
        r.error_message,
        r.first_chunk_offset,
        r.wrong_types,
    )


def test_fast_path_keeps_id_and_model_of_the_first_text_chunk() -> None:
    # Found by the property above: with no role chunk, only the text chunks carry them.
    body = b"data: " + _chunk("hi", "").encode() + b"\n\n"
    fast = ADAPTER.parse_stream_body(body)
    general = ADAPTER.parse_stream(parse_sse(body))
    assert (general.id, general.model) == ("c1", "m")
    assert fast is not None
    assert (fast.id, fast.model) == (general.id, general.model)


# -- 2. every shape, every framing, through a loopback server ----------------------------------


@pytest.fixture(scope="module")
def loopback() -> Any:
    with LoopbackServer() as server:
        yield server


@dataclass
class Style:
    name: str
    n: int = 1
    sizes: tuple[int, ...] = (1,)
    k: int = 0
    sub: str = ""


LOOSE = ("readany", "iter_any")  # chunk boundaries depend on the network: only prefixes compare


@st.composite
def _style(draw: st.DrawFn, framing: str) -> Style:
    names = ["read", "text", "iter_any", "iter_chunked", "readline", "aiter", "readany"]
    names += ["readchunk", "iter_chunks", "readexactly", "readuntil", "release", "cancel"]
    if framing in ("json", "jsonarray"):
        names.append("json")
    name = draw(st.sampled_from(names))
    sizes = tuple(draw(st.lists(st.integers(1, 40), min_size=1, max_size=4)))
    sub = draw(st.sampled_from(["readline", "readexactly", "iter_any", "readany", "readuntil"]))
    if name == "cancel":
        sub = draw(st.sampled_from([sub, "read"]))
    return Style(name, draw(st.integers(1, 64)), sizes, draw(st.integers(0, 6)), sub)


async def _read_with(resp: aiohttp.ClientResponse, style: Style, got: list[Any]) -> None:
    c = resp.content
    name = style.name
    if name == "read":
        got.append(await resp.read())
    elif name == "text":
        got.append(await resp.text())
    elif name == "json":
        got.append(repr(await resp.json(content_type=None)))
    elif name in ("iter_any", "iter_chunked", "aiter", "iter_chunks"):
        it = {"iter_any": c.iter_any, "aiter": lambda: c, "iter_chunks": c.iter_chunks}
        source = it.get(name, lambda: c.iter_chunked(style.n))()
        async for data in source:
            got.append(data[0] if name == "iter_chunks" else data)
    elif name in ("readline", "readany", "readchunk", "readexactly", "readuntil"):
        await _read_loop(c, name, style.sizes, got, limit=100_000)
    elif name == "release":  # k reads, then the caller gives the body up (or closes it)
        await _read_loop(c, style.sub, style.sizes, got, limit=style.k)
        resp.close() if style.n % 2 else resp.release()
    else:  # cancel: read until the test cancels the task (the server never ends the body)
        await _read_loop(c, style.sub, style.sizes, got, limit=100_000)


async def _read_loop(c: Any, how: str, sizes: tuple[int, ...], got: list[Any], limit: int) -> None:
    size = itertools.cycle(sizes)
    for _ in range(limit):
        if how == "readexactly":
            try:
                data = await c.readexactly(next(size))
            except asyncio.IncompleteReadError as exc:
                got.append(exc.partial)
                raise
        elif how == "readchunk":
            data, end = await c.readchunk()
            if not data and not end:
                return
        elif how == "readuntil":
            data = await c.readuntil(b"}" if sizes[0] % 2 else b"\n\n")
        elif how == "iter_any":  # one step of `async for ... in iter_any()`
            try:
                data = await c.iter_any().__anext__()
            except StopAsyncIteration:
                return
        else:
            data = await getattr(c, how)()
        if not data and how != "readchunk":
            return
        got.append(data)


@dataclass
class Outcome:
    data: Any
    error: str | None


async def _fetch(
    server: LoopbackServer, plan: Plan, style: Style, trace_config: Any, decompress: bool
) -> Outcome:
    got: list[Any] = []
    key = str(next(_KEYS))
    url = f"http://127.0.0.1:{server.port}"
    held: list[aiohttp.ClientResponse] = []
    configs = [trace_config] if trace_config is not None else []

    async def run(session: aiohttp.ClientSession) -> None:
        shape = plan.body.shape
        headers = {"X-Fuzz-Key": key}
        async with session.post(url + shape.path, json=shape.request, headers=headers) as resp:
            held.append(resp)
            await _read_with(resp, style, got)

    error = None
    async with aiohttp.ClientSession(trace_configs=configs, auto_decompress=decompress) as s:
        server.plans[key] = plan
        task = asyncio.ensure_future(run(s))
        if style.name == "cancel":
            size = len(plan.body.wire) if decompress else sum(map(len, plan.pieces()))
            await _until_blocked(task, held, size)
            task.cancel()
        try:
            await task
        except BaseException as exc:  # the outcome is the exception's type
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            error = type(exc).__name__
    data = b"".join(got) if all(isinstance(g, bytes) for g in got) else got
    return Outcome(data, error)


_KEYS = itertools.count()


async def _until_blocked(task: asyncio.Task[Any], held: list[Any], size: int) -> None:
    """Wait until the reader has every byte the server sent and waits in a read for more."""
    for _ in range(2000):
        if task.done():
            return
        if held:
            content = held[0].content
            waiting = getattr(content, "_waiter", None) is not None
            if waiting and content.total_bytes >= size:
                return
        await asyncio.sleep(0.0025)
    raise AssertionError("the reader never blocked")


CAPS = (None, None, 1, 17, 96, 400)  # max_body_bytes: the default, or cut short
# What servers also send: a charset, SSE labelled as text or JSON, JSON lines as JSON.
ODD_CONTENT_TYPES = [
    "application/json; charset=utf-8",
    "text/plain",
    "text/event-stream; charset=utf-8",
    "application/jsonl",
    "application/octet-stream",
]


@st.composite
def _plan(draw: st.DrawFn, shape_index: int) -> tuple[Plan, Style, int | None, bool]:
    shape = SHAPES[shape_index]
    body = draw_body(draw(st.data()), shape)
    style = draw(_style(shape.framing))
    size = len(body.wire)
    if style.name == "cancel":
        mode = "stall"
    else:
        modes = ["whole", "chunked"]
        if not (style.name == "release" and style.sub in LOOSE):
            modes.append("cut")
        mode = draw(st.sampled_from(modes))
    cuts = tuple(draw(st.lists(st.integers(0, max(size, 1)), max_size=4)))
    plan = Plan(
        body=body,
        status=draw(st.sampled_from([200, 200, 200, 400, 429, 500])),
        encoding=draw(st.sampled_from([None, None, "gzip", "deflate", "br", "identity", "x-odd"])),
        mode=mode,
        cuts=cuts,
        cut_at=draw(st.integers(0, size)),
        cut_length=draw(st.booleans()),
        content_type=draw(st.sampled_from([None, None, None, *ODD_CONTENT_TYPES])),
    )
    if plan.encoding in ("gzip", "deflate", "br") and mode != "stall" and draw(st.booleans()):
        plan.bad_compression_at = draw(st.integers(0, 1000))
    return plan, style, draw(st.sampled_from(CAPS)), draw(st.booleans())


def _same(untraced: Outcome, traced: Outcome, style: Style) -> None:
    loose = style.name == "release" and style.sub in LOOSE
    assert traced.error == untraced.error
    if loose:  # the two reads stopped at different points of the same bytes
        short, long = sorted((traced.data, untraced.data), key=len)
        assert long.startswith(short)
    else:
        assert traced.data == untraced.data


def _check_generation(span: Any, plan: Plan, style: Style, cap: int | None) -> None:
    """A valid body read to its end is a generation with the response's text as its output."""
    valid = cap is None and plan.body.corruption == "none" and plan.status == 200
    valid = valid and "".join(plan.body.texts) != ""  # no text: some shapes have no events
    valid = valid and plan.mode in ("whole", "chunked") and plan.content_type is None
    if not valid or plan.bad_compression_at is not None or style.name in ("release", "cancel"):
        return
    attrs = span.attributes
    assert attrs.get("llm_tracing.end_reason") in ("body_complete", "response"), attrs
    assert "llm_tracing.parse_error" not in attrs, attrs
    text = "".join(plan.body.texts)
    if text and "embed" not in plan.body.shape.name:
        raw = attrs["langfuse.observation.output"]  # JSON, or the bare text of a completion
        try:
            strings = [raw, *_strings(json.loads(raw))]
        except ValueError:
            strings = [raw]
        assert any(text in s for s in strings), (text, raw)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]


@pytest.mark.parametrize("shape_index", range(len(SHAPES)), ids=[s.name for s in SHAPES])
def test_every_shape_framing_and_read_style(shape_index, loopback, grpc_receiver) -> None:
    provider = setup_tracing(
        exporter="otlp", endpoint=grpc_receiver.endpoint, insecure=True, set_global=False
    )
    registry = SpanRegistry(sweep_interval=None)
    configs = {
        cap: create_trace_config(tracer_provider=provider, registry=registry, max_body_bytes=cap)
        for cap in CAPS
    }

    @settings(FUZZ, max_examples=int(40 * SCALE))
    @given(drawn=_plan(shape_index))
    def example(drawn: tuple[Plan, Style, int | None, bool]) -> None:
        plan, style, cap, decompress = drawn
        before = registry.stats()

        async def both() -> tuple[Outcome, Outcome]:
            untraced = await _fetch(loopback, plan, style, None, decompress)
            traced = await _fetch(loopback, plan, style, configs[cap], decompress)
            return untraced, traced

        untraced, traced = asyncio.run(asyncio.wait_for(both(), EXAMPLE_TIMEOUT))
        _same(untraced, traced, style)
        stats = registry.stats()
        assert stats.started == before.started + 1
        assert (stats.ended_total, stats.in_flight) == (stats.started, 0), stats
        assert stats.internal_errors == 0, stats
        assert provider.flush(10.0)
        assert grpc_receiver.wait_for(stats.started, timeout=10.0)
        received = grpc_receiver.spans()
        assert len(received) == stats.started
        _check_generation(received[-1], plan, style, cap)

    try:
        example()
    finally:
        registry.close()
        provider.shutdown()
