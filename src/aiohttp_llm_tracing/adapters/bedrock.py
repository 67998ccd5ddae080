"""Bedrock runtime: Converse, ConverseStream, and InvokeModel(WithResponseStream) with
Anthropic bodies; Anthropic on Vertex (rawPredict, streamRawPredict)."""

from __future__ import annotations

from .base import Adapter

__all__ = ["ADAPTERS"]

ADAPTERS: tuple[Adapter, ...] = ()
"""This module's adapters, in matching order."""
