"""NexusGroup and run_all: several nexuses started together and stopped in reverse order.

The signals and the runner are tested with real subprocesses in tests/test_domains_daemon.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, NexusGroup, NexusState
from async_nexus.errors import BadCall, LoopAlreadyStarted, LoopStopped

WAIT = 10.0


class Watched(AsyncEventNexus):
    """A nexus that writes its name into ``stops`` when stop() is called, and says so."""

    def __init__(self, name: str, stops: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.name, self.stops = name, stops
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stops.append(self.name)
        self.stopping.set()
        super().stop()


def joined(stops: list[str]) -> tuple[Watched, Watched]:
    """``back`` and ``front``, with a boundary from front to back for type "job"."""
    back, front = Watched("back", stops, maxsize=0), Watched("front", stops, maxsize=0)
    boundary = AsyncEventBoundary(maxsize=4)
    front.add_handler("job", boundary)
    back.add_producer(boundary)
    return back, front


async def test_the_last_given_stops_first_and_the_first_drains_what_crossed() -> None:
    stops: list[str] = []
    back, front = joined(stops)
    handled: list[int] = []

    async def handle(event: Event, queue: Any) -> None:
        if event.id == 0:
            # Nothing reaches back's handler until the group has begun stopping, so the
            # whole backlog is still in front, in the boundary or in back's queue.
            await front.stopping.wait()
        handled.append(event.id)

    back.add_handler("job", handle)
    hooks = Hook(), Hook()
    back.on_error(hooks[0])
    front.on_error(hooks[1])
    group = NexusGroup(back, front)
    task = group.start()
    for number in range(100):
        await front.ingest(Event(number, "job"))
    group.stop()
    await asyncio.wait_for(task, WAIT)
    assert stops == ["front", "back"]
    assert handled == list(range(100))
    assert back.state is front.state is NexusState.STOPPED
    assert hooks[0].calls == hooks[1].calls == []


async def test_given_the_other_way_round_what_crosses_late_is_refused_and_reported() -> None:
    # The documented consequence of the wrong order: back has drained and closed before
    # front dispatches what it holds, so those events cannot cross.
    stops: list[str] = []
    back, front = joined(stops)
    back.add_handler("job", lambda event, queue: None)

    async def hold(event: Event, queue: Any) -> None:
        await front.stopping.wait()  # the group stops front after back has stopped

    front.add_handler("hold", hold)
    hook = Hook()
    front.on_error(hook)
    group = NexusGroup(front, back)
    task = group.start()
    await front.ingest(Event(0, "hold"))
    for number in range(1, 6):
        await front.ingest(Event(number, "job"))
    group.stop()
    await asyncio.wait_for(task, WAIT)
    assert stops == ["back", "front"]
    assert [type(exc) for exc, _ in hook.calls] == [LoopStopped] * 5
    assert [event.id for _, event in hook.calls] == [1, 2, 3, 4, 5]


async def test_a_loop_that_dies_stops_the_others_gracefully_and_its_error_is_raised() -> None:
    stops: list[str] = []
    steady = Watched("steady", stops, maxsize=0)
    fragile = Watched("fragile", stops, fail_fast=True)
    broke = asyncio.Event()
    handled: list[int] = []

    async def count(event: Event, queue: Any) -> None:
        if event.id == 0:
            await broke.wait()
        handled.append(event.id)

    def brittle(event: Event, queue: Any) -> None:
        broke.set()
        raise ValueError("fragile broke")

    steady.add_handler(1, count)
    fragile.add_handler(1, brittle)
    for number in range(10):
        steady.ingest_nowait(Event(number, 1))
    task = NexusGroup(steady, fragile).start()
    await fragile.ingest(Event(1, 1))
    with pytest.raises(ValueError, match="fragile broke"):
        await asyncio.wait_for(task, WAIT)
    # steady was running with nine events queued behind the first: all were dispatched.
    assert handled == list(range(10))
    assert steady.state is NexusState.STOPPED
    assert stops[-1] == "steady"


async def test_a_nexus_that_stops_by_itself_stops_the_group() -> None:
    stops: list[str] = []
    first, second = Watched("first", stops), Watched("second", stops)
    second.add_handler("quit", lambda event, queue: second.stop())
    task = NexusGroup(first, second).start()
    await second.ingest(Event(1, "quit"))
    await asyncio.wait_for(task, WAIT)
    assert first.state is second.state is NexusState.STOPPED
    assert stops == ["second", "first"]


async def test_cancelling_the_group_task_is_the_hard_stop() -> None:
    stops: list[str] = []
    first, second = Watched("first", stops), Watched("second", stops)
    entered = asyncio.Event()

    async def forever(event: Event, queue: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    second.add_handler(1, forever)
    group = NexusGroup(first, second)
    task = group.start()
    await second.ingest(Event(1, 1))
    await second.ingest(Event(2, 1))
    await asyncio.wait_for(entered.wait(), WAIT)
    group.stop()
    await asyncio.wait_for(second.stopping.wait(), WAIT)
    assert group.stop_requested
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert first.state is second.state is NexusState.STOPPED
    assert second.stats()["queued"] == 1  # the hard stop left it undispatched
    assert stops == ["second"]  # first was never asked for a graceful stop


async def test_async_with_starts_the_group_and_stops_it_on_exit() -> None:
    stops: list[str] = []
    back, front = joined(stops)
    handled: list[int] = []
    back.add_handler("job", lambda event, queue: handled.append(event.id))
    async with NexusGroup(back, front, names=["back", "front"]) as group:
        assert group.names == ("back", "front")
        assert {back.state, front.state} <= {NexusState.STARTING, NexusState.LOOPING}
        for number in range(20):
            await front.ingest(Event(number, "job"))
    assert handled == list(range(20))
    assert stops == ["front", "back"]


async def test_stop_before_the_group_task_ran_still_stops_everything() -> None:
    stops: list[str] = []
    back, front = joined(stops)
    handled: list[int] = []
    back.add_handler("job", lambda event, queue: handled.append(event.id))
    group = NexusGroup(back, front)
    task = group.start()
    front.ingest_nowait(Event(1, "job"))
    group.stop()
    await asyncio.wait_for(task, WAIT)
    assert handled == [1]
    assert stops == ["front", "back"]


def test_what_a_group_refuses() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(ValueError, match="at least one nexus"):
        NexusGroup()
    with pytest.raises(TypeError, match="got int"):
        NexusGroup(nexus, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="given twice"):
        NexusGroup(nexus, nexus)
    with pytest.raises(ValueError, match="2 different names"):
        NexusGroup(nexus, AsyncEventNexus(), names=["a", "a"])
    with pytest.raises(BadCall, match="needs a running event loop"):
        NexusGroup(nexus).start()


async def test_a_group_runs_only_nexuses_that_were_never_started() -> None:
    running, fresh = AsyncEventNexus(), AsyncEventNexus()
    running_task = running.start()
    with pytest.raises(LoopAlreadyStarted, match="nexus 1 of the group is already"):
        NexusGroup(running, fresh).start()
    running.stop()
    await asyncio.wait_for(running_task, WAIT)
    with pytest.raises(LoopStopped, match="nexus 1 of the group is STOPPED"):
        NexusGroup(running, fresh).start()
    assert fresh.state is NexusState.READY  # nothing was started
    group = NexusGroup(fresh)
    task = group.start()
    with pytest.raises(LoopAlreadyStarted, match="the group is already running"):
        group.start()
    group.stop()
    await asyncio.wait_for(task, WAIT)
