"""Behaviours of async-nexus 1.0 that programs rely on, and the public knobs the runner uses."""

from __future__ import annotations

import pytest
from support import Collector

from async_nexus import (
    AsyncEventNexus,
    Event,
    EventFactory,
    NamedEvent,
    SimpleEventConverter,
    Timer,
    errors,
)


class Tick(NamedEvent):
    pass


def test_create_event_with_a_named_event_class_builds_an_instance() -> None:
    event = EventFactory().create_event("x", event_type=Tick, priority=2, headers={"a": "b"})
    assert type(event) is Tick
    fields = (event.id, event.type, event.priority, event.payload, event.headers)
    assert fields == (1, "Tick", 2, "x", {"a": "b"})


async def test_timer_with_a_named_event_class_reaches_its_handler() -> None:
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(Tick, collector)
    nexus.add_producer(Timer(0.001, event_type=Tick, type=Timer.COUNT_UP, count=2))
    async with nexus:
        await collector.wait(2)
    assert [(type(e), e.payload) for e in collector.events] == [(Tick, 1), (Tick, 2)]


async def test_timer_create_event_can_be_overridden() -> None:
    class Squares(Timer):
        def create_event(self, value: int) -> Event:
            return Event(value, "square", 0, value * value)

    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("square", collector)
    nexus.add_producer(Squares(0.001, event_type="unused", type=Timer.COUNT_UP, count=3))
    async with nexus:
        await collector.wait(3)
    assert [e.payload for e in collector.events] == [1, 4, 9]


async def test_converter_start_is_awaited_before_it_is_asked_for_events() -> None:
    calls: list[str] = []

    class Opened(SimpleEventConverter):
        async def start(self) -> None:
            calls.append("start")

        async def obtain_event(self) -> Event:
            calls.append("obtain")
            if len(calls) > 2:
                raise errors.NoMoreEvents()
            return Event(1, "x")

    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("x", collector)
    nexus.add_converter(Opened())
    async with nexus:
        await collector.wait(1)
    assert calls[:2] == ["start", "obtain"]


async def test_public_knobs() -> None:
    nexus = AsyncEventNexus()
    assert nexus.drain_timeout == 10.0 and nexus.fail_fast is False and nexus.task is None
    nexus.drain_timeout = 2
    nexus.fail_fast = True
    assert nexus.drain_timeout == 2.0 and nexus.fail_fast is True
    with pytest.raises(errors.BadCall, match="drain_timeout must be a number of seconds >= 0, got -1"):
        nexus.drain_timeout = -1
    task = nexus.start()
    assert nexus.task is task
    nexus.stop()
    await task
