"""HTTP semantic conventions as OpenTelemetry's own instrumentations apply them, read from the
same environment variables, so a user of the contrib aiohttp-client instrumentation finds the
same knobs here:

* ``OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`` - the methods kept as they are; any other becomes
  ``_OTHER`` (with ``http.request.method_original``) and the span is named ``HTTP``.
* ``OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS`` (else ``OTEL_PYTHON_EXCLUDED_URLS``) - comma-
  separated regular expressions; a request whose URL matches one gets no span.
* ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE`` - response headers recorded as
  ``http.response.header.<name>``. Request headers are never recorded: they carry the keys.

On LLM calls the provider's request ID and rate-limit headers are recorded by default, since
they are what a support ticket or a 429 investigation needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.http import ExcludeList, parse_excluded_urls

__all__ = [
    "DEFAULT_KNOWN_METHODS",
    "captured_response_headers",
    "excluded_urls",
    "header_attributes",
    "known_methods",
    "llm_header_attributes",
]

DEFAULT_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_KNOWN_METHODS_ENV = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS"
_EXCLUDED_ENVS = ("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
_RESPONSE_HEADERS_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"
_HEADER_PREFIX = "http.response.header."
# Request IDs (OpenAI, Cohere, Groq... / Anthropic / AWS / Google) and rate-limit state.
_LLM_HEADERS = frozenset(
    {
        "x-request-id",
        "request-id",
        "x-amzn-requestid",
        "x-goog-request-id",
        "retry-after",
        "retry-after-ms",
    }
)
_LLM_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit-")


def known_methods() -> frozenset[str]:
    """The methods the conventions call known: the environment's list when set (names are
    case-sensitive, as the conventions say), else the default set with ``QUERY``."""
    raw = os.environ.get(_KNOWN_METHODS_ENV)
    if raw is None:
        return DEFAULT_KNOWN_METHODS
    return frozenset(m.strip() for m in raw.split(",") if m.strip())


def excluded_urls() -> ExcludeList | None:
    """The URLs to leave untraced, or ``None`` when none are configured (no per-request cost)."""
    for name in _EXCLUDED_ENVS:
        raw = os.environ.get(name)
        if raw:
            return parse_excluded_urls(raw)
    return None


def captured_response_headers() -> tuple[str, ...]:
    """Response header names to record, lower-cased, from the environment."""
    raw = os.environ.get(_RESPONSE_HEADERS_ENV, "")
    return tuple(dict.fromkeys(h.strip().lower() for h in raw.split(",") if h.strip()))


def header_attributes(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """``http.response.header.<name>`` (a list of values, as the conventions say) per name."""
    out: dict[str, Any] = {}
    getall = getattr(headers, "getall", None)
    for name in names:
        if name in headers:
            out[_HEADER_PREFIX + name] = getall(name) if getall else [headers[name]]
    return out


def llm_header_attributes(headers: Mapping[str, str]) -> dict[str, Any]:
    """The provider's request ID and rate-limit headers, as ``http.response.header.<name>``."""
    out: dict[str, Any] = {}
    keys = _LLM_HEADER_KEYS
    for name, value in headers.items():
        # Every LLM response runs this over all its headers, and their names repeat: each
        # name's verdict is looked up, not worked out again.
        key = keys.get(name, _UNSEEN)
        if key is _UNSEEN:
            key = _llm_header_key(name)
            if len(keys) < _MAX_HEADER_KEYS:
                keys[name] = key
        if key is not None:
            out.setdefault(key, []).append(value)
    return out


_UNSEEN: Any = object()
_MAX_HEADER_KEYS = 1024
_LLM_HEADER_KEYS: dict[str, str | None] = {}


def _llm_header_key(name: str) -> str | None:
    lower = name.lower()
    if lower in _LLM_HEADERS or lower.startswith(_LLM_HEADER_PREFIXES):
        return _HEADER_PREFIX + lower
    return None
