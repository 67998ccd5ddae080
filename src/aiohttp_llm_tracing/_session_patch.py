"""The one patch of ``aiohttp.ClientSession.__init__``, shared by the instrumentor and the SDK
client helpers.

While it is installed, every session built gets a trace config appended to its
``trace_configs``: the helper's own config while an SDK client builds its session inside
:func:`scoped`, else the instrumentor's process-wide config, else none. A session whose caller
already passed one of ours is left as it is, so no request is traced twice.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import aiohttp
import wrapt

from ._trace_config import TracingTraceConfig

__all__ = ["acquire", "contrib_active", "installed", "release", "scoped", "set_global"]

_logger = logging.getLogger("aiohttp_llm_tracing")
_CONTRIB_MODULE = "opentelemetry.instrumentation.aiohttp_client"
_SCOPED: ContextVar[TracingTraceConfig | None] = ContextVar(
    "aiohttp_llm_tracing_session_config", default=None
)
_LOCK = threading.Lock()


def with_config(configs: Any, config: TracingTraceConfig) -> list[Any]:
    """``configs`` as a new list that holds one of ours: the caller's list is never mutated."""
    # A copy, never the caller's list: litellm passes one list to every session it builds.
    result = list(configs)
    if not any(isinstance(c, TracingTraceConfig) for c in result):
        result.append(config)
    return result


def contrib_active() -> bool:
    """Whether OpenTelemetry's own aiohttp-client instrumentor is on in this process."""
    module = sys.modules.get(_CONTRIB_MODULE)
    instrumentor = getattr(module, "AioHttpClientInstrumentor", None)
    instance = getattr(instrumentor, "_instance", None)
    return bool(getattr(instance, "is_instrumented_by_opentelemetry", False))


def warn_contrib() -> None:
    """Log, once per process, that every request would get two CLIENT spans."""
    global _warned_contrib
    if _warned_contrib:
        return
    _warned_contrib = True
    _logger.warning(
        "aiohttp-llm-tracing: OpenTelemetry's aiohttp-client instrumentation is active too, so "
        "every request gets two CLIENT spans. Turn it off with "
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=aiohttp-client (or do not call "
        "AioHttpClientInstrumentor().instrument())."
    )


_warned_contrib = False


class _InitWrapper:
    """The ``wrapt`` wrapper around ``ClientSession.__init__``; it never raises on its own.

    Kept to a few attribute reads for a session that brings no trace configs: it runs for
    every session in the process.
    """

    __slots__ = ("global_config",)

    def __init__(self) -> None:
        self.global_config: TracingTraceConfig | None = None

    def __call__(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        config = _SCOPED.get()
        if config is None:
            config = self.global_config
        if config is not None:
            # aiohttp takes trace_configs by keyword only; wrapt hands us a fresh kwargs dict.
            configs = kwargs.get("trace_configs")
            try:
                if configs:
                    merged = with_config(configs, config)
                    # OpenTelemetry's aiohttp-client instrumentor, wrapped on top of us, marks
                    # the config it adds (when it wraps below us, instrument() saw it).
                    if any(getattr(c, "_is_instrumented_by_opentelemetry", False) for c in merged):
                        warn_contrib()
                    kwargs["trace_configs"] = merged
                else:
                    kwargs["trace_configs"] = [config]
            except Exception as exc:
                config.registry.record_internal_error("ClientSession.__init__", exc)
        return wrapped(*args, **kwargs)


_WRAPPER = _InitWrapper()


def _chain() -> Iterator[Any]:
    """``ClientSession.__init__`` and every function it wraps, outermost first."""
    func = aiohttp.ClientSession.__dict__.get("__init__")
    while func is not None:
        yield func
        func = getattr(func, "__wrapped__", None)


def installed() -> bool:
    """Whether our wrapper is anywhere in ``ClientSession.__init__``'s wrapper chain."""
    return any(getattr(f, "_self_wrapper", None) is _WRAPPER for f in _chain())


# The patch is on the class only while someone needs it: the instrumentor while instrumented,
# each helper-built SDK client for the instant its transport builds its session.
_users = 0


def acquire() -> None:
    """Take a reference on the patch, wrapping ``ClientSession.__init__`` on the first one."""
    global _users
    with _LOCK:
        _users += 1
        if not installed():
            # wrapt keeps the signature, __wrapped__ and subclass calls through super() intact.
            wrapt.wrap_function_wrapper(aiohttp.ClientSession, "__init__", _WRAPPER)


def release() -> None:
    """Drop a reference; the last one restores the original ``__init__``.

    Unless another wrapper was put on top of ours: unwrapping the outermost one would remove
    someone else's, so ours stays in the chain, adding nothing without a global or scoped
    config.
    """
    global _users
    with _LOCK:
        _users = max(0, _users - 1)
        if _users:
            return
        outer: Any = aiohttp.ClientSession.__dict__.get("__init__")
        if getattr(outer, "_self_wrapper", None) is _WRAPPER:
            aiohttp.ClientSession.__init__ = outer.__wrapped__  # type: ignore[method-assign]


def set_global(config: TracingTraceConfig | None) -> None:
    """The config every new session gets, or ``None`` for none (the instrumentor's switch)."""
    _WRAPPER.global_config = config


@contextlib.contextmanager
def scoped(config: TracingTraceConfig) -> Iterator[None]:
    """Give ``config`` to every session built in this block (in this task or thread)."""
    acquire()
    token = _SCOPED.set(config)
    try:
        yield
    finally:
        _SCOPED.reset(token)
        release()
