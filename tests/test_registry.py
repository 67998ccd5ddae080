"""SpanRegistry on its own: expiry, eviction, close, stats, the sweeper thread, thread safety."""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import pytest

from aiohttp_llm_tracing import EndReason, SpanRegistry


class Entry:
    def __init__(self) -> None:
        self.ends: list[tuple[str, BaseException | None]] = []
        self.done = threading.Event()

    def end(self, reason: str, error: BaseException | None = None) -> None:
        self.ends.append((reason, error))
        self.done.set()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_end_is_exactly_once():
    registry = SpanRegistry(sweep_interval=None)
    entry = Entry()
    registry.register("a", entry)
    assert len(registry) == 1
    assert registry.get("a") is entry
    assert registry.end("a", EndReason.RESPONSE) is True
    assert registry.get("a") is None
    assert registry.end("a", EndReason.RELEASED) is False
    assert entry.ends == [(EndReason.RESPONSE, None)]
    assert len(registry) == 0


def test_expired_entries_are_ended_not_dropped():
    clock = Clock()
    registry = SpanRegistry(ttl=10, sweep_interval=None, timer=clock)
    old, new = Entry(), Entry()
    registry.register("old", old)
    clock.now = 5
    registry.register("new", new)
    clock.now = 11
    assert registry.stats().oldest_age == 11
    assert registry.sweep() == 1
    assert old.ends == [(EndReason.EXPIRED, None)] and new.ends == []
    # A late end for the expired entry does nothing.
    assert registry.end("old", EndReason.BODY_COMPLETE) is False
    clock.now = 16
    assert registry.sweep() == 1 and new.ends == [(EndReason.EXPIRED, None)]
    stats = registry.stats()
    assert stats.started == 2 and stats.ended == {EndReason.EXPIRED: 2} and stats.in_flight == 0


def test_end_after_ttl_but_before_sweep_leaves_it_to_the_sweep():
    clock = Clock()
    registry = SpanRegistry(ttl=10, sweep_interval=None, timer=clock)
    entry = Entry()
    registry.register("a", entry)
    clock.now = 10
    assert registry.end("a", EndReason.RESPONSE) is False
    assert registry.sweep() == 1
    assert entry.ends == [(EndReason.EXPIRED, None)]


def test_maxsize_evicts_the_oldest_and_ends_it():
    registry = SpanRegistry(maxsize=3, sweep_interval=None)
    entries = [Entry() for _ in range(5)]
    for i, entry in enumerate(entries):
        registry.register(str(i), entry)
    assert [e.ends for e in entries[:2]] == [[(EndReason.EVICTED, None)]] * 2
    assert all(e.ends == [] for e in entries[2:])
    assert len(registry) == 3
    assert registry.stats().ended == {EndReason.EVICTED: 2}


def test_close_ends_everything_and_is_idempotent():
    registry = SpanRegistry(sweep_interval=0.01)
    entries = [Entry() for _ in range(3)]
    for i, entry in enumerate(entries):
        registry.register(str(i), entry)
    registry.close()
    registry.close()
    assert all(e.ends == [(EndReason.SHUTDOWN, None)] for e in entries)
    stats = registry.stats()
    assert stats.ended == {EndReason.SHUTDOWN: 3} and stats.in_flight == 0
    # Still usable; the sweeper starts again on demand.
    registry.register("x", Entry())
    assert len(registry) == 1
    # Nothing closed comes back: each entry was ended once, whatever the cachetools version.
    registry.sweep()
    assert all(e.ends == [(EndReason.SHUTDOWN, None)] for e in entries)
    assert registry.stats().ended == {EndReason.SHUTDOWN: 3}
    registry.close()


def test_sweeper_thread_ends_expired_and_then_exits():
    registry = SpanRegistry(ttl=0.05, sweep_interval=0.01)
    entry = Entry()
    registry.register("a", entry)
    sweeper = registry._sweeper
    assert sweeper is not None and sweeper.daemon
    assert entry.done.wait(10)
    assert entry.ends == [(EndReason.EXPIRED, None)]
    sweeper.join(10)
    assert not sweeper.is_alive()  # nothing left: the thread is gone, nothing kept alive
    assert registry._sweeper is None


def test_abandoned_registry_can_be_collected():
    registry = SpanRegistry(ttl=1000, sweep_interval=0.01)
    registry.register("a", Entry())
    ref = weakref.ref(registry)
    del registry
    gc.collect()
    assert ref() is None


def test_failing_entry_is_counted_and_logged_once(caplog):
    class Bad:
        def end(self, reason, error=None):
            raise ValueError("boom")

    registry = SpanRegistry(sweep_interval=None)
    with caplog.at_level(logging.WARNING, logger="aiohttp_llm_tracing"):
        for i in range(3):
            registry.register(str(i), Bad())
            registry.end(str(i), EndReason.RESPONSE)
    assert registry.stats().internal_errors == 3
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1


