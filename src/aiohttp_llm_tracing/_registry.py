"""The in-flight span registry: request ID -> entry, bounded in time and size.

aiohttp reports a request's start and end through separate callbacks, so something must hold the
span in between. This registry holds it, keyed by a per-request UUID, and guarantees the span
still ends when no callback ever comes: entries past their TTL are ended by a sweeper thread,
entries pushed out by ``maxsize`` are ended on the spot. Removing an entry is the exactly-once
guard: whoever pops it ends it, and a second caller finds nothing.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cachetools import Cache, TTLCache

from . import _deferred, _finisher
from ._reasons import EndReason

__all__ = [
    "DEFAULT_MAXSIZE",
    "DEFAULT_SWEEP_INTERVAL",
    "DEFAULT_TTL",
    "InFlightEntry",
    "RegistryStats",
    "SpanRegistry",
]

_logger = logging.getLogger("aiohttp_llm_tracing")

DEFAULT_TTL: float = 900.0
"""Seconds an entry may stay in flight: above the openai SDK's 600 s default request timeout, so
only requests that no signal will ever end reach it."""
DEFAULT_MAXSIZE: int = 10_000
"""Entries held at once; the oldest is ended (``evicted``) to make room for a new one."""
DEFAULT_SWEEP_INTERVAL: float = 5.0
"""Seconds between sweeps while entries exist."""


class InFlightEntry(Protocol):
    """What the registry holds: anything that can end its span once, for a reason.

    An entry may also have ``renew() -> bool``: asked when its TTL runs out, ``True`` keeps it
    for another TTL (it is still in use).
    """

    def end(self, reason: str, error: BaseException | None = None) -> None:
        """End the span. Called at most once per entry, from any thread."""


@dataclass(frozen=True)
class RegistryStats:
    """A snapshot of a registry's counters.

    ``started`` always equals ``sum(ended.values()) + in_flight``.
    """

    started: int
    ended: Mapping[str, int]
    in_flight: int
    oldest_age: float | None
    internal_errors: int
    ended_total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ended_total", sum(self.ended.values()))


class _EndingTTLCache(TTLCache):
    """A TTLCache that hands every entry it drops to ``dropped`` instead of forgetting it.

    An entry whose ``renew()`` says it is still in use when its TTL runs out is set again for
    another TTL instead.

    cachetools removes items in two places that bypass ``__delitem__``: ``expire()`` for TTL and
    ``popitem()`` for capacity. Both are overridden so no span can leave without being ended.
    ``expire()`` returns what it removed only since cachetools 5.5, hence the lower bound.
    The registry ends the dropped entries after releasing its lock.
    """

    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize, ttl, timer)
        self.dropped: list[tuple[Any, str]] = []
        self._clock = timer
        self._ttl = ttl
        # cachetools' per-key expiry links and their ring (the same since 4.x). Without them,
        # set_new() and pop_live() fall back to the public __setitem__() and pop().
        self._links: dict[Any, Any] | None = getattr(self, "_TTLCache__links", None)
        self._root: Any = getattr(self, "_TTLCache__root", None)

    def set_new(self, key: Any, value: Any) -> None:
        """``self[key] = value`` for a key not in the cache, as TTLCache sets one (expire what
        is due, make room, link the key last) without its timer wrapper and re-link checks."""
        links = self._links
        if links is None or self._root is None or key in links:
            self[key] = value
            return
        now = self._clock()
        self.expire(now)
        Cache.__setitem__(self, key, value)
        link = TTLCache._Link(key)  # type: ignore[attr-defined]
        link.expires = now + self._ttl
        links[key] = link
        # Last in the expiry ring, as TTLCache links a new key (written out: cachetools 5 has
        # no _Link.insert()).
        root = self._root
        link.next = root
        link.prev = prev = root.prev
        prev.next = root.prev = link

    def pop_live(self, key: Any) -> Any:
        """``pop(key, None)``: the entry if present and not past its TTL, else ``None``.

        Every traced request ends through here. The public ``pop()`` takes three lookups and
        four clock reads through cachetools' timer wrapper; a key set once needs one of each.
        """
        links = self._links
        if links is None:
            return self.pop(key, None)
        link = links.get(key)
        if link is None or not self._clock() < link.expires:
            return None  # an expired entry stays for expire(), which ends it as expired
        value = Cache.__getitem__(self, key)
        Cache.__delitem__(self, key)
        del links[key]
        link.unlink()
        return value

    def expire(self, time: float | None = None) -> list[tuple[Any, Any]]:
        expired = super().expire(time)
        if not expired:  # nearly always: this runs on every registration
            return expired
        renewed = []
        for key, value in expired:
            renew = getattr(value, "renew", None)
            if renew is not None and renew():
                renewed.append((key, value))
            else:
                self.dropped.append((value, EndReason.EXPIRED))
        # Set again, for another TTL from now: an entry still in use (a stream being read) is
        # not over. Setting runs expire() once more, which finds nothing new to drop.
        for key, value in renewed:
            self[key] = value
        return expired

    def popitem(self) -> tuple[Any, Any]:
        key, value = super().popitem()
        self.dropped.append((value, EndReason.EVICTED))
        return key, value

    def raw_len(self) -> int:
        # len(TTLCache) runs expire(); the sweeper wants the count without side effects.
        return Cache.__len__(self)

    def oldest_registered(self) -> float | None:
        """When the oldest entry was registered, by the cache's clock."""
        # Keys are unique request IDs, set once (or again when renewed, and then they count
        # from the renewal), so insertion order is age order, and an entry's registration time
        # is its expiry minus the TTL (read from cachetools' per-key links, which its own
        # expire() walks).
        links = getattr(self, "_TTLCache__links", None)
        for key in Cache.__iter__(self):
            link = None if links is None else links.get(key)
            return None if link is None else link.expires - self.ttl
        return None


