"""The nexus queue on its own, and the handoff that keeps a never-yielding producer's backlog small."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event
from async_nexus._core.queue import HANDOFF, EventQueue
from async_nexus.errors import QueueFull

WAIT = 10


def take(queue: EventQueue) -> Any:
    """Take the next item the way the dispatch loop does."""
    bucket = queue.buckets[queue.priorities[0]]
    item = bucket.popleft()
    if not bucket:
        queue.priorities.remove(queue.priorities[0])
        queue.priorities.sort()
    queue.size -= 1
    return item


def drain(queue: EventQueue) -> list[Any]:
    return [take(queue) for _ in range(queue.size)]


def test_items_leave_by_priority_then_in_arrival_order() -> None:
    queue = EventQueue(0)
    for item, priority in [("a", 5), ("b", 0), ("c", 5), ("d", -1), ("e", 0)]:
        assert queue.try_put(item, priority)
    assert drain(queue) == ["d", "b", "e", "a", "c"]
    assert queue.try_put("f", 5)  # an emptied priority comes back
    assert drain(queue) == ["f"]


def test_the_high_water_mark_is_the_largest_size_ever_held() -> None:
    queue = EventQueue(10)
    for number in range(6):
        queue.try_put(number, 0)
    drain(queue)
    for number in range(4):
        queue.try_put(number, 0)
    assert queue.high_water == 6
    for number in range(4, 10):
        queue.try_put(number, 0)
    assert queue.high_water == 10
    queue.put_forced("past the bound", 0)
    queue.put_forced("and again", 0)
    assert queue.high_water == 12
    drain(queue)
    assert queue.high_water == 12


def test_a_full_queue_refuses_until_an_item_leaves() -> None:
    queue = EventQueue(3)
    assert all(queue.try_put(number, 0) for number in range(3))
    assert not queue.try_put("refused", 0)
    with pytest.raises(QueueFull, match="maxsize=3"):
        queue.put_nowait("refused", 0)
    queue.put_forced("forced", 0)  # past the bound, as secondary events are
    assert not queue.try_put("refused", 0)
    take(queue)
    take(queue)
    assert queue.try_put(3, 0)
    assert drain(queue) == [2, "forced", 3]


def test_forced_items_past_the_bound_do_not_open_it() -> None:
    queue = EventQueue(2)
    for number in range(5):
        queue.put_forced(number, 0)
    take(queue)
    take(queue)
    # Three queued, bound two: still full although the high-water mark is five.
    assert not queue.try_put("refused", 0)
    take(queue)
    take(queue)
    assert queue.try_put("room", 0)


async def test_the_first_put_wakes_the_waiting_consumer() -> None:
    queue = EventQueue(0)
    waiter = asyncio.ensure_future(queue.wait_not_empty())
    await asyncio.sleep(0)
    assert not waiter.done()
    assert queue.try_put("wake up", 0)
    await asyncio.wait_for(waiter, WAIT)
    assert drain(queue) == ["wake up"]


async def test_a_put_yields_once_handoff_items_wait_for_a_woken_consumer() -> None:
    queue = EventQueue(0)
    waiter = asyncio.ensure_future(queue.wait_not_empty())
    await asyncio.sleep(0)
    assert all(queue.try_put(number, 0) for number in range(HANDOFF))
    assert not waiter.done()  # woken, but it has not had its turn
    assert not queue.try_put("crowded", 0)
    queue.put_nowait("nowait still takes it", 0)  # the handoff is for those who can wait
    await asyncio.wait_for(queue.put("after the turn", 0), WAIT)
    assert waiter.done()
    assert queue.try_put("the consumer ran: no more handoff", 0)
    assert queue.size == HANDOFF + 3


async def test_a_put_cancelled_in_the_handoff_queued_nothing() -> None:
    queue = EventQueue(0)
    waiter = asyncio.ensure_future(queue.wait_not_empty())
    await asyncio.sleep(0)
    for number in range(HANDOFF):
        queue.try_put(number, 0)
    # Driven by hand, so that it runs before the woken consumer has had its turn.
    putter = queue.put("cancelled", 0)
    putter.send(None)  # now yielding to the consumer
    with pytest.raises(asyncio.CancelledError):
        putter.throw(asyncio.CancelledError())
    await asyncio.wait_for(waiter, WAIT)
    assert drain(queue) == list(range(HANDOFF))


async def test_a_producer_that_never_yields_lets_the_loop_run_every_handoff_events() -> None:
    nexus = AsyncEventNexus()  # a bound well above HANDOFF
    ingested = 0
    lags: list[int] = []

    async def handler(event: Event, queue: Any) -> None:
        lags.append(ingested - event.id)  # type: ignore[operator]

    nexus.add_handler(1, handler)
    task = nexus.start()
    await asyncio.sleep(0)  # the loop is now waiting for events
    for number in range(5 * nexus.QUEUE_MAXLEN):
        await nexus.ingest(Event(number, 1))
        ingested += 1
    await asyncio.wait_for(nexus.join(), WAIT)

    stats = nexus.stats()
    assert stats["dispatched"] == 5 * nexus.QUEUE_MAXLEN
    assert stats["high_water"] <= HANDOFF + 1, stats
    assert max(lags) <= HANDOFF + 1  # no event waited behind more than one handoff's worth
    nexus.stop()
    await asyncio.wait_for(task, WAIT)


async def test_a_stream_of_mixed_priorities_keeps_each_priority_in_order() -> None:
    nexus = AsyncEventNexus(maxsize=700)  # full now and then, past the handoff now and then
    seen: list[Event] = []

    async def handler(event: Event, queue: Any) -> None:
        seen.append(event)
        if len(seen) % 1000 == 0:
            await asyncio.sleep(0)  # the producer runs while events of each priority wait

    nexus.add_handler(1, handler)
    task = nexus.start()
    priorities = [0, 0, 1, -1, 0, 2, 2, 1]
    for number in range(8000):
        await nexus.ingest(Event(number, 1, priorities[number % len(priorities)]))
    await asyncio.wait_for(nexus.join(), WAIT)
    nexus.stop()
    await asyncio.wait_for(task, WAIT)

    assert sorted(event.id for event in seen) == list(range(8000))
    for priority in set(priorities):
        ids = [event.id for event in seen if event.priority == priority]
        assert ids == sorted(ids)
    assert nexus.stats()["high_water"] <= 700


async def test_an_ingest_cancelled_while_waiting_for_room_queued_nothing_even_during_a_stop() -> None:
    nexus = AsyncEventNexus(maxsize=1)
    release = asyncio.Event()
    handled: list[object] = []

    async def handler(event: Event, queue: Any) -> None:
        handled.append(event.id)
        await release.wait()

    nexus.add_handler(1, handler)
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await asyncio.sleep(0)  # the loop takes event 1 and waits in its handler
    await nexus.ingest(Event(2, 1))  # fills the queue
    waiting = asyncio.ensure_future(nexus.ingest(Event(3, 1)))
    await asyncio.sleep(0)
    assert not waiting.done()  # no room for event 3
    nexus.stop()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await asyncio.wait_for(task, WAIT)
    assert handled == [1, 2]  # what was accepted is dispatched; the cancelled one never was
