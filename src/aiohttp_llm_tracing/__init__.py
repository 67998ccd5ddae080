"""OpenTelemetry and Langfuse tracing for aiohttp clients, built for LLM calls.

Attach one trace config to a session and every request becomes a span that ends exactly once,
whatever the caller does; calls to OpenAI-compatible and Anthropic APIs become complete
generations (model, messages, output, token usage, time to first token)::

    from aiohttp_llm_tracing import create_trace_config, setup_tracing

    setup_tracing()
    async with aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session:
        ...
"""

from __future__ import annotations

import contextlib

from ._context import TraceAttributes, current_trace_attributes, trace_attributes
from ._export import setup_tracing
from ._reasons import EndReason
from ._registry import (
    DEFAULT_MAXSIZE,
    DEFAULT_SWEEP_INTERVAL,
    DEFAULT_TTL,
    RegistryStats,
    SpanRegistry,
)
from ._trace_config import TracingTraceConfig, create_trace_config
from ._version import __version__

__all__ = [
    "DEFAULT_MAXSIZE",
    "DEFAULT_SWEEP_INTERVAL",
    "DEFAULT_TTL",
    "EndReason",
    "RegistryStats",
    "SpanRegistry",
    "TraceAttributes",
    "TracingTraceConfig",
    "__version__",
    "create_trace_config",
    "current_trace_attributes",
    "setup_tracing",
    "trace_attributes",
]

# Public names show as aiohttp_llm_tracing.X in reprs and tracebacks, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = __name__
del _name, _obj
