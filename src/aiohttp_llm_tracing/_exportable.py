"""The one gate every value passes before it is written to a span: whatever a server sends, the
exporter can encode it.

OTLP encodes strings as UTF-8 and integers as int64. A lone surrogate (``"\\udc00"``, which JSON
allows as an escape and Python keeps) makes protobuf refuse the string, and the exporter then
drops the whole batch it was in, other requests' spans included; an integer of 2**63 or more
fails the same way. So strings are made valid UTF-8 (a lone surrogate becomes U+FFFD; a pair
split into two escapes is joined), integers outside int64 are kept as their decimal string, and
any other type becomes a string. Names, status descriptions, attributes and event attributes
all pass here.

What comes out is also what the SDK's own validation would store unchanged (sequences as tuples),
and :class:`ExportableAttributes` says so where it holds for every value: ``_span_write`` then
spares the SDK checking it all again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ExportableAttributes", "exportable_attributes", "exportable_str"]

_INT64 = (-(1 << 63), (1 << 63) - 1)
_SCALARS = frozenset({str, bool, float, int})


class ExportableAttributes(dict[str, Any]):
    """Attributes the SDK would store as they are: non-empty ``str`` keys, and values that are
    ``str``, ``bool``, ``float`` or int64 ``int``, or tuples of one of those types."""

    __slots__ = ()


def exportable_str(text: str) -> str:
    """``text`` as valid UTF-8 text (the same object when it already is)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16 with surrogatepass a split pair is joined, a lone one replaced.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return exportable_str(value)
    if isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, (list, tuple)):
        items = [_value(v) for v in value]
        # OTLP arrays are homogeneous: mixed ones become strings throughout.
        if len({type(v) for v in items}) > 1:
            items = [v if isinstance(v, str) else str(v) for v in items]
        return tuple(items)
    return exportable_str(str(value))


def exportable_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with every key and value one the OTLP exporter encodes: an
    :class:`ExportableAttributes` unless a key is empty or a sequence holds sequences."""
    out: dict[str, Any] = ExportableAttributes()
    flat = True
    low, high = _INT64
    for key, value in attributes.items():
        # Plain ASCII strings and int64 integers, nearly every value, cost one check each
        # (exact types: a subclass, or a bool, takes the general path, to the same result).
        kind = type(value)
        if kind is str:
            if not value.isascii():
                value = exportable_str(value)
        elif kind is int:
            if not low <= value <= high:
                value = str(value)
        elif value is None:
            continue
        else:
            value = _value(value)
            if type(value) is tuple and value and type(value[0]) not in _SCALARS:
                flat = False
        out[key if key.isascii() else exportable_str(key)] = value
    if not flat or "" in out:
        return dict(out)
    return out
