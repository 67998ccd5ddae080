"""Embedded, deterministic, OpenAI-compatible mock LLM server for tests, demos and benchmarks.

Special behaviours are picked by the request's ``model`` so any client (the official SDKs
included) can trigger them through the normal endpoints: ``error-400|429|500``,
``gzip|deflate|br``, ``invalid-json``, ``truncated-sse``, ``binary``, ``huge``,
``unknown-shape``, ``slow-headers`` and ``never-ending``. Per-request knobs live in
``body["metadata"]``: ``mock_chunks``, ``mock_delay`` and ``mock_size``.
"""

from __future__ import annotations

from ._app import create_app
from ._server import MockLLMServer, ThreadedServer, run_in_thread

__all__ = ["MockLLMServer", "ThreadedServer", "create_app", "run_in_thread"]
