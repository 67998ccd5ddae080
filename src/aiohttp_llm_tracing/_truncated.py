"""What can still be read from a JSON body too big to keep whole.

Past ``max_body_bytes`` only the head and a tail window of a body are kept, so it no longer
parses. Its top-level scalars (``model``, ``id``, sampling parameters) sit near the start of a
request or response, and ``usage`` near the end of a response: they are found by pattern, not
by parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._json import INVALID, loads

__all__ = ["top_level_fields"]

# A top-level scalar field of a JSON object, found without parsing (the object was cut). A quote
# inside a string is escaped, so only real keys match; nested keys with object values do not.
_SCALAR_FIELD = re.compile(
    rb'(?<!\\)"(model|id|stream|temperature|max_tokens|max_completion_tokens|max_output_tokens'
    rb'|top_p|top_k|frequency_penalty|presence_penalty|seed|encoding_format|dimensions)"\s*:\s*'
    rb'("(?:[^"\\]|\\.){0,512}"|true|false|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)'
)
_USAGE_FIELD = re.compile(rb'(?<!\\)"usage"\s*:\s*\{')


def top_level_fields(head: bytes, tail: bytes) -> dict[str, Any]:
    """Scalars and ``usage`` from the two ends of a JSON object too big to parse whole.

    The first occurrence in the head wins (a request's ``model``, a response's ``id``), else the
    last one in the tail (an embeddings response names its model and usage after the vectors).
    """
    fields: dict[str, Any] = {}
    for match in _SCALAR_FIELD.finditer(head[:65_536]):
        fields.setdefault(match.group(1).decode(), loads(match.group(2)))
    for match in reversed(list(_SCALAR_FIELD.finditer(tail))):
        fields.setdefault(match.group(1).decode(), loads(match.group(2)))
    for source in (tail, head[-65_536:]):
        usage = None
        for match in _USAGE_FIELD.finditer(source):
            usage = match
        if usage is not None:
            try:
                text = source[usage.end() - 1 :].decode("utf-8", "replace")
                value, _ = json.JSONDecoder().raw_decode(text)
            except ValueError:
                continue
            fields["usage"] = value
            break
    return {k: v for k, v in fields.items() if v is not INVALID}
