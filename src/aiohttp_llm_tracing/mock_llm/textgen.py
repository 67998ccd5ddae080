"""Text-generation server wire shapes: TGI /generate and /generate_stream, SGLang /generate."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this API's paths on ``app``."""
