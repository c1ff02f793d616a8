"""1.0.2's public names: the compatibility aliases, and a 1.0-style program that uses them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from support import Collector

import async_nexus
from async_nexus import (
    AsyncEventBoundary,
    AsyncEventNexus,
    Event,
    EventConsumer,
    EventFactory,
    NamedEvent,
    Timer,
    create_handler_coro,
    errors,
)
from async_nexus.consumers import HandlerLike
from async_nexus.events import EventType

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "tests" / "programs" / "v1_timer_and_converter.py"


def test_a_program_written_for_1_0_runs_unchanged() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(PROGRAM)], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("tick")] == [
        "tick 1 of 3 (from 0 by 1)",
        "tick 2 of 3 (from 0 by 1)",
        "tick 3 of 3 (from 0 by 1)",
    ]
    kettles = sorted(line for line in lines if line.startswith("kettle"))
    assert kettles == ["kettle: boiling", "kettle: whistling"]
    assert len([line for line in lines if line.endswith("] hi")]) == 3
    assert len([line for line in lines if line.startswith("type=77 [")]) == 3
    for expected in (
        "timer registered with this nexus: True 1",
        "timer task before the loop: None",
        "loop task kept: True",
        "teapot ID:  1001",
        # 3 converted, 3 kettles (one filtered), 3 echoes, 3 ticks: ids 1 to 12 are used.
        "next event id: 13",
        "timer task after the loop: None",
    ):
        assert expected in lines, expected
    assert lines[-1] == "stopped"


def test_the_1_0_names_are_at_the_package_root() -> None:
    assert async_nexus.EventTypeID == typing.Union[EventType, type[NamedEvent]]
    assert async_nexus.GenericHandler is HandlerLike
    assert async_nexus.NamedEventTypeVar.__bound__ is NamedEvent
    assert typing.get_origin(async_nexus.FilterFunc) is typing.get_origin(typing.Callable)
    assert async_nexus.create_handler_coro is create_handler_coro
    assert async_nexus.AsyncEventNexus.QUEUE_MAXLEN == 4096  # the one name of the default bound
    for name in ("EventTypeID", "GenericHandler", "FilterFunc", "NamedEventTypeVar", "create_handler_coro"):
        assert name in async_nexus.__all__


def test_current_event_id_is_the_id_next_id_returns_next() -> None:
    factory = EventFactory()
    assert factory.current_event_id == 1
    assert factory.current_event_id == 1  # reading it uses no id up
    assert factory.next_id() == 1
    assert factory.create_event("x", event_type=5).id == 2
    assert factory.current_event_id == 3
    factory.current_event_id = 1000
    assert factory.next_id() == 1000
    assert factory.current_event_id == 1001


async def test_loop_task_is_the_task_running_the_loop() -> None:
    nexus = AsyncEventNexus()
    assert nexus.loop_task is None
    task = nexus.start()
    assert nexus.loop_task is task is nexus.task
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_queue_maxlen_is_the_default_bound_and_a_subclass_may_set_its_own() -> None:
    class Small(AsyncEventNexus):
        QUEUE_MAXLEN = 2

    small = Small()
    small.ingest_nowait(Event(1, 1))
    small.ingest_nowait(Event(2, 1))
    with pytest.raises(errors.QueueFull):
        small.ingest_nowait(Event(3, 1))
    roomy = Small(maxsize=3)  # an explicit maxsize wins
    for i in range(3):
        roomy.ingest_nowait(Event(i, 1))
    default = AsyncEventNexus()
    for i in range(AsyncEventNexus.QUEUE_MAXLEN):
        default.ingest_nowait(Event(i, 1))
    with pytest.raises(errors.QueueFull):
        default.ingest_nowait(Event(-1, 1))


@pytest.mark.parametrize(
    ("kind", "count", "payloads"),
    [
        (Timer.COUNT_UP, 3, [1, 2, 3]),
        (Timer.COUNT_DOWN, 3, [3, 2, 1]),
        (Timer.ONE_SHOT, 0, [1]),
    ],
)
async def test_timer_values_describe_its_payloads(kind: Any, count: int, payloads: list[int]) -> None:
    timer = Timer(0.001, event_type="tick", type=kind, count=count)
    start, end, step = timer.starting_value, timer.ending_value, timer.direction_value
    assert list(range(start + step, end + step, step)) == payloads
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("tick", collector)
    nexus.add_producer(timer)
    async with nexus:
        await collector.wait(len(payloads))
    assert [e.payload for e in collector.events] == payloads


def test_an_ongoing_timer_counts_up_from_zero_and_never_reaches_its_end() -> None:
    timer = Timer(1, event_type="tick", type=Timer.ONGOING)
    assert (timer.starting_value, timer.ending_value, timer.direction_value) == (0, -1, 1)


async def test_timer_task_runs_the_timer_and_cancelling_it_stops_the_timer() -> None:
    timer = Timer(0.001, event_type="tick", type=Timer.ONGOING)
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("tick", collector)
    nexus.add_producer(timer)
    assert timer.task is None
    async with nexus:
        await collector.wait(1)
        task = timer.task
        assert task is not None and not task.done()
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        assert timer.task is None
        fired = timer.fired
        await nexus.join()
        assert timer.fired == fired  # nothing fires any more


async def test_nexus_set_is_a_live_read_only_view() -> None:
    timer = Timer(1, event_type="tick")
    first, second = AsyncEventNexus(), AsyncEventNexus()
    view = timer.nexus_set
    assert len(view) == 0 and first not in view
    first.add_producer(timer)
    second.add_producer(timer)
    assert len(view) == 2 and first in view and second in view
    assert set(view) == {first, second}
    timer.deregister_nexus(first)
    assert first not in view and list(view) == [second]
    assert not hasattr(view, "add")


async def test_boundary_queue_maxlen_and_transfer_events() -> None:
    assert AsyncEventBoundary().qsize() == 0
    assert AsyncEventBoundary.QUEUE_MAXLEN == 1024

    class Recording(AsyncEventBoundary):
        QUEUE_MAXLEN = 1
        transferring = False

        async def transfer_events(self) -> None:
            self.transferring = True
            await super().transfer_events()

    boundary = Recording()
    sender, receiver = AsyncEventNexus(), AsyncEventNexus()
    sender.add_handler(1, boundary)
    receiver.add_producer(boundary)
    collector = Collector()
    receiver.add_handler(1, collector)
    async with receiver, sender:
        for i in range(3):
            await sender.ingest(Event(i, 1))
        await collector.wait(3)
    assert boundary.transferring  # start() runs transfer_events(), as in 1.0
    assert [e.id for e in collector.events] == [0, 1, 2]


async def test_create_handler_coro_calls_any_handler_when_awaited() -> None:
    calls: list[str] = []

    def plain(event: Event, queue: Any) -> str:
        calls.append("plain")
        return "plain result"

    async def coroutine(event: Event, queue: Any) -> str:
        calls.append("async")
        return "async result"

    class Consumer(EventConsumer):
        def handle(self, event: Any, queue: Any) -> str:
            calls.append("consumer")
            return "consumer result"

    event = Event(1, 1)
    pending = [create_handler_coro(h, event, None) for h in (plain, coroutine, Consumer())]
    assert calls == []  # nothing runs before it is awaited
    assert [await p for p in pending] == ["plain result", "async result", "consumer result"]
    assert calls == ["plain", "async", "consumer"]
    with pytest.raises(errors.MisconfiguredEventConsumer):
        create_handler_coro(lambda: None, event, None)
