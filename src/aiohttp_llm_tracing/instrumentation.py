"""``AiohttpLLMInstrumentor``: trace every ``aiohttp.ClientSession`` the process creates.

Most LLM traffic over aiohttp comes from SDKs that build their own sessions (aiobotocore,
litellm, google-genai, cohere, benchmark clients), so a trace config passed by hand never
reaches it. The instrumentor wraps ``ClientSession.__init__`` (with ``wrapt``, as OpenTelemetry's
aiohttp-client instrumentation does) and appends one shared trace config to every session
created afterwards::

    import aiohttp_llm_tracing

    aiohttp_llm_tracing.setup_tracing()
    aiohttp_llm_tracing.instrument()   # every ClientSession from now on is traced

It is also registered under the ``opentelemetry_instrumentor`` entry point as ``aiohttp-llm``,
so ``opentelemetry-instrument python app.py`` turns it on with no code change, and
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=aiohttp-llm`` turns it off.

Sessions created before ``instrument()`` stay untraced for their lifetime: aiohttp freezes a
session's trace configs when it is built and offers no public way to add one later. The SDKs
build their sessions lazily, at their first request, so instrumenting before the first call is
enough even when the SDK client object already exists.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from . import _session_patch
from ._registry import SpanRegistry
from ._sdk_clients import warn_if_anthropic_traces_itself
from ._trace_config import TracingTraceConfig, create_trace_config

__all__ = ["ENTRY_POINT_NAME", "AiohttpLLMInstrumentor", "instrument"]

ENTRY_POINT_NAME = "aiohttp-llm"
"""Our name under ``opentelemetry_instrumentor``, as ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
spells it."""

_logger = logging.getLogger("aiohttp_llm_tracing")
# BaseInstrumentor's check-then-set on its flag is not atomic; one lock makes instrument() and
# uninstrument() safe to call from several threads.
_LOCK = threading.RLock()


def _disabled_by_env() -> bool:
    names = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return ENTRY_POINT_NAME in {n.strip() for n in names.split(",")}


class AiohttpLLMInstrumentor(BaseInstrumentor):
    """An OpenTelemetry instrumentor that traces every ``aiohttp.ClientSession`` created after
    :meth:`instrument`.

    ``instrument(**options)`` takes ``tracer_provider`` and every other keyword option of
    :func:`create_trace_config`; an unknown option raises ``TypeError`` before anything is
    patched. All instrumented sessions share one trace config and one :attr:`registry`, so
    ``registry.stats()`` covers the whole process. A session whose caller passed one of our trace
    configs already is not traced twice. Like every OpenTelemetry instrumentor this class is a
    singleton; a second ``instrument()`` does nothing (with the base class's warning), and
    ``uninstrument()`` restores ``ClientSession.__init__`` while sessions created in between keep
    tracing until they close.
    """

    _config: TracingTraceConfig | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """The package versions this instrumentor works with."""
        return ("aiohttp >= 3.9",)

    def instrument(self, **kwargs: Any) -> None:
        """Start tracing every new session; see the class docstring for the options."""
        with _LOCK:
            if _disabled_by_env():
                _logger.info(
                    "aiohttp-llm-tracing: not instrumenting, %r is in "
                    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
                    ENTRY_POINT_NAME,
                )
                return
            super().instrument(**kwargs)

    def uninstrument(self, **kwargs: Any) -> None:
        """Stop tracing new sessions and restore ``ClientSession.__init__``."""
        with _LOCK:
            super().uninstrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        # Built first: a bad option raises here, before the class is patched.
        config = create_trace_config(**kwargs)
        self._config = config
        _session_patch.set_global(config)
        _session_patch.acquire()
        if _session_patch.contrib_active():
            # Its wrapper is below ours, so its config is added after ours runs: warn now.
            _session_patch.warn_contrib()
        if "anthropic" in sys.modules:
            warn_if_anthropic_traces_itself()

    def _uninstrument(self, **kwargs: Any) -> None:
        _session_patch.set_global(None)
        _session_patch.release()

    @property
    def trace_config(self) -> TracingTraceConfig | None:
        """The trace config every instrumented session carries (kept after ``uninstrument()``,
        since sessions built while instrumented still use it); ``None`` before the first
        ``instrument()``."""
        return self._config

    @property
    def registry(self) -> SpanRegistry | None:
        """The in-flight registry shared by every instrumented session, for ``stats()``."""
        return None if self._config is None else self._config.registry


def instrument(**options: Any) -> AiohttpLLMInstrumentor:
    """Trace every ``aiohttp.ClientSession`` created from now on and return the instrumentor.

    ``options`` are those of :func:`create_trace_config` (``tracer_provider``, ``registry``,
    ``capture_content``, ``mask``...). Shorthand for ``AiohttpLLMInstrumentor().instrument()``.
    """
    instrumentor = AiohttpLLMInstrumentor()
    instrumentor.instrument(**options)
    return instrumentor
