"""HTTP clients for the SDKs that take one (openai, anthropic, groq, together), traced without
patching anything process-wide and without private imports in user code::

    from openai import AsyncOpenAI
    from aiohttp_llm_tracing import openai_http_client

    client = AsyncOpenAI(http_client=openai_http_client())

Each helper returns the SDK's own ``DefaultAioHttpClient``, built with the SDK's defaults
(timeouts, connection limits, keep-alive, redirects). Its transport still builds the aiohttp
session itself, lazily at the first request, with the connector settings it always uses; the
helper only adds our trace config to that one session. An SDK version whose aiohttp transport
no longer has that shape makes the helper raise ``RuntimeError`` naming the version, never
return an untraced client.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import _session_patch
from ._trace_config import TracingTraceConfig, create_trace_config

__all__ = [
    "anthropic_http_client",
    "groq_http_client",
    "openai_http_client",
    "together_http_client",
]

_logger = logging.getLogger("aiohttp_llm_tracing")
_warned_anthropic = False


def warn_if_anthropic_traces_itself() -> None:
    """Warn once that the anthropic SDK's own spans double ours, unless they are turned off."""
    global _warned_anthropic
    if _warned_anthropic or os.environ.get("ANTHROPIC_OPEN_TELEMETRY", "").lower() == "false":
        return
    _warned_anthropic = True
    _logger.warning(
        "aiohttp-llm-tracing: the anthropic SDK emits its own span per call too; pass "
        "open_telemetry=False to AsyncAnthropic or set ANTHROPIC_OPEN_TELEMETRY=false for "
        "one span per call"
    )


def _sdk(name: str) -> tuple[Any, str]:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{name}_http_client needs `pip install {name}[aiohttp]`") from exc
    return module, getattr(module, "__version__", "unknown")


def _traced_transports(client: Any) -> list[Any]:
    """The aiohttp transports of an httpx-style client: the default one and any proxy mounts."""
    candidates = [getattr(client, "_transport", None)]
    candidates += list((getattr(client, "_mounts", None) or {}).values())
    return [t for t in candidates if callable(getattr(t, "get_client", None))]


def _trace_transport(transport: Any, config: TracingTraceConfig) -> None:
    build: Callable[[], Any] = transport.get_client

    def get_client() -> Any:
        # The SDK's own session factory, unchanged: only the session it builds here gains our
        # trace config, so the SDK's connector limits and keep-alive stay exactly its own.
        with _session_patch.scoped(config):
            return build()

    transport.get_client = get_client


def _http_client(
    name: str,
    trace_config: TracingTraceConfig | None,
    client_options: Mapping[str, Any] | None,
    options: dict[str, Any],
) -> Any:
    module, version = _sdk(name)
    factory = getattr(module, "DefaultAioHttpClient", None)
    if factory is None:
        raise RuntimeError(
            f"{name} {version} has no DefaultAioHttpClient; aiohttp_llm_tracing.{name}_http_client "
            "supports the SDK versions that ship one. Use aiohttp_llm_tracing.instrument() instead."
        )
    config = trace_config if trace_config is not None else create_trace_config(**options)
    client = factory(**dict(client_options or {}))  # the SDK's own error if its extra is missing
    transports = _traced_transports(client)
    if not transports:
        raise RuntimeError(
            f"{name} {version}: its DefaultAioHttpClient no longer has an aiohttp transport with "
            f"get_client() (found {type(getattr(client, '_transport', None)).__name__}), so "
            f"aiohttp_llm_tracing.{name}_http_client cannot trace it. Use "
            "aiohttp_llm_tracing.instrument() instead."
        )
    for transport in transports:
        _trace_transport(transport, config)
    return client


def openai_http_client(
    *,
    trace_config: TracingTraceConfig | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Return ``openai.DefaultAioHttpClient(**client_options)`` with its session traced.

    Pass it as ``AsyncOpenAI(http_client=...)`` (Azure too). ``trace_config`` reuses a config
    from :func:`create_trace_config`; otherwise one is built from ``options``, the same
    keywords. Needs ``openai[aiohttp]``.
    """
    return _http_client("openai", trace_config, client_options, options)


def anthropic_http_client(
    *,
    trace_config: TracingTraceConfig | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Return ``anthropic.DefaultAioHttpClient(**client_options)`` with its session traced.

    Pass it as ``AsyncAnthropic(http_client=...)``. The anthropic SDK emits its own span for
    each call as well; this warns once unless ``ANTHROPIC_OPEN_TELEMETRY=false`` is set (or pass
    ``open_telemetry=False`` to the client). Options as for :func:`openai_http_client`; needs
    ``anthropic[aiohttp]``.
    """
    warn_if_anthropic_traces_itself()
    return _http_client("anthropic", trace_config, client_options, options)


def groq_http_client(
    *,
    trace_config: TracingTraceConfig | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Return ``groq.DefaultAioHttpClient(**client_options)`` with its session traced, for
    ``AsyncGroq(http_client=...)``. Options as for :func:`openai_http_client`."""
    return _http_client("groq", trace_config, client_options, options)


def together_http_client(
    *,
    trace_config: TracingTraceConfig | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Return ``together.DefaultAioHttpClient(**client_options)`` with its session traced, for
    ``AsyncTogether(http_client=...)``. Options as for :func:`openai_http_client`."""
    return _http_client("together", trace_config, client_options, options)
