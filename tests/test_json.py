"""The JSON helpers: orjson on the fast path, the standard library for what orjson refuses."""

from __future__ import annotations

import math

import pytest

from aiohttp_llm_tracing import _json
from aiohttp_llm_tracing._json import INVALID, dumps, loads


@pytest.fixture(params=["orjson", "stdlib"])
def lib(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(_json, "orjson", None)
    return request.param


def test_loads_parses_bytes_and_str(lib: str) -> None:
    assert loads(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    assert loads('{"a": null}') == {"a": None}


@pytest.mark.parametrize("bad", [b"", b"{", b'{"a": 1', b"\xff\xfe\x00", b"<html>", b"[1,]"])
def test_loads_returns_invalid_for_what_is_not_json(lib: str, bad: bytes) -> None:
    assert loads(bad) is INVALID


def test_loads_accepts_what_only_the_standard_library_does(lib: str) -> None:
    # NaN and UTF-16 bodies are refused by orjson and accepted by json: the outcome must not
    # depend on which library ran.
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    assert loads('{"a": 1}'.encode("utf-16")) == {"a": 1}


def test_loads_survives_deep_nesting(lib: str) -> None:
    assert loads(b"[" * 100_000 + b"]" * 100_000) is INVALID


def test_dumps_is_compact_and_keeps_non_ascii(lib: str) -> None:
    assert dumps({"role": "user", "content": "héllo ✓"}) == '{"role":"user","content":"héllo ✓"}'
    assert dumps([1, 2.5, None, True]) == "[1,2.5,null,true]"


def test_dumps_writes_what_json_cannot_hold_as_str(lib: str) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    assert dumps({"v": Opaque()}) == '{"v":"opaque"}'
    assert dumps({1: "a"}) == '{"1":"a"}'
    assert dumps(2**70) == str(2**70)


def test_dumps_never_raises(lib: str) -> None:
    cycle: list = []
    cycle.append(cycle)
    assert dumps(cycle) == '"[[...]]"'
    assert dumps({("a", 1): 2}) == "\"{('a', 1): 2}\""
