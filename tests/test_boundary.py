"""AsyncEventBoundary: a handler in one nexus, a producer in another."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from support import Collector

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, EventProducer
from async_nexus.errors import LoopStopped


async def test_events_cross_in_order() -> None:
    a, b = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    a.add_handler(42, boundary)
    a_other: list[int] = []
    a.add_handler(-1, lambda e, q: a_other.append(e.id))
    b.add_producer(boundary)
    collector = Collector()
    b.add_handler(42, collector)
    ta, tb = a.start(), b.start()
    for i in range(10):
        await a.ingest(Event(i, 42, 0, f"p{i}"))
        await a.ingest(Event(100 + i, 7))
    await collector.wait(10)
    assert [e.id for e in collector.events] == list(range(10))
    assert [e.payload for e in collector.events] == [f"p{i}" for i in range(10)]
    await asyncio.wait_for(a.join(), 5)
    assert a_other == [100 + i for i in range(10)]
    a.stop()
    b.stop()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)


async def test_only_registered_types_cross() -> None:
    a, b = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    a.add_handler(42, boundary)
    a.add_handler(-1, lambda e, q: None)
    b.add_producer(boundary)
    collector = Collector()
    b.add_handler(-1, collector)
    ta, tb = a.start(), b.start()
    await a.ingest(Event(1, 41))
    await a.ingest(Event(2, 42))
    await collector.wait(1)
    await asyncio.wait_for(a.join(), 5)
    await asyncio.wait_for(b.join(), 5)
    a.stop()
    b.stop()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    assert [e.id for e in collector.events] == [2]


async def test_events_left_in_boundary_dispatched_at_stop() -> None:
    b = AsyncEventNexus()
    boundary = AsyncEventBoundary()
    b.add_producer(boundary)
    collector = Collector()
    b.add_handler(42, collector)
    tb = b.start()
    await b.ingest(Event(0, 42))
    await asyncio.wait_for(b.join(), 5)  # loop (and the boundary's forwarding task) running
    for i in range(1, 6):
        await boundary.handle(Event(i, 42), None)
    b.stop()
    await asyncio.wait_for(tb, 5)
    assert [e.id for e in collector.events] == [0, 1, 2, 3, 4, 5]
    assert boundary.qsize() == 0


async def test_events_in_boundary_before_start_dispatched_when_stopped_at_once() -> None:
    b = AsyncEventNexus()
    boundary = AsyncEventBoundary()
    b.add_producer(boundary)
    collector = Collector()
    b.add_handler(42, collector)
    for i in range(3):
        await boundary.handle(Event(i, 42), None)
    tb = b.start()
    b.stop()
    await asyncio.wait_for(tb, 5)
    assert [e.id for e in collector.events] == [0, 1, 2]
    assert boundary.qsize() == 0


async def test_boundary_bounded_slows_sender() -> None:
    a, b = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary(maxsize=2)
    a.add_handler(42, boundary)
    b.add_producer(boundary)
    collector = Collector()
    b.add_handler(42, collector)
    ta = a.start()
    for i in range(3):
        await a.ingest(Event(i, 42))
    for _ in range(5):
        await asyncio.sleep(0)
    assert boundary.qsize() == 2  # third event waits in A's handler
    tb = b.start()
    for i in range(3, 20):
        await a.ingest(Event(i, 42))
    await collector.wait(20)
    assert [e.id for e in collector.events] == list(range(20))
    a.stop()
    b.stop()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)


async def test_sending_to_stopped_receiver_does_not_deadlock_sender() -> None:
    a, b = AsyncEventNexus(drain_timeout=1), AsyncEventNexus()
    boundary = AsyncEventBoundary(maxsize=2)
    a.add_handler(42, boundary)
    errs: list[BaseException] = []
    a.on_error(lambda exc, s: errs.append(exc))
    b.add_producer(boundary)
    b.add_handler(42, lambda e, q: None)
    tb = b.start()
    b.stop()
    await asyncio.wait_for(tb, 5)
    ta = a.start()
    try:
        for i in range(4):
            await a.ingest(Event(i, 42))
        # the receiving domain is gone: A must neither hang nor silently swallow the events
        await asyncio.wait_for(a.join(), 2)
        a.stop()
        await asyncio.wait_for(ta, 2)
    finally:
        ta.cancel()
    assert len(errs) == 4


async def test_event_held_by_blocked_forwarder_dispatched_once_at_stop() -> None:
    b = AsyncEventNexus(maxsize=1)
    boundary = AsyncEventBoundary()
    b.add_producer(boundary)
    gate = asyncio.Event()
    running = asyncio.Event()
    got: list[int] = []

    async def handler(event: Event, queue: Any) -> None:
        if event.id == 0:
            running.set()
            await gate.wait()
        got.append(event.id)  # type: ignore[arg-type]

    b.add_handler(42, handler)
    tb = b.start()
    await b.ingest(Event(0, 42))
    await asyncio.wait_for(running.wait(), 5)  # B's loop is busy with event 0
    for i in range(1, 5):
        await boundary.handle(Event(i, 42), None)

    async def forwarder_blocked() -> None:
        # event 1 fills B's queue, event 2 is held by the forwarder waiting for room
        while boundary.qsize() != 2:
            await asyncio.sleep(0)

    await asyncio.wait_for(forwarder_blocked(), 5)
    b.stop()
    gate.set()
    await asyncio.wait_for(tb, 5)
    assert got == [0, 1, 2, 3, 4]


async def test_no_event_lost_when_receiver_stops_while_sender_waits() -> None:
    a, b = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary(maxsize=1)
    a.add_handler(42, boundary)
    refused: list[Any] = []
    a.on_error(lambda exc, s: refused.append(s.id))
    b.add_producer(boundary)
    received: list[int] = []
    b.add_handler(42, lambda e, q: received.append(e.id))
    ta = a.start()
    try:
        for i in range(3):
            await a.ingest(Event(i, 42))

        async def sender_blocked() -> None:
            # event 0 fills the boundary, A's loop waits in the boundary with event 1
            while boundary.qsize() != 1 or a.stats()["dispatched"] != 2:
                await asyncio.sleep(0)

        await asyncio.wait_for(sender_blocked(), 5)
        tb = b.start()
        b.stop()
        await asyncio.wait_for(tb, 5)
        await asyncio.wait_for(a.join(), 2)
        a.stop()
        await asyncio.wait_for(ta, 2)
    finally:
        ta.cancel()
    # every event A handed to the boundary was either dispatched in B or refused visibly
    assert sorted(received + refused) == [0, 1, 2]


class _StoppedReceiver:
    """A receiving side, through the port sources use, that has stopped taking events."""

    nexus = object()

    def deliver_now(self, event: Event, source: Any = None, *, reply: Any = None) -> None:
        raise LoopStopped("event refused: the nexus is STOPPED")


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_crossings_no_nexus_takes_at_stop_are_reported_not_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = _StoppedReceiver()
    boundary = AsyncEventBoundary()
    boundary.register_nexus(receiver)  # type: ignore[arg-type]
    for i in range(3):
        await boundary.handle(Event(i, 42), None)
    with pytest.raises(LoopStopped) as refused:
        boundary.on_stopping()  # what a stopping nexus calls, and reports what it raises
    assert "event 0 of type 42 (and 2 more) cannot cross" in str(refused.value)
    assert "Stop the sending nexus first" in str(refused.value)


async def test_a_stopping_nexus_reports_what_a_producer_could_not_hand_over() -> None:
    class Holding(EventProducer):
        def on_stopping(self) -> None:
            raise LoopStopped("3 events cannot cross")

    nexus = AsyncEventNexus()
    reported: list[tuple[BaseException, Any]] = []
    nexus.on_error(lambda exc, subject: reported.append((exc, subject)))
    producer = Holding()
    nexus.add_producer(producer)
    task = nexus.start()
    await asyncio.sleep(0)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert [(str(exc), subject) for exc, subject in reported] == [("3 events cannot cross", producer)]


async def test_crossings_held_at_a_hard_stop_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    receiver = AsyncEventNexus(maxsize=1)
    release = asyncio.Event()

    async def blocked(event: Event, queue: Any) -> None:
        await release.wait()

    receiver.add_handler(42, blocked)
    boundary = AsyncEventBoundary()
    receiver.add_producer(boundary)
    task = receiver.start()
    for i in range(6):
        await boundary.handle(Event(i, 42), None)
    # One event is handled, one queued, one held by the forwarding task: three stay behind.
    await wait_until(lambda: receiver.stats()["queued"] == 1 and boundary.qsize() == 3)
    with caplog.at_level(logging.ERROR, logger="async_nexus"):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    lost = [r.getMessage() for r in caplog.records if "events were lost" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]
    assert "event 3 of type 42 (and 2 more) cannot cross" in lost[0]
    assert boundary.qsize() == 0
