"""Lifecycle: states, start/stop/join, context managers, cleanup, the bounded queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, EventProducer, NexusState, errors


class ClosingProducer(EventProducer):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


async def test_states_in_order() -> None:
    nexus = AsyncEventNexus()
    assert nexus.state is NexusState.READY
    seen: asyncio.Future[NexusState] = asyncio.get_running_loop().create_future()
    nexus.add_handler(1, lambda e, q: seen.set_result(nexus.state))
    task = nexus.start()
    assert nexus.state is NexusState.STARTING
    await nexus.ingest(Event(1, 1))
    assert await asyncio.wait_for(seen, 5) is NexusState.LOOPING
    nexus.stop()
    assert nexus.state is NexusState.STOPPING
    await asyncio.wait_for(task, 5)
    assert nexus.state is NexusState.STOPPED
    assert AsyncEventNexus.READY is NexusState.READY


async def test_start_twice_raises_loop_already_started() -> None:
    nexus = AsyncEventNexus()
    task = nexus.start()
    with pytest.raises(errors.LoopAlreadyStarted) as info:
        nexus.start()
    assert isinstance(info.value, errors.BadCall)
    with pytest.raises(errors.LoopAlreadyStarted):
        await nexus.loop_forever()
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_loop_after_stopped_raises_loop_stopped() -> None:
    nexus = AsyncEventNexus()
    task = nexus.start()
    nexus.stop()
    await asyncio.wait_for(task, 5)
    with pytest.raises(errors.LoopStopped):
        await nexus.loop_forever()
    with pytest.raises(errors.LoopStopped):
        nexus.start()


async def test_ingest_after_stop_refused() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(-1, lambda e, q: None)
    task = nexus.start()
    nexus.stop()
    with pytest.raises(errors.LoopStopped):
        await nexus.ingest(Event(1, 1))
    await asyncio.wait_for(task, 5)
    with pytest.raises(errors.BadCall):
        await nexus.ingest(Event(2, 1))
    with pytest.raises(errors.LoopStopped):
        nexus.ingest_nowait(Event(3, 1))


async def test_stop_before_first_turn_drains_queue() -> None:
    nexus = AsyncEventNexus()
    got: list[int] = []
    nexus.add_handler(-1, lambda e, q: got.append(e.id))
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await nexus.ingest(Event(2, 1))
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert got == [1, 2]
    assert nexus.state is NexusState.STOPPED


async def test_ingest_right_after_start_accepted() -> None:
    nexus = AsyncEventNexus()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    nexus.add_handler(9, lambda e, q: done.set_result(e.id))
    task = nexus.start()
    await nexus.ingest(Event(7, 9))
    assert await asyncio.wait_for(done, 5) == 7
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_join_waits_for_dispatch_of_async_handlers() -> None:
    nexus = AsyncEventNexus()
    got: list[int] = []

    async def slow(e: Event, q: Any) -> Event | None:
        await asyncio.sleep(0.01)
        got.append(e.id)  # type: ignore[arg-type]
        return Event(e.id * 10, 2) if e.type == 1 else None  # type: ignore[operator]

    nexus.add_handler(1, slow)
    nexus.add_handler(2, slow)
    task = nexus.start()
    for i in (1, 2, 3):
        await nexus.ingest(Event(i, 1))
    await asyncio.wait_for(nexus.join(), 5)
    assert sorted(got) == [1, 2, 3, 10, 20, 30]
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_async_with_starts_and_stops_gracefully() -> None:
    got: list[int] = []
    async with AsyncEventNexus() as nexus:
        assert nexus.state in (NexusState.STARTING, NexusState.LOOPING)
        nexus.add_handler(-1, lambda e, q: got.append(e.id))
        for i in range(5):
            await nexus.ingest(Event(i, 1))
    assert nexus.state is NexusState.STOPPED
    assert got == [0, 1, 2, 3, 4]


def test_sync_with_calls_cleanup() -> None:
    producer = ClosingProducer()
    with AsyncEventNexus() as nexus:
        nexus.add_handler(1, lambda e, q: None)
        nexus.add_filter(lambda e, q: False)
        nexus.add_producer(producer)
        assert producer.nexuses() == [nexus]
    assert producer.closed == 1
    assert producer.nexuses() == []
    # registrations forgotten: the same type can be registered again
    nexus.add_handler(1, lambda e, q: None)


def test_sync_with_calls_cleanup_on_exception() -> None:
    producer = ClosingProducer()
    with pytest.raises(RuntimeError):
        with AsyncEventNexus() as nexus:
            nexus.add_handler(1, lambda e, q: None)
            nexus.add_producer(producer)
            raise RuntimeError("oops")
    assert producer.closed == 1
    nexus.add_handler(1, lambda e, q: None)


async def test_cleanup_while_running_is_invalid_loop_state() -> None:
    nexus = AsyncEventNexus()
    task = nexus.start()
    with pytest.raises(errors.InvalidLoopState) as info:
        nexus.cleanup()
    assert isinstance(info.value, errors.BadCall)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    nexus.cleanup()


async def test_stopped_loop_closes_sources() -> None:
    nexus = AsyncEventNexus()
    producer = ClosingProducer()
    nexus.add_producer(producer)
    task = nexus.start()
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert producer.closed == 1


async def test_cancel_is_hard_stop() -> None:
    nexus = AsyncEventNexus()
    task = nexus.start()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert nexus.state is NexusState.STOPPED


async def test_ingest_nowait_raises_queue_full() -> None:
    nexus = AsyncEventNexus(maxsize=2)
    nexus.ingest_nowait(Event(1, 1))
    nexus.ingest_nowait(Event(2, 1))
    with pytest.raises(errors.QueueFull) as info:
        nexus.ingest_nowait(Event(3, 1))
    assert isinstance(info.value, asyncio.QueueFull)


async def test_await_ingest_waits_for_room() -> None:
    nexus = AsyncEventNexus(maxsize=2)
    got: list[int] = []
    nexus.add_handler(-1, lambda e, q: got.append(e.id))
    await nexus.ingest(Event(1, 1))
    await nexus.ingest(Event(2, 1))
    pending = asyncio.ensure_future(nexus.ingest(Event(3, 1)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()
    task = nexus.start()
    await asyncio.wait_for(pending, 5)
    await asyncio.wait_for(nexus.join(), 5)
    assert got == [1, 2, 3]
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_secondary_events_pass_the_bound() -> None:
    nexus = AsyncEventNexus(maxsize=2)
    errs: list[BaseException] = []
    got: list[int] = []
    nexus.on_error(lambda exc, s: errs.append(exc))
    nexus.add_handler(1, lambda e, q: [Event(100 + i, 2) for i in range(10)])
    nexus.add_handler(2, lambda e, q: got.append(e.id))
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert errs == []
    assert got == [100 + i for i in range(10)]


async def test_secondary_put_nowait_on_full_queue_does_not_deadlock() -> None:
    nexus = AsyncEventNexus(maxsize=2)
    got: list[int] = []

    async def handler(e: Event, q: asyncio.Queue[Any]) -> None:
        await q.put(Event(50, 2))
        q.put_nowait(Event(51, 2))
        await q.put(Event(52, 2))

    nexus.add_handler(1, handler)
    nexus.add_handler(2, lambda e, q: got.append(e.id))
    nexus.ingest_nowait(Event(1, 1))
    nexus.ingest_nowait(Event(2, 3))
    nexus.add_handler(3, lambda e, q: None)
    task = nexus.start()
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert got == [50, 51, 52]


def test_bad_maxsize_rejected() -> None:
    with pytest.raises(ValueError):
        AsyncEventNexus(maxsize=-1)


async def test_two_nexuses_share_nothing() -> None:
    a, b = AsyncEventNexus(), AsyncEventNexus()
    a.add_handler(1, lambda e, q: None)
    b.add_handler(1, lambda e, q: None)  # no LookupError: separate routers
    assert a.next_id() == b.next_id() == 1


async def test_drain_timeout_bounds_graceful_stop() -> None:
    nexus = AsyncEventNexus(drain_timeout=0.05)
    got: list[int] = []

    async def slow(e: Event, q: Any) -> None:
        await asyncio.sleep(0.01)
        got.append(e.id)  # type: ignore[arg-type]

    nexus.add_handler(1, slow)
    for i in range(200):
        nexus.ingest_nowait(Event(i, 1))
    task = nexus.start()
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert nexus.state is NexusState.STOPPED
    assert 0 < len(got) < 200
    assert got == list(range(len(got)))


async def test_stats_counts() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, s: None)
    nexus.add_filter(lambda e, q: e.id == 1)
    nexus.add_handler(2, lambda e, q: None)
    task = nexus.start()
    for event in (Event(1, 2), Event(2, 2), Event(3, 9)):
        await nexus.ingest(event)
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    stats = nexus.stats()
    assert stats["ingested"] == 3 and stats["dispatched"] == 3
    assert stats["filtered"] == 1 and stats["unhandled"] == 1 and stats["errors"] == 1
    assert stats["queued"] == 0 and stats["high_water"] >= 1


async def test_join_on_a_nexus_never_started_says_so_instead_of_hanging() -> None:
    nexus = AsyncEventNexus()
    await asyncio.wait_for(nexus.join(), 1)  # nothing queued: nothing to wait for
    nexus.ingest_nowait(Event(1, 1))
    with pytest.raises(errors.BadCall, match="never started .* Call nexus.start\\(\\) first"):
        await asyncio.wait_for(nexus.join(), 1)
