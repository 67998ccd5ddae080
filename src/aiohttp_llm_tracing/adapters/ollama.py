"""Ollama: /api/chat, /api/generate (JSON and NDJSON streams) and /api/embed."""

from __future__ import annotations

from .base import Adapter

__all__ = ["ADAPTERS"]

ADAPTERS: tuple[Adapter, ...] = ()
"""This module's adapters, in matching order."""
