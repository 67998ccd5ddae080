"""Trace-level attributes (session, user, trace name, tags, metadata) from the caller's context.

Two sources, merged per request: :func:`trace_attributes`, a context manager over a ContextVar
(task-local, nestable, restored on exit, copied into tasks that ``asyncio.gather`` creates), and
``trace_request_ctx={...}`` on a single aiohttp request. Nothing here is process-global.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

from . import _attributes as A
from ._exportable import exportable_attributes
from ._json import dumps

__all__ = ["TraceAttributes", "current_trace_attributes", "trace_attributes"]


@dataclass(frozen=True)
class TraceAttributes:
    """Trace-level attributes put on every span started while they are current.

    ``name`` names the generation (the LLM span) itself; the others describe the whole trace.
    """

    session_id: str | None = None
    user_id: str | None = None
    trace_name: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    release: str | None = None
    version: str | None = None
    environment: str | None = None

    def merged(self, other: TraceAttributes) -> TraceAttributes:
        """``other`` over ``self``: its set fields win, tags are united, metadata merged."""
        if other is _EMPTY:
            return self
        if self is _EMPTY:
            return other
        values: dict[str, Any] = {}
        for name in _SCALAR_FIELDS:
            theirs = getattr(other, name)
            values[name] = theirs if theirs is not None else getattr(self, name)
        return TraceAttributes(
            tags=tuple(dict.fromkeys((*self.tags, *other.tags))),
            metadata={**self.metadata, **other.metadata},
            **values,
        )

    @functools.cached_property
    def span_attributes(self) -> dict[str, Any]:
        """The OpenTelemetry attributes for these values (computed once per instance)."""
        return _to_span_attributes(self)


_EMPTY = TraceAttributes()
# The fields where the newer value simply wins; tags and metadata are combined instead.
_SCALAR_FIELDS = tuple(
    f.name for f in fields(TraceAttributes) if f.name not in ("tags", "metadata")
)
_CURRENT: ContextVar[TraceAttributes] = ContextVar("aiohttp_llm_tracing.trace", default=_EMPTY)


def current_trace_attributes() -> TraceAttributes:
    """The trace attributes in effect in the current context."""
    return _CURRENT.get()


@contextmanager
def trace_attributes(
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    trace_name: str | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    release: str | None = None,
    version: str | None = None,
    environment: str | None = None,
) -> Iterator[TraceAttributes]:
    """Set trace-level attributes for every request traced inside the block.

    Task-local: concurrent tasks each see their own values, and tasks started inside the block
    (``asyncio.gather``, ``create_task``) inherit them. Nested blocks override single values,
    add tags and merge metadata; the outer values come back on exit::

        with trace_attributes(session_id="s-1", user_id="u-7", tags=["agent"]):
            await agent.run()
    """
    update = TraceAttributes(
        session_id=session_id,
        user_id=user_id,
        trace_name=trace_name,
        name=name,
        tags=_tags(tags),
        metadata=dict(metadata or {}),
        release=release,
        version=version,
        environment=environment,
    )
    merged = _CURRENT.get().merged(update)
    token = _CURRENT.set(merged)
    try:
        yield merged
    finally:
        _CURRENT.reset(token)


def from_request_ctx(value: Any) -> TraceAttributes:
    """Read ``trace_request_ctx`` (a mapping or a :class:`TraceAttributes`); anything else: none."""
    if value is None:
        return _EMPTY
    if isinstance(value, TraceAttributes):
        return value
    if not isinstance(value, Mapping) or not value:
        return _EMPTY
    # trace_request_ctx is shared with every other trace config on the session: a value of the
    # wrong type is ignored, never a reason to lose the span.
    metadata = value.get("metadata")
    return TraceAttributes(
        session_id=_opt_str(value.get("session_id")),
        user_id=_opt_str(value.get("user_id")),
        trace_name=_opt_str(value.get("trace_name")),
        name=_opt_str(value.get("name")),
        tags=_tags(value.get("tags")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        release=_opt_str(value.get("release")),
        version=_opt_str(value.get("version")),
        environment=_opt_str(value.get("environment")),
    )


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(str(t) for t in value)
    return ()


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_span_attributes(attrs: TraceAttributes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if attrs.session_id is not None:
        out[A.SESSION_ID] = attrs.session_id
    if attrs.user_id is not None:
        out[A.USER_ID] = attrs.user_id
    if attrs.trace_name is not None:
        out[A.LANGFUSE_TRACE_NAME] = attrs.trace_name
    if attrs.tags:
        out[A.LANGFUSE_TRACE_TAGS] = list(attrs.tags)
    for key, value in attrs.metadata.items():
        out[A.LANGFUSE_TRACE_METADATA_PREFIX + str(key)] = (
            value if isinstance(value, (str, bool, int, float)) else dumps(value)
        )
    if attrs.release is not None:
        out[A.LANGFUSE_RELEASE] = attrs.release
    if attrs.version is not None:
        out[A.LANGFUSE_VERSION] = attrs.version
    if attrs.environment is not None:
        out[A.LANGFUSE_ENVIRONMENT] = attrs.environment
    # Once per set of trace attributes, not per request: they start every span in their scope.
    return exportable_attributes(out)
