"""Keep secrets out of spans: URL user info, fragments and key-like query values, also in errors;
and in any text a server sends back that we record, bearer tokens and API keys."""

from __future__ import annotations

import re
from functools import lru_cache

from yarl import URL

__all__ = ["REDACTED", "redact_secrets", "redact_text", "redact_url"]

REDACTED = "REDACTED"

# Query parameter names whose values are credentials. Matched as a substring of the lower-cased
# name, so `api_key`, `x-api-key`, `apiKey`, `access_token`, `X-Amz-Signature` all match.
_SENSITIVE_QUERY = re.compile(
    r"key|token|secret|passw|pwd|signature|sig$|^sig|auth|credential|session|code$",
    re.IGNORECASE,
)
# A URL as error messages quote it: up to whitespace, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Credentials as they appear in text: a bearer token, and the key formats of the providers we
# parse (OpenAI and Anthropic sk-..., Google AIza..., AWS access key IDs, Groq gsk_..., xAI).
_TOKEN_IN_TEXT = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|rk|pk)-[A-Za-z0-9_-]{8,}"
    r"|\bAIza[0-9A-Za-z_-]{20,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\b(?:gsk|xai)[_-][A-Za-z0-9_-]{16,}"
)
_SHORTEST_SECRET = 8  # shorter values would redact ordinary words


def redact_url(url: URL) -> str:
    """``url`` as a string with user info as ``REDACTED:REDACTED`` and key-like query values
    replaced.

    Cached per distinct URL string: LLM clients call the same few endpoints over and over, so
    the common case costs one dictionary lookup.
    """
    text = str(url)
    # Without "@", "?" or "#" there is no user info, query or fragment to look at: most URLs
    # are settled by three scans of a short string instead of four yarl properties.
    if "@" not in text and "?" not in text and "#" not in text:
        return text
    if url.raw_user or url.raw_password or url.raw_query_string or url.raw_fragment:
        return _redact(text)
    return text


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted as :func:`redact_url` does, and bearer tokens and
    API keys in the providers' formats replaced by ``REDACTED``.

    For exception messages, tracebacks and the error text an API sends back: aiohttp's errors
    quote the request URL, query string included, and servers echo keys in their errors.
    """
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_match, text)
    return _TOKEN_IN_TEXT.sub(_redact_token, text)


def redact_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """:func:`redact_text`, and every one of ``secrets`` (the request's own credentials, which a
    server may echo in any format) replaced too."""
    for secret in secrets:
        if len(secret) >= _SHORTEST_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return redact_text(text)


def _redact_token(match: re.Match[str]) -> str:
    token = match.group()
    return "Bearer " + REDACTED if token[:6].lower() == "bearer" else REDACTED


def _redact_match(match: re.Match[str]) -> str:
    try:
        return _redact(match.group())
    except ValueError:
        return REDACTED


@lru_cache(maxsize=1024)
def _redact(raw: str) -> str:
    url = URL(raw)
    if url.raw_user or url.raw_password:
        # As the HTTP conventions (and OpenTelemetry's own instrumentations) write it: that
        # there were credentials is kept, never what they were.
        url = url.with_user(REDACTED).with_password(REDACTED)
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
