"""Ollama wire shapes: /api/chat, /api/generate (JSON and NDJSON streams), /api/embed."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this API's paths on ``app``."""
