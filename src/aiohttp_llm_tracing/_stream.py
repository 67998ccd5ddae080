"""A proxy over ``ClientResponse.content`` that sees the body as the caller reads it.

aiohttp has no "body finished" signal, and ``on_response_chunk_received`` never fires when the
body is read through ``resp.content`` (aio-libs/aiohttp#5324), which is how SSE clients and the
openai SDK read. So the trace config puts this proxy in place of ``resp.content``. It forwards
every call unchanged and returns exactly what the real reader returned; on the side it copies
bytes into a bounded capture and tells the in-flight entry when the caller reached the end, when
a read failed, and when aiohttp released or closed the response (``release()`` and ``close()``
call ``content.set_exception(...)`` on a body that was not read to the end).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp.streams import ChunkTupleAsyncStreamIterator, EofStream, StreamReader

if TYPE_CHECKING:
    from ._inflight import HttpSpan

__all__ = ["TracedStream"]


class TracedStream:
    """Wraps a ``StreamReader``; every read goes through :meth:`_seen`."""

    __slots__ = ("__weakref__", "_capture", "_entry", "_inner")

    def __init__(self, inner: StreamReader, entry: HttpSpan) -> None:
        self._inner = inner
        self._entry: HttpSpan | None = entry
        self._capture = entry.capture

    @property
    def received(self) -> int:
        """Body bytes aiohttp has fed the reader so far, read by the caller or not."""
        total = getattr(self._inner, "total_bytes", 0)
        return total if isinstance(total, int) else 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<TracedStream {self._inner!r}>"

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        try:
            data = await self._inner.read(n)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(data)
        return data

    async def readany(self) -> bytes:
        try:
            data = await self._inner.readany()
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(data)
        return data

    async def readchunk(self) -> tuple[bytes, bool]:
        try:
            chunk = await self._inner.readchunk()
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(chunk[0])
        return chunk

    async def readline(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = await self._inner.readline(*args, **kwargs)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(data)
        return data

    async def readuntil(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = await self._inner.readuntil(*args, **kwargs)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(data)
        return data

    async def readexactly(self, n: int) -> bytes:
        try:
            data = await self._inner.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            # Asked past the end of a body that did arrive whole: the body is complete, the
            # caller's request for more is its own affair.
            if self._inner.at_eof():
                self._seen(exc.partial)
            else:
                self._failed(exc)
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        self._seen(data)
        return data

    def read_nowait(self, n: int = -1) -> bytes:
        data = self._inner.read_nowait(n)
        self._seen(data)
        return data

    # The inner reader's iterators are bound to its own read methods, so they are rebuilt here.
    # _TracedIterator awaits the inner read directly: no extra coroutine layer per chunk.
    def __aiter__(self) -> _TracedIterator:
        return _TracedIterator(self, self._inner.readline)

    def iter_chunked(self, n: int) -> _TracedIterator:
        return _TracedIterator(self, functools.partial(self._inner.read, n))

    def iter_any(self) -> _TracedIterator:
        return _TracedIterator(self, self._inner.readany)

    def iter_chunks(self) -> ChunkTupleAsyncStreamIterator:
        return ChunkTupleAsyncStreamIterator(self)  # type: ignore[arg-type]

    # -- end signals ---------------------------------------------------------------------------

    def set_exception(self, *args: Any, **kwargs: Any) -> None:
        # aiohttp calls this from release()/close() when the body was not read to the end.
        entry = self._entry
        if entry is not None:
            self._entry = None
            entry.abandoned()
        self._inner.set_exception(*args, **kwargs)

    def exception(self) -> BaseException | None:
        exc = self._inner.exception()
        # The connection failed under a caller that is not reading: aiohttp's release() sees
        # the error here and will not call set_exception, so this is the last chance to end.
        if exc is not None and self._entry is not None:
            entry, self._entry = self._entry, None
            entry.read_failed(exc)
        return exc

    def _seen(self, data: bytes) -> None:
        entry = self._entry
        if entry is None:
            return
        if data and self._capture is not None:
            try:
                self._capture.feed(data)
            except Exception as exc:
                self._capture = None
                entry.internal_error("capture", exc)
        if self._inner.at_eof():
            self._entry = None
            entry.body_complete()

    def _failed(self, exc: BaseException) -> None:
        entry = self._entry
        if entry is None:
            return
        if isinstance(exc, asyncio.CancelledError):
            # A cancelled read is not the end: a caller may time out one read and go on reading.
            entry.cancel_pending = True
            return
        if isinstance(exc, TypeError):
            # A call the reader's signature refused read nothing: SDKs probe newer arguments
            # this way (google-genai tries readline(max_line_length=...), then readline()).
            return
        self._entry = None
        entry.read_failed(exc)


class _TracedIterator:
    """``AsyncStreamIterator`` semantics over the inner reader, reporting to the proxy."""

    __slots__ = ("_native", "_read", "_stream")

    def __init__(self, stream: TracedStream, read: Callable[[], Awaitable[bytes]]) -> None:
        self._stream = stream
        self._read = read
        # aiohttp's own reader: its end is read off the two fields at_eof() reads (aiohttp
        # 3.10 to 3.14), sparing a call per line. Anything else (a subclass, the
        # EmptyStreamReader of a body-less response) is asked through at_eof().
        self._native = type(stream._inner) is StreamReader

    def __aiter__(self) -> _TracedIterator:
        return self

    async def __anext__(self) -> bytes:
        stream = self._stream
        try:
            data = await self._read()
        except EofStream:
            stream._seen(b"")
            raise StopAsyncIteration from None
        except BaseException as exc:
            stream._failed(exc)
            raise
        # _seen, inlined for the common chunk: this runs once per line of every stream.
        entry = stream._entry
        if entry is not None:
            capture = stream._capture
            if data and capture is not None:
                n = len(data)
                if n <= capture.room:
                    # Under the cap and past the timed first reads: BodyCapture.feed's whole
                    # work, without a call per line.
                    capture.room -= n
                    capture.total += n
                    capture.head += data
                else:
                    try:
                        capture.feed(data)
                    except Exception as exc:
                        stream._capture = None
                        entry.internal_error("capture", exc)
            inner = stream._inner
            if (inner._eof and not inner._buffer) if self._native else inner.at_eof():
                stream._entry = None
                entry.body_complete()
        if not data:
            raise StopAsyncIteration
        return data
