"""Writing a call's end attributes to an SDK span without validating them a second time.

An end's attributes have passed our own gate (``_exportable``), which leaves each value as the
SDK's validation would store it, and says so with :class:`ExportableAttributes`.
``Span.set_attributes`` checks every one all the same (about 1.3 us an attribute on the
benchmark machine; an LLM call ends with 13 to 20 of them). So, where the outcome is provably
the SDK's own, they go straight into the span's attribute dict:

* the span is the SDK's and ``set_attributes`` is not overridden (a subclass may do its own
  work there);
* its attributes are the SDK's ``BoundedAttributes``, mutable, with no value-length limit and
  room for them all under the count limit;
* none of the keys is set yet (the SDK would move an overwritten key to the end), and the span
  has not ended (the SDK would warn and drop them).

Anything else, and any change in those SDK internals (the same from SDK 1.33 to 1.45), takes
``span.set_attributes``: never wrong, only slower.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span as _SdkSpan
from opentelemetry.trace import Span

from ._exportable import ExportableAttributes

__all__ = ["set_end_attributes"]

# Span class -> whether it keeps the SDK's set_attributes.
_PLAIN: dict[type, bool] = {}


def set_end_attributes(span: Span, attributes: dict[str, Any]) -> None:
    """``span.set_attributes(attributes)``, done without the SDK's checks when ``attributes``
    is an :class:`ExportableAttributes` and the span is the SDK's own."""
    if type(attributes) is not ExportableAttributes or not _write(span, attributes):
        span.set_attributes(attributes)


def _plain(kind: type) -> bool:
    plain = _PLAIN.get(kind)
    if plain is None:
        plain = issubclass(kind, _SdkSpan) and kind.set_attributes is _SdkSpan.set_attributes
        _PLAIN[kind] = plain
    return plain


def _write(span: Any, attributes: ExportableAttributes) -> bool:
    """Store ``attributes`` as the SDK would have; ``False``, with nothing written, unless the
    outcome is certain."""
    kind = type(span)
    if not _plain(kind):
        return False
    try:
        bounded = span._attributes
        if (
            type(bounded) is not BoundedAttributes
            or bounded.max_value_len is not None
            or bounded._immutable
        ):
            return False
        stored, maxlen = bounded._dict, bounded.maxlen
        with span._lock:
            if span._end_time is not None:
                return False
            with bounded._lock:
                if not stored.keys().isdisjoint(attributes) or (
                    maxlen is not None and len(stored) + len(attributes) > maxlen
                ):
                    return False
                stored.update(attributes)
    except AttributeError:
        _PLAIN[kind] = False  # not the SDK internals this was written against
        return False
    return True
