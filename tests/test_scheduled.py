"""ingest_later() and ingest_at(): events queued when they are due, and their handles."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, ScheduledEvent, errors
from async_nexus.testing import Recorder


async def test_an_event_is_queued_when_it_is_due_and_counted_until_then() -> None:
    seen: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def handler(event: Event, queue: Any) -> None:
        seen.append((event.id, asyncio.get_running_loop().time()))
        done.set()

    nexus = AsyncEventNexus()
    nexus.add_handler("tick", handler)
    async with nexus:
        handle = nexus.ingest_later(0.05, Event(1, "tick"))
        assert isinstance(handle, ScheduledEvent) and handle.pending
        assert nexus.stats()["scheduled"] == 1 and nexus.stats()["queued"] == 0
        await asyncio.wait_for(done.wait(), 5)
        assert nexus.stats()["scheduled"] == 0 and not handle.pending
    ((event_id, at),) = seen
    assert event_id == 1 and at >= handle.when - 1e-3


async def test_events_come_in_the_order_they_are_due() -> None:
    recorder = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler("tick", recorder)
    async with nexus:
        # One reading of the clock for all three: a busy machine may pause this task between
        # the calls, which must not change when each is due.
        now = dt.datetime.now(dt.timezone.utc)
        nexus.ingest_at(now + dt.timedelta(seconds=0.06), Event(3, "tick"))
        nexus.ingest_at(now + dt.timedelta(seconds=0.02), Event(1, "tick"))
        nexus.ingest_at(now + dt.timedelta(seconds=0.04), Event(2, "tick"))
        await recorder.wait_for(3)
    assert [e.id for e in recorder.events] == [1, 2, 3]


async def test_a_cancelled_event_is_never_queued() -> None:
    recorder = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler("tick", recorder)
    async with nexus:
        handle = nexus.ingest_later(0.02, Event(1, "tick"))
        nexus.ingest_later(0.08, Event(2, "tick"))  # due after the cancelled one would have been
        assert handle.cancel() is True
        assert handle.cancel() is False and not handle.pending
        assert nexus.stats()["scheduled"] == 1
        await recorder.wait_for(1)
        late = nexus.ingest_later(0, Event(3, "tick"))
        await recorder.wait_for(2)
        assert late.cancel() is False  # already queued and handled: nothing to take back
    assert [e.id for e in recorder.events] == [2, 3]


async def test_ingest_at_takes_an_aware_datetime() -> None:
    recorder = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler("tick", recorder)
    now = dt.datetime.now(dt.timezone.utc)
    async with nexus:
        nexus.ingest_at(now + dt.timedelta(milliseconds=40), Event(2, "tick"))
        nexus.ingest_at(now - dt.timedelta(hours=1), Event(1, "tick"))  # past: at once
        other_zone = dt.timezone(dt.timedelta(hours=5))
        nexus.ingest_at((now + dt.timedelta(milliseconds=80)).astimezone(other_zone), Event(3, "tick"))
        await recorder.wait_for(3)
    assert [e.id for e in recorder.events] == [1, 2, 3]


async def test_what_cannot_be_scheduled_is_refused_with_a_reason() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall, match="aware datetime"):
        nexus.ingest_at(dt.datetime.now(), Event(1, "tick"))
    with pytest.raises(errors.BadCall, match="aware datetime"):
        nexus.ingest_at(5, Event(1, "tick"))  # type: ignore[arg-type]
    for delay in (-1, "1", True, float("nan")):
        with pytest.raises(errors.BadCall, match="delay in seconds >= 0"):
            nexus.ingest_later(delay, Event(1, "tick"))  # type: ignore[arg-type]
    with pytest.raises(errors.NotAnEvent, match="ingest_later"):
        nexus.ingest_later(1, "tick")  # type: ignore[arg-type]
    async with nexus:
        pass
    with pytest.raises(errors.LoopStopped, match="ingest_later"):
        nexus.ingest_later(1, Event(1, "tick"))


def test_scheduling_needs_a_running_event_loop() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall, match="needs a running event loop"):
        nexus.ingest_later(1, Event(1, "tick"))


async def test_a_graceful_stop_logs_the_events_not_yet_due(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler("tick", recorder)
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        async with nexus:
            nexus.ingest_later(3600, Event(1, "tick"))
            nexus.ingest_later(3600, Event(2, "tick"))
            nexus.ingest_later(0, Event(3, "tick"))
            await recorder.wait_for(1)
    assert [e.id for e in recorder.events] == [3]
    assert any("stopped with 2 events scheduled for later" in r.getMessage() for r in caplog.records)
    assert nexus.stats()["scheduled"] == 0


async def test_an_event_scheduled_before_the_loop_starts_is_kept() -> None:
    recorder = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler("tick", recorder)
    nexus.ingest_later(0, Event(1, "tick"))
    while nexus.stats()["scheduled"]:  # it comes due before the loop runs: it waits in the queue
        await asyncio.sleep(0)
    assert nexus.stats()["queued"] == 1
    async with nexus:
        await recorder.wait_for(1)
