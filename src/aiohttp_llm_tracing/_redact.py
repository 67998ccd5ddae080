"""Keep secrets out of spans: URL user info, fragments and key-like query values, also in errors."""

from __future__ import annotations

import re
from functools import lru_cache

from yarl import URL

__all__ = ["REDACTED", "redact_text", "redact_url"]

REDACTED = "REDACTED"

# Query parameter names whose values are credentials. Matched as a substring of the lower-cased
# name, so `api_key`, `x-api-key`, `apiKey`, `access_token`, `X-Amz-Signature` all match.
_SENSITIVE_QUERY = re.compile(
    r"key|token|secret|passw|pwd|signature|sig$|^sig|auth|credential|session|code$",
    re.IGNORECASE,
)
# A URL as error messages quote it: up to whitespace, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: URL) -> str:
    """``url`` as a string with user info removed and key-like query values replaced.

    Cached per distinct URL string: LLM clients call the same few endpoints over and over, so
    the common case costs one dictionary lookup.
    """
    if url.raw_user or url.raw_password or url.raw_query_string or url.raw_fragment:
        return _redact(str(url))
    return str(url)


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted as :func:`redact_url` does.

    For exception messages and tracebacks: aiohttp's errors quote the request URL, query
    string included.
    """
    return _URL_IN_TEXT.sub(_redact_match, text) if "://" in text else text


def _redact_match(match: re.Match[str]) -> str:
    try:
        return _redact(match.group())
    except ValueError:
        return REDACTED


@lru_cache(maxsize=1024)
def _redact(raw: str) -> str:
    url = URL(raw)
    if url.raw_user or url.raw_password:
        url = url.with_user(None)
    if url.raw_fragment:
        # Fragments never reach the server, but OAuth implicit flows put tokens there.
        url = url.with_fragment(None)
    if url.raw_query_string:
        query = url.query
        if any(_SENSITIVE_QUERY.search(k) for k in query):
            url = url.with_query(
                [(k, REDACTED if _SENSITIVE_QUERY.search(k) else v) for k, v in query.items()]
            )
    return str(url)
