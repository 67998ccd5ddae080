"""OpenTelemetry and Langfuse tracing for aiohttp clients, built for LLM calls.

Every request becomes a span that ends exactly once, whatever the caller does; calls to the LLM
APIs it recognises become complete generations (model, messages, output, token usage, time to
first token). Trace every session in the process, the ones SDKs build for themselves included::

    import aiohttp_llm_tracing

    aiohttp_llm_tracing.setup_tracing()
    aiohttp_llm_tracing.instrument()

or attach a trace config to one session::

    async with aiohttp.ClientSession(trace_configs=[create_trace_config()]) as session:
        ...
"""

from __future__ import annotations

import contextlib

from ._context import TraceAttributes, current_trace_attributes, trace_attributes
from ._reasons import EndReason
from ._registry import (
    DEFAULT_MAXSIZE,
    DEFAULT_SWEEP_INTERVAL,
    DEFAULT_TTL,
    RegistryStats,
    SpanRegistry,
)
from ._sdk_clients import (
    anthropic_http_client,
    groq_http_client,
    openai_http_client,
    together_http_client,
)
from ._setup import setup_tracing
from ._trace_config import TracingTraceConfig, create_trace_config
from ._version import __version__
from .instrumentation import AiohttpLLMInstrumentor, instrument

__all__ = [
    "DEFAULT_MAXSIZE",
    "DEFAULT_SWEEP_INTERVAL",
    "DEFAULT_TTL",
    "AiohttpLLMInstrumentor",
    "EndReason",
    "RegistryStats",
    "SpanRegistry",
    "TraceAttributes",
    "TracingTraceConfig",
    "__version__",
    "anthropic_http_client",
    "create_trace_config",
    "current_trace_attributes",
    "groq_http_client",
    "instrument",
    "openai_http_client",
    "setup_tracing",
    "together_http_client",
    "trace_attributes",
]

# Public names show as aiohttp_llm_tracing.X in reprs and tracebacks, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = __name__
del _name, _obj