class SpanRegistry:
    """A thread-safe, TTL- and size-bounded map from request ID to in-flight entry.

    **Parameters:**

    * **ttl** - seconds before an in-flight entry is ended as ``expired``.
    * **maxsize** - entries held at once; registering one more ends the oldest as ``evicted``.
    * **sweep_interval** - seconds between sweeps. A daemon thread sweeps while entries exist
      and exits when the registry is empty, so it never keeps an event loop or the interpreter
      alive. ``None`` disables the thread (call :meth:`sweep` yourself).
    * **timer** - the clock, ``time.monotonic`` by default; tests inject a fake one.

    One registry may be shared by sessions on several event loops and threads. Register and end
    are O(1); a sweep costs in proportion to what it ends. Entries are ended outside the lock.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        maxsize: int = DEFAULT_MAXSIZE,
        sweep_interval: float | None = DEFAULT_SWEEP_INTERVAL,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        if sweep_interval is not None and sweep_interval <= 0:
            raise ValueError("sweep_interval must be > 0 or None")
        self.ttl = ttl
        self.maxsize = maxsize
        self.sweep_interval = sweep_interval
        self._timer = timer
        self._lock = threading.Lock()
        self._cache = _EndingTTLCache(maxsize, ttl, timer)
        self._started = 0
        self._ended: dict[str, int] = {}
        self._internal_errors = 0
        self._logged_sites: set[str] = set()
        self._sweeper: threading.Thread | None = None
        self._wake = threading.Event()
        _LIVE_REGISTRIES.add(self)

    def __len__(self) -> int:
        """Entries in flight, including expired ones the next sweep will end."""
        with self._lock:
            return self._cache.raw_len()

    def __repr__(self) -> str:
        return f"SpanRegistry(ttl={self.ttl}, maxsize={self.maxsize}, in_flight={len(self)})"

    def register(self, key: str, entry: InFlightEntry) -> None:
        """Hold ``entry`` under ``key`` until :meth:`end`, expiry, eviction or :meth:`close`."""
        with self._lock:
            cache = self._cache
            cache.set_new(key, entry)
            self._started += 1
            dropped = self._take_dropped() if cache.dropped else None
            need_sweeper = self._sweeper is None and self.sweep_interval is not None
            if need_sweeper:
                self._sweeper = threading.Thread(
                    target=_sweep_loop,
                    args=(weakref.ref(self), self._wake, self.sweep_interval),
                    name="aiohttp-llm-tracing-sweeper",
                    daemon=True,
                )
        if need_sweeper:
            try:
                self._sweeper.start()  # type: ignore[union-attr]
            except RuntimeError:
                # No new threads at interpreter exit (3.12+): close() ends what is left.
                self._sweeper = None
            else:
                _move_exit_hook_last()
        if dropped:
            self._end_all(dropped)

    def end(self, key: str, reason: str, error: BaseException | None = None) -> bool:
        """End the entry under ``key`` for ``reason``; ``False`` if it had already ended."""
        with self._lock:
            entry = self._cache.pop_live(key)
            if entry is None:
                return False
            self._ended[reason] = self._ended.get(reason, 0) + 1
        try:
            entry.end(reason, error)
        except Exception as exc:
            self.record_internal_error("end", exc)
        return True

    def get(self, key: str) -> InFlightEntry | None:
        """The entry under ``key`` if it is still in flight, else ``None``."""
        with self._lock:
            return self._cache.get(key)

    def sweep(self) -> int:
        """End and remove every entry past its TTL; return how many were ended."""
        with self._lock:
            self._cache.expire()
            dropped = self._take_dropped()
        self._end_all(dropped)
        return len(dropped)

    def close(self) -> None:
        """End every entry still in flight (``shutdown``) and stop the sweeper.

        Idempotent. The registry stays usable afterwards; the sweeper restarts on demand.
        """
        with self._lock:
            dropped = self._take_dropped()
            for key in list(Cache.__iter__(self._cache)):
                dropped.append((Cache.__getitem__(self._cache, key), EndReason.SHUTDOWN))
                self._ended[EndReason.SHUTDOWN] = self._ended.get(EndReason.SHUTDOWN, 0) + 1
            # A fresh cache, not clear(): cachetools 5's clear() empties through popitem(), which
            # would hand every entry back as evicted to be ended a second time.
            self._cache = _EndingTTLCache(self.maxsize, self.ttl, self._timer)
            sweeper, self._sweeper = self._sweeper, None
            wake, self._wake = self._wake, threading.Event()
        wake.set()
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=5.0)
        self._end_all(dropped)
        # Called on a loop, the ends above were queued for its next turn: done now instead.
        _deferred.drain()

    def stats(self) -> RegistryStats:
        """Counters: started, ended by reason, in flight, oldest in-flight age, internal errors."""
        with self._lock:
            oldest = self._cache.oldest_registered()
            return RegistryStats(
                started=self._started,
                ended=dict(self._ended),
                in_flight=self._cache.raw_len(),
                oldest_age=None if oldest is None else self._timer() - oldest,
                internal_errors=self._internal_errors,
            )

    def record_internal_error(self, site: str, error: BaseException) -> None:
        """Count a failure inside the tracing code; log it the first time ``site`` fails."""
        with self._lock:
            self._internal_errors += 1
            first = site not in self._logged_sites
            if first:
                self._logged_sites.add(site)
        if first:
            _logger.warning(
                "aiohttp-llm-tracing: internal error in %s (the request is unaffected; "
                "further errors here are counted, not logged)",
                site,
                exc_info=error,
            )

    # -- internals -----------------------------------------------------------------------------

    def _take_dropped(self) -> list[tuple[Any, str]]:
        # Called under the lock: count what expiry/eviction removed.
        dropped = self._cache.dropped
        if not dropped:
            return []
        self._cache.dropped = []
        ended = self._ended
        out = []
        for entry, reason in dropped:
            ended[reason] = ended.get(reason, 0) + 1
            out.append((entry, reason))
        return out

    def _end_all(self, dropped: list[tuple[Any, str]]) -> None:
        for entry, reason in dropped:
            self._end_one(entry, reason, None)

    def _end_one(self, entry: InFlightEntry, reason: str, error: BaseException | None) -> None:
        try:
            entry.end(reason, error)
        except Exception as exc:
            self.record_internal_error("end", exc)

    def _sweeper_done(self, wake: threading.Event) -> bool:
        # The sweeper exits once the registry is empty; register() starts a new one when needed.
        with self._lock:
            if self._wake is not wake:
                return True
            if self._cache.raw_len() == 0:
                self._sweeper = None
                return True
            return False


def _sweep_loop(
    ref: weakref.ReferenceType[SpanRegistry], wake: threading.Event, interval: float
) -> None:
    # Holds only a weak reference between sweeps so an abandoned registry can be collected.
    while not wake.wait(interval):
        registry = ref()
        if registry is None:
            return
        try:
            registry.sweep()
        except Exception as exc:
            registry.record_internal_error("sweep", exc)
        if registry._sweeper_done(wake):
            return
        del registry


# One exit hook for all registries, so spans still in flight at exit are ended (and then
# exported). atexit runs hooks last-registered-first, and the TracerProvider's own hook must run
# after ours, so ours is moved to the end whenever a sweeper starts: by then the application
# has normally built its provider.
_LIVE_REGISTRIES: weakref.WeakSet[SpanRegistry] = weakref.WeakSet()


def close_all_registries() -> None:
    """End every in-flight span of every live registry (``shutdown``), off-loop ends included."""
    for registry in list(_LIVE_REGISTRIES):
        registry.close()
    _deferred.drain()
    _finisher.drain(5.0)


def _move_exit_hook_last() -> None:
    atexit.unregister(close_all_registries)
    atexit.register(close_all_registries)


atexit.register(close_all_registries)
