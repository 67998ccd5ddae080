"""Gemini (AI Studio and Vertex): generateContent, streamGenerateContent, embedContent,
batchEmbedContents."""

from __future__ import annotations

from .base import Adapter

__all__ = ["ADAPTERS"]

ADAPTERS: tuple[Adapter, ...] = ()
"""This module's adapters, in matching order."""
