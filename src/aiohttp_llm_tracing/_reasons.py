"""Why a span ended: the value of ``llm_tracing.end_reason``."""

from __future__ import annotations

from typing import Final


class EndReason:
    """The ways an in-flight span can end. Each span ends exactly once, with one of these."""

    RESPONSE: Final = "response"
    """The body had fully arrived with the headers; the span ended in ``on_request_end``."""
    BODY_COMPLETE: Final = "body_complete"
    """The caller read the body to its last byte."""
    RELEASED: Final = "released"
    """The caller released or closed the response before reading it to the end."""
    EXCEPTION: Final = "exception"
    """The request or the body read failed (connection error, timeout, ``raise_for_status``)."""
    CANCELLED: Final = "cancelled"
    """The caller's task was cancelled. Not an error (HTTP semantic conventions)."""
    EXPIRED: Final = "expired"
    """No signal ended the span within the registry's TTL; the sweeper ended it."""
    EVICTED: Final = "evicted"
    """The registry was full; the oldest in-flight span was ended to make room."""
    SHUTDOWN: Final = "shutdown"
    """The registry was closed while the span was still in flight."""

    ALL: Final = (
        RESPONSE,
        BODY_COMPLETE,
        RELEASED,
        EXCEPTION,
        CANCELLED,
        EXPIRED,
        EVICTED,
        SHUTDOWN,
    )
