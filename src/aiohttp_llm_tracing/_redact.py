"""Keep secrets out of span attributes: URL user info and key-like query values."""

from __future__ import annotations

import re
from functools import lru_cache

from yarl import URL

__all__ = ["REDACTED", "is_sensitive_header", "redact_url"]

REDACTED = "REDACTED"

# Query parameter names whose values are credentials. Matched as a substring of the lower-cased
# name, so `api_key`, `x-api-key`, `apiKey`, `access_token`, `X-Amz-Signature` all match.
_SENSITIVE_QUERY = re.compile(
    r"key|token|secret|passw|pwd|signature|sig$|^sig|auth|credential|session|code$",
    re.IGNORECASE,
)
_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "anthropic-api-key",
        "openai-api-key",
    }
)


def is_sensitive_header(name: str) -> bool:
    """Whether a header carries a credential and must never be recorded."""
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or bool(_SENSITIVE_QUERY.search(lowered))


def redact_url(url: URL) -> str:
    """``url`` as a string with user info removed and key-like query values replaced.

    Cached per distinct URL string: LLM clients call the same few endpoints over and over, so
    the common case costs one dictionary lookup.
    """
    return _redact(str(url)) if (url.raw_user or url.raw_query_string) else str(url)


@lru_cache(maxsize=1024)
def _redact(raw: str) -> str:
    url = URL(raw)
    if url.raw_user:
        url = url.with_user(None)
    if url.raw_query_string:
        query = url.query
        if any(_SENSITIVE_QUERY.search(k) for k in query):
            url = url.with_query(
                [(k, REDACTED if _SENSITIVE_QUERY.search(k) else v) for k, v in query.items()]
            )
    return str(url)
