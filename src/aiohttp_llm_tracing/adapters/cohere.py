"""Cohere v2: chat (JSON and SSE) and embed."""

from __future__ import annotations

from .base import Adapter

__all__ = ["ADAPTERS"]

ADAPTERS: tuple[Adapter, ...] = ()
"""This module's adapters, in matching order."""
