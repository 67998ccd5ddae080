"""Base64 media in LLM bodies becomes a placeholder with its media type and decoded size, before
any cap, so a multi-megabyte image prompt still records its text."""

from __future__ import annotations

import base64
import json
import os

import pytest

from aiohttp_llm_tracing._media import MIN_MEDIA_CHARS, elide_media

pytest.register_assert_rewrite("llm_fixtures")
from llm_fixtures import attrs, jattr  # noqa: E402

pytest_plugins = ["llm_fixtures"]


def b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


def elided(value: object) -> object:
    return json.loads(elide_media(json.dumps(value).encode()))


@pytest.mark.parametrize("size", [3_100, 3_101, 3_102, 1_000_000])
def test_a_data_uri_keeps_its_media_type_and_exact_decoded_size(size: int) -> None:
    body = {"image_url": {"url": f"data:image/png;base64,{b64(size)}"}}
    assert elided(body) == {"image_url": {"url": f"[image/png: {size} bytes, base64 omitted]"}}


def test_every_provider_shape_is_elided_and_its_media_type_stays_beside_it() -> None:
    data = b64(8_000)
    body = {
        "gemini": {"inlineData": {"mimeType": "image/jpeg", "data": data}},
        "anthropic": {"type": "base64", "media_type": "image/webp", "data": data},
        "bedrock": {"image": {"format": "png", "source": {"bytes": data}}},
        "openai_audio": {"input_audio": {"data": data, "format": "wav"}},
        "urlsafe": data.replace("+", "-").replace("/", "_"),
        "with_params": f"data:audio/wav;codec=pcm;base64,{data}",
    }
    out = elided(body)
    placeholder = "[8000 bytes, base64 omitted]"
    assert out["gemini"] == {"inlineData": {"mimeType": "image/jpeg", "data": placeholder}}
    assert out["anthropic"]["data"] == placeholder
    assert out["anthropic"]["media_type"] == "image/webp"
    assert out["bedrock"] == {"image": {"format": "png", "source": {"bytes": placeholder}}}
    assert out["openai_audio"]["input_audio"] == {"data": placeholder, "format": "wav"}
    assert out["urlsafe"] == placeholder
    assert out["with_params"] == "[audio/wav: 8000 bytes, base64 omitted]"


def test_text_is_never_taken_for_media() -> None:
    short = {"image": b64(MIN_MEDIA_CHARS * 3 // 4 - 3)}  # just under the threshold
    letters = {"prompt": "x" * 10_000}  # base64 characters, but no encoded bytes look like this
    prose = {"prompt": "lorem ipsum " * 2_000}
    escaped = {"prompt": 'she said \\"' + b64(6_000) + '\\" twice'}  # inside a longer string
    for value in (short, letters, prose, escaped):
        raw = json.dumps(value).encode()
        assert elide_media(raw) in (raw,)
    small = b'{"a": 1}'
    assert elide_media(small) is small


async def test_a_4_mb_image_prompt_still_records_its_text(llm_server, tracing):
    image = f"data:image/png;base64,{b64(3_000_000)}"
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    async with tracing.session() as s:
        async with s.post(f"{llm_server.base_url}/chat/completions", json=body) as resp:
            answer = await resp.json()
    # The server got the image whole: only the recorded copy is elided.
    assert llm_server.requests[-1]["json"]["messages"][0]["content"][1]["image_url"]["url"] == image
    assert answer["choices"][0]["message"]["content"].startswith("Mock answer")
    span = tracing.only()
    a = attrs(span)
    assert "llm_tracing.body_truncated" not in a
    recorded = jattr(span, "langfuse.observation.input")[0]["content"]
    assert recorded[0]["text"] == "What is in this picture?"
    assert recorded[1]["image_url"]["url"] == "[image/png: 3000000 bytes, base64 omitted]"
    assert a["gen_ai.request.model"] == "gpt-4o"
    assert len(a["langfuse.observation.input"]) < 1_000


async def test_an_anthropic_image_block(llm_server, tracing):
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg"}}
    block["source"]["data"] = b64(2_000_000)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [block, {"type": "text", "text": "Caption?"}]}],
    }
    url = f"http://127.0.0.1:{llm_server.port}/v1/messages"
    async with tracing.session() as s, s.post(url, json=body) as resp:
        await resp.read()
    span = tracing.only()
    message = jattr(span, "langfuse.observation.input")[0]
    assert message["content"][0]["source"] == {
        "type": "base64",
        "media_type": "image/jpeg",
        "data": "[2000000 bytes, base64 omitted]",
    }
    assert message["content"][1]["text"] == "Caption?"
