"""Events, NamedEvent and EventFactory; handler kinds and secondary events."""

from __future__ import annotations

import asyncio
from typing import Any

from support import run_events

import async_nexus
from async_nexus import AsyncEventNexus, Event, EventConsumer, EventFactory, NamedEvent, errors


class Treacle(NamedEvent):
    pass


def test_event_positions_match_the_guide() -> None:
    event = Event(1001, 99, 0, "TEAPOT!")
    assert event.id == 1001
    assert event.type == 99
    assert event.priority == 0
    assert event.payload == "TEAPOT!"
    assert event.headers is None


def test_event_defaults_and_str_type() -> None:
    event = Event(5, "sensor.temp")
    assert (event.priority, event.payload, event.headers) == (0, None, None)
    assert event.type == "sensor.temp"
    assert Event(1, 2, 3, "p", {"k": "v"}).headers == {"k": "v"}


def test_event_equality_by_fields() -> None:
    assert Event(1, 2, 0, "x") == Event(1, 2, 0, "x")
    assert Event(1, 2, 0, "x") != Event(1, 2, 0, "y")


def test_named_event_type_is_qualname() -> None:
    event = Treacle(7, "sticky")
    assert event.type == "Treacle"
    assert event.id == 7
    assert event.payload == "sticky"
    assert isinstance(event, Event)

    class Inner(NamedEvent):
        pass

    assert Inner(1).type == Inner.__qualname__
    assert Inner(1, priority=3).priority == 3


async def test_named_event_class_as_handler_type() -> None:
    nexus = AsyncEventNexus()
    got: list[Event] = []
    nexus.add_handler(Treacle, lambda e, q: got.append(e))
    task = nexus.start()
    await nexus.ingest(Treacle(1, "sticky"))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert got == [Treacle(1, "sticky")]


def test_next_id_unique_and_increasing() -> None:
    factory = EventFactory()
    ids = [factory.next_id() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(b > a for a, b in zip(ids, ids[1:], strict=False))


def test_random_id_unique_and_not_small() -> None:
    factory = EventFactory()
    ids = [factory.random_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert sum(1 for i in ids if 1 <= i <= 1000) == 0
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_create_event_auto_random_explicit() -> None:
    factory = EventFactory()
    first = factory.create_event("a", event_type=98)
    second = factory.create_event("b", event_type=98, id=EventFactory.AUTO)
    assert isinstance(first, Event)
    assert (first.type, first.payload, first.priority) == (98, "a", 0)
    assert second.id > first.id
    rnd = factory.create_event("c", event_type="t", id=factory.RANDOM, priority=4)
    assert rnd.id not in (first.id, second.id) and rnd.id > 1000
    assert rnd.priority == 4
    explicit = factory.create_event("d", event_type=1, id=1234)
    assert explicit.id == 1234
    # explicit ids do not consume the sequence
    assert factory.next_id() == second.id + 1


def test_nexus_is_event_factory() -> None:
    nexus = AsyncEventNexus()
    assert isinstance(nexus, EventFactory)
    a, b = nexus.next_id(), nexus.next_id()
    assert b > a
    assert nexus.create_event(None, event_type=3).type == 3


async def test_sync_handler_gets_event_and_queue() -> None:
    nexus = AsyncEventNexus()
    seen: list[tuple[Event, Any]] = []
    nexus.add_handler(99, lambda e, q: seen.append((e, q)))
    await run_events(nexus, Event(1001, 99, 0, "TEAPOT!"))
    assert len(seen) == 1
    assert seen[0][0].payload == "TEAPOT!"
    assert isinstance(seen[0][1], asyncio.Queue)


async def test_async_handler_is_awaited() -> None:
    nexus = AsyncEventNexus()
    seen: list[int] = []

    async def handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        await asyncio.sleep(0)
        seen.append(event.id)  # type: ignore[arg-type]

    nexus.add_handler(99, handler)
    await run_events(nexus, Event(1, 99), Event(2, 99))
    assert seen == [1, 2]


async def test_sync_and_async_filters() -> None:
    nexus = AsyncEventNexus()
    handled: list[int] = []

    def sync_filter(event: Event, queue: Any) -> bool:
        return event.payload == "drop-sync"

    async def async_filter(event: Event, queue: Any) -> bool:
        return event.payload == "drop-async"

    nexus.add_filter(sync_filter)
    nexus.add_filter(async_filter)
    nexus.add_handler(5, lambda e, q: handled.append(e.id))
    await run_events(nexus, Event(1, 5, 0, "drop-sync"), Event(2, 5, 0, "drop-async"), Event(3, 5, 0, "keep"))
    assert handled == [3]


async def test_consumer_instance_as_handler() -> None:
    class Sync(EventConsumer):
        def __init__(self) -> None:
            self.got: list[int] = []

        def handle(self, event: Any, queue: Any) -> None:
            self.got.append(event.id)

    class Async(EventConsumer):
        def __init__(self) -> None:
            self.got: list[int] = []

        async def handle(self, event: Any, queue: Any) -> None:
            await asyncio.sleep(0)
            self.got.append(event.id)

    nexus = AsyncEventNexus()
    sync, asyn = Sync(), Async()
    nexus.add_handler(1, sync)
    nexus.add_handler(2, asyn)
    await run_events(nexus, Event(10, 1), Event(20, 2))
    assert sync.got == [10]
    assert asyn.got == [20]


async def test_handler_returning_event_dispatches_secondary() -> None:
    nexus = AsyncEventNexus()
    got: list[Event] = []
    nexus.add_handler(1, lambda e, q: Event(100, 2, 0, "from-return"))
    nexus.add_handler(2, lambda e, q: got.append(e))
    await run_events(nexus, Event(1, 1))
    assert [e.payload for e in got] == ["from-return"]


async def test_handler_returning_list_and_tuple_of_events() -> None:
    nexus = AsyncEventNexus()
    got: list[int] = []
    nexus.add_handler(1, lambda e, q: [Event(11, 3), Event(12, 3)])
    nexus.add_handler(2, lambda e, q: (Event(21, 3), Event(22, 3)))
    nexus.add_handler(3, lambda e, q: got.append(e.id))
    await run_events(nexus, Event(1, 1), Event(2, 2))
    assert got == [11, 12, 21, 22]


async def test_handler_other_return_values_ignored() -> None:
    nexus = AsyncEventNexus()
    errs: list[BaseException] = []
    nexus.on_error(lambda exc, subject: errs.append(exc))
    nexus.add_handler(1, lambda e, q: "not an event")
    nexus.add_handler(2, lambda e, q: 42)
    await run_events(nexus, Event(1, 1), Event(2, 2))
    assert errs == []


async def test_queue_put_and_put_nowait_are_secondary() -> None:
    nexus = AsyncEventNexus()
    got: list[int] = []

    async def emitter(event: Event, queue: asyncio.Queue[Any]) -> None:
        await queue.put(Event(101, 2))
        queue.put_nowait(Event(102, 2))

    nexus.add_handler(1, emitter)
    nexus.add_handler(2, lambda e, q: got.append(e.id))
    await run_events(nexus, Event(1, 1))
    assert got == [101, 102]


async def test_default_handler_lambda_from_guide() -> None:
    nexus = AsyncEventNexus()
    got: list[Event] = []
    nexus.add_handler(-1, lambda e, q: got.append(e))
    await run_events(nexus, Event(1, 7), Event(2, "anything"))
    assert [e.id for e in got] == [1, 2]


def test_public_names_exported() -> None:
    for name in async_nexus.__all__:
        assert hasattr(async_nexus, name), name
    assert async_nexus.errors is errors