def test_concurrent_register_and_end_from_threads():
    registry = SpanRegistry(maxsize=100_000, sweep_interval=0.01)
    entries: list[Entry] = []

    def work(t: int) -> None:
        for i in range(2000):
            entry = Entry()
            entries.append(entry)
            key = f"{t}-{i}"
            registry.register(key, entry)
            registry.end(key, EndReason.RESPONSE)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(e.ends == [(EndReason.RESPONSE, None)] for e in entries)
    stats = registry.stats()
    assert stats.started == 8000 and stats.ended == {EndReason.RESPONSE: 8000}
    registry.close()


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"maxsize": 0}, {"sweep_interval": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        SpanRegistry(**kwargs)


class LiveEntry(Entry):
    """An entry whose body is being read: it asks to be renewed while reads keep coming."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = False

    def renew(self) -> bool:
        if self.reading:
            self.reading = False
            return True
        return False


def test_an_entry_still_in_use_is_renewed_and_only_silence_expires_it():
    clock = Clock()
    registry = SpanRegistry(ttl=10, sweep_interval=None, timer=clock)
    live, idle = LiveEntry(), LiveEntry()
    registry.register("live", live)
    registry.register("idle", idle)
    for now in (11, 22, 33):  # a read in every TTL window: renewed each time
        live.reading = True
        clock.now = now
        assert registry.sweep() == (1 if now == 11 else 0)
    assert idle.ends == [(EndReason.EXPIRED, None)]
    assert live.ends == [] and registry.get("live") is live
    # Registration elsewhere runs the same expiry: renewal holds there too.
    live.reading = True
    clock.now = 44
    registry.register("other", Entry())
    assert live.ends == []
    # Then silence for a whole TTL: it expires, once, and the counters add up.
    clock.now = 55
    assert registry.sweep() == 2
    assert live.ends == [(EndReason.EXPIRED, None)]
    stats = registry.stats()
    assert stats.started == 3 and stats.ended == {"expired": 3} and stats.in_flight == 0


def test_the_lean_end_path_is_active_on_this_cachetools():
    # pop_live() reads cachetools' per-key links; if a release renames them it falls back to
    # the public pop(), and this test says so rather than the benchmarks.
    registry = SpanRegistry(sweep_interval=None)
    assert registry._cache._links is not None and registry._cache._root is not None


@pytest.mark.parametrize("lean", [True, False], ids=["links", "public-pop"])
def test_end_and_expiry_agree_with_and_without_the_lean_path(lean):
    clock = Clock()
    registry = SpanRegistry(ttl=10, sweep_interval=None, timer=clock)
    if not lean:
        registry._cache._links = registry._cache._root = None
    live, late, missing = Entry(), Entry(), Entry()
    registry.register("live", live)
    registry.register("late", late)
    clock.now = 5
    assert registry.end("live", EndReason.RESPONSE) is True
    assert registry.end("live", EndReason.RESPONSE) is False
    assert registry.end("nobody", EndReason.RESPONSE) is False
    clock.now = 11
    # Past its TTL the entry is the sweep's: end() leaves it, the sweep ends it as expired.
    assert registry.end("late", EndReason.RESPONSE) is False
    assert registry.sweep() == 1
    assert live.ends == [(EndReason.RESPONSE, None)]
    assert late.ends == [(EndReason.EXPIRED, None)]
    assert missing.ends == []
    stats = registry.stats()
    assert stats.in_flight == 0
    assert stats.started == stats.ended_total == 2
    # The cache's own bookkeeping stays consistent: a new entry fills the freed slot.
    registry.register("next", Entry())
    assert len(registry) == 1 and registry._cache.currsize == 1


@pytest.mark.parametrize("lean", [True, False], ids=["links", "public-setitem"])
def test_eviction_and_renewal_agree_with_and_without_the_lean_path(lean):
    clock = Clock()
    registry = SpanRegistry(ttl=10, maxsize=2, sweep_interval=None, timer=clock)
    if not lean:
        registry._cache._links = registry._cache._root = None
    first, second, third = Entry(), Entry(), Entry()
    first.renew = lambda: True  # type: ignore[attr-defined]  # still in use at its expiry
    registry.register("1", first)
    registry.register("2", second)
    registry.register("3", third)  # full: the oldest goes, ended as evicted
    assert first.ends == [(EndReason.EVICTED, None)]
    clock.now = 10
    assert registry.sweep() == 2
    assert [second.ends, third.ends] == [[(EndReason.EXPIRED, None)]] * 2
    keeper = Entry()
    keeper.renew = lambda: True  # type: ignore[attr-defined]
    registry.register("4", keeper)
    clock.now = 20
    assert registry.sweep() == 0 and registry.get("4") is keeper  # renewed for another TTL
    assert registry.end("4", EndReason.BODY_COMPLETE) is True
    assert registry.stats().in_flight == 0
