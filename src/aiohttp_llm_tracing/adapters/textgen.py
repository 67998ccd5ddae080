"""Text-generation servers for benchmark harnesses: TGI /generate and /generate_stream,
SGLang /generate."""

from __future__ import annotations

from .base import Adapter

__all__ = ["ADAPTERS"]

ADAPTERS: tuple[Adapter, ...] = ()
"""This module's adapters, in matching order."""
