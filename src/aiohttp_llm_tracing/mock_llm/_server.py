"""Serving the mock: an async context manager, and a daemon-thread variant for sync code."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from ._app import create_app
from ._wire import REQUESTS

__all__ = ["MockLLMServer", "ThreadedServer", "run_in_thread"]


class MockLLMServer:
    """Async context manager serving :func:`create_app` on ``127.0.0.1``."""

    def __init__(self, *, port: int = 0, chunk_delay: float = 0.0) -> None:
        self.app = create_app(chunk_delay=chunk_delay)
        self._port: int = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """Bound TCP port (the real one once started, even when 0 was requested)."""
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last 1,000 requests: ``path``, ``method``, ``headers`` (lower-cased), ``json``."""
        return self.app[REQUESTS]

    async def start(self) -> None:
        """Bind and start serving."""
        # Short shutdown_timeout: a never-ending stream must not stall teardown for 60 s.
        runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=0.2, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._port = runner, runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class ThreadedServer:
    """A :class:`MockLLMServer` on its own event loop in a daemon thread, for sync code."""

    def __init__(self, *, port: int = 0, chunk_delay: float = 0.0) -> None:
        self.server = MockLLMServer(port=port, chunk_delay=chunk_delay)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mock-llm-server", daemon=True)

    @property
    def port(self) -> int:
        """Bound TCP port."""
        return self.server.port

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.server.base_url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far; see :attr:`MockLLMServer.requests`."""
        return self.server.requests

    def start(self) -> ThreadedServer:
        """Start the thread and block until the server accepts connections."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        try:  # asyncio.run cancels leftover tasks and closes the loop, so nothing leaks
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = self._error or exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        await self.server.start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()

    def stop(self) -> None:
        """Shut the server down and join the thread; idempotent."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> ThreadedServer:
        return self if self._ready.is_set() else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_in_thread(*, port: int = 0, chunk_delay: float = 0.0) -> ThreadedServer:
    """Start a :class:`ThreadedServer` and return it once it is listening."""
    return ThreadedServer(port=port, chunk_delay=chunk_delay).start()
