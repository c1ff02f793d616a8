"""Sources: converters, generators, producers, timers, fanout and discarder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import Collector, Hook

from async_nexus import (
    AsyncEventNexus,
    Event,
    EventConverter,
    EventDiscarder,
    EventFanout,
    EventProducer,
    SimpleEventConverter,
    Timer,
    errors,
)


class CountingConverter(SimpleEventConverter):
    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.closed = asyncio.Event()

    async def obtain_event(self) -> Event:
        self.calls += 1
        if self.calls > self.n:
            raise errors.NoMoreEvents()
        await asyncio.sleep(0)
        return Event(self.calls, 50, 0, "hi")

    def close(self) -> None:
        self.closed.set()


async def test_simple_converter_until_no_more_events_then_closed() -> None:
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(50, collector)
    nexus.add_handler(60, collector)
    converter = CountingConverter(3)
    nexus.register(converter)
    task = nexus.start()
    await asyncio.wait_for(converter.closed.wait(), 5)
    assert converter.calls == 4
    await collector.wait(3)
    assert nexus.state is AsyncEventNexus.LOOPING
    await nexus.ingest(Event(99, 60))
    events = await collector.wait(4)
    assert [e.id for e in events] == [1, 2, 3, 99]
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_generator_converter_end_retires_and_runs_finally() -> None:
    finished = asyncio.Event()
    closed = asyncio.Event()

    class Gen(EventConverter):
        async def event_generator(self) -> AsyncIterator[Event]:
            try:
                for i in range(3):
                    yield Event(i, 7)
            finally:
                finished.set()

        async def close(self) -> None:
            await super().close()
            closed.set()

    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(7, collector)
    nexus.add_converter(Gen())
    task = nexus.start()
    await asyncio.wait_for(closed.wait(), 5)
    assert finished.is_set()
    assert [e.id for e in await collector.wait(3)] == [0, 1, 2]
    assert nexus.state is AsyncEventNexus.LOOPING
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_endless_generator_finally_runs_at_stop() -> None:
    finished = asyncio.Event()

    class Endless(EventConverter):
        async def event_generator(self) -> AsyncIterator[Event]:
            i = 0
            try:
                while True:
                    i += 1
                    await asyncio.sleep(0.001)
                    yield Event(i, 7)
            finally:
                finished.set()

    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(7, collector)
    nexus.add_converter(Endless())
    task = nexus.start()
    await collector.wait(2)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert finished.is_set()


async def test_converter_raising_reported_with_converter_subject() -> None:
    class Broken(SimpleEventConverter):
        async def obtain_event(self) -> Event:
            raise OSError("device gone")

    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    collector = Collector()
    nexus.add_handler(1, collector)
    broken = Broken()
    nexus.add_converter(broken)
    task = nexus.start()
    await asyncio.wait_for(hook.called.wait(), 5)
    exc, subject = hook.calls[0]
    assert isinstance(exc, OSError) and subject is broken
    await nexus.ingest(Event(1, 1))
    await collector.wait(1)
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_producer_distributes_to_two_nexuses() -> None:
    producer = EventProducer()
    a, b = AsyncEventNexus(), AsyncEventNexus()
    ca, cb = Collector(), Collector()
    a.add_handler(5, ca)
    b.add_handler(5, cb)
    a.add_producer(producer)
    b.add_producer(producer)
    ta, tb = a.start(), b.start()
    assert await producer.distribute_event(Event(1, 5, 0, "both")) == 2
    assert [e.payload for e in await ca.wait(1)] == ["both"]
    assert [e.payload for e in await cb.wait(1)] == ["both"]
    a.stop()
    b.stop()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)


async def test_producer_start_pushes_events_with_factory() -> None:
    class Pusher(EventProducer):
        async def start(self) -> None:
            for i in range(3):
                await self.distribute_event(self.event_factory.create_event(i, event_type=8))

    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(8, collector)
    nexus.add_producer(Pusher(event_factory=nexus))
    task = nexus.start()
    assert [e.payload for e in await collector.wait(3)] == [0, 1, 2]
    nexus.stop()
    await asyncio.wait_for(task, 5)


async def test_producer_without_nexus_is_misconfigured() -> None:
    with pytest.raises(errors.MisconfiguredEventProducer):
        await EventProducer().distribute_event(Event(1, 1))
    with pytest.raises(errors.MisconfiguredEventProducer):
        EventProducer().event_factory  # noqa: B018


async def test_producer_start_raising_reported_with_producer() -> None:
    class Failing(EventProducer):
        async def start(self) -> None:
            raise ConnectionError("no broker")

    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    producer = Failing()
    nexus.add_producer(producer)
    task = nexus.start()
    await asyncio.wait_for(hook.called.wait(), 5)
    exc, subject = hook.calls[0]
    assert isinstance(exc, ConnectionError) and subject is producer
    assert not task.done()
    nexus.stop()
    await asyncio.wait_for(task, 5)


def test_registering_source_twice_is_multiple_start() -> None:
    nexus = AsyncEventNexus()
    producer = EventProducer()
    nexus.add_producer(producer)
    with pytest.raises(errors.MultipleStart):
        nexus.add_producer(producer)
    with pytest.raises(errors.BadCall):
        nexus.register(object())  # type: ignore[arg-type]


async def _timer_payloads(timer: Timer, nexus: AsyncEventNexus, n: int) -> list[Any]:
    collector = Collector()
    nexus.add_handler(98, collector)
    nexus.add_producer(timer)
    task = nexus.start()
    events = await collector.wait(n)
    payloads = [e.payload for e in events]
    nexus.stop()
    await asyncio.wait_for(task, 5)
    return payloads


async def test_timer_count_down() -> None:
    nexus = AsyncEventNexus()
    timer = Timer(interval=0.01, type=Timer.COUNT_DOWN, count=3, event_type=98, event_factory=nexus)
    done = asyncio.Event()
    nexus.add_handler(98, lambda e, q: done.set() if e.payload == 1 else None)
    nexus.add_producer(timer)
    got: list[Any] = []
    nexus.add_filter(lambda e, q: got.append(e.payload))
    task = nexus.start()
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert got == [3, 2, 1]
    assert timer.fired == 3


async def test_timer_count_up() -> None:
    nexus = AsyncEventNexus()
    timer = Timer(0.01, type=Timer.COUNT_UP, count=3, event_type=98, event_factory=nexus)
    assert await _timer_payloads(timer, nexus, 3) == [1, 2, 3]


async def test_timer_count_up_fires_exactly_n_times() -> None:
    finished = asyncio.Event()

    class WatchedTimer(Timer):
        async def start(self) -> None:
            await super().start()
            finished.set()

    nexus = AsyncEventNexus()
    timer = WatchedTimer(0.005, type=Timer.COUNT_UP, count=2, event_type=98)
    nexus.add_producer(timer)
    collector = Collector()
    nexus.add_handler(98, collector)
    task = nexus.start()
    await asyncio.wait_for(finished.wait(), 5)
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert [e.payload for e in collector.events] == [1, 2]
    assert timer.fired == 2


async def test_timer_one_shot() -> None:
    nexus = AsyncEventNexus()
    timer = Timer(0.01, event_type=98, event_factory=nexus)
    assert timer.type is Timer.ONE_SHOT
    assert await _timer_payloads(timer, nexus, 1) == [1]
    assert timer.fired == 1


async def test_timer_ongoing_keeps_firing() -> None:
    nexus = AsyncEventNexus()
    timer = Timer(0.01, type=Timer.ONGOING, event_type=98, event_factory=nexus)
    payloads = await _timer_payloads(timer, nexus, 4)
    assert payloads[:4] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": "1"},
        {"interval": 1, "type": "count_down"},
        {"interval": 1, "type": Timer.COUNT_DOWN, "count": 0},
        {"interval": 1, "type": Timer.COUNT_UP},
    ],
)
def test_timer_bad_args(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Timer(event_type=1, **kwargs)


async def test_fanout_order_and_deregister() -> None:
    log: list[Any] = []
    fanout = EventFanout()

    def first(e: Event, q: Any) -> None:
        log.append(("first", e.id))

    async def second(e: Event, q: Any) -> None:
        log.append(("second", e.id))

    def third(e: Event, q: Any) -> None:
        log.append(("third", e.id))

    for h in (first, second, third):
        fanout.register(h)
    assert len(fanout) == 3
    nexus = AsyncEventNexus()
    nexus.add_handler(1, fanout)
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await asyncio.wait_for(nexus.join(), 5)
    fanout.deregister(second)
    assert len(fanout) == 2
    await nexus.ingest(Event(2, 1))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert log == [("first", 1), ("second", 1), ("third", 1), ("first", 2), ("third", 2)]
    with pytest.raises(ValueError):
        fanout.deregister(second)


async def test_fanout_failure_isolated_and_reported() -> None:
    log: list[str] = []
    fanout = EventFanout()

    def bad(e: Event, q: Any) -> None:
        log.append("bad")
        raise RuntimeError("fanout member failed")

    fanout.register(bad)
    fanout.register(lambda e, q: log.append("good"))
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    nexus.add_handler(1, fanout)
    task = nexus.start()
    event = Event(1, 1)
    await nexus.ingest(event)
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert log == ["bad", "good"]
    assert len(hook.calls) == 1
    assert str(hook.calls[0][0]) == "fanout member failed" and hook.calls[0][1] is event


async def test_fanout_several_failures_and_returned_events() -> None:
    fanout = EventFanout()

    def bad(e: Event, q: Any) -> None:
        raise ValueError("x")

    fanout.register(bad)
    fanout.register(bad)
    with pytest.raises(errors.FanoutFailed) as info:
        await fanout.handle(Event(1, 1), None)
    assert len(info.value.exceptions) == 2
    ok = EventFanout()
    ok.register(lambda e, q: Event(2, 2))
    ok.register(lambda e, q: [Event(3, 2)])
    assert [e.id for e in await ok.handle(Event(1, 1), None)] == [2, 3]


def test_fanout_rejects_bad_handler() -> None:
    with pytest.raises(TypeError):
        EventFanout().register(17)  # type: ignore[arg-type]


async def test_discarder_consumes() -> None:
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    nexus.add_handler(3, EventDiscarder())
    task = nexus.start()
    await nexus.ingest(Event(1, 3))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert hook.calls == []
    assert nexus.stats()["unhandled"] == 0


async def test_producer_shared_by_two_nexuses_started_once() -> None:
    starts: list[int] = []
    finished = asyncio.Event()

    class OneShot(EventProducer):
        async def start(self) -> None:
            starts.append(1)
            await self.distribute_event(Event(len(starts), 5, 0, "tick"))
            finished.set()

    producer = OneShot()
    a, b = AsyncEventNexus(), AsyncEventNexus()
    ca, cb = Collector(), Collector()
    a.add_handler(5, ca)
    b.add_handler(5, cb)
    a.add_producer(producer)
    b.add_producer(producer)
    ta, tb = a.start(), b.start()
    await asyncio.wait_for(finished.wait(), 5)
    await ca.wait(1)
    await cb.wait(1)
    await asyncio.wait_for(a.join(), 5)
    await asyncio.wait_for(b.join(), 5)
    a.stop()
    b.stop()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    # one producer, one start(): each nexus sees each produced event exactly once
    assert len(starts) == 1
    assert [e.payload for e in ca.events] == ["tick"]
    assert [e.payload for e in cb.events] == ["tick"]


async def test_shared_producer_keeps_feeding_remaining_nexus() -> None:
    timer = Timer(0.005, type=Timer.ONGOING, event_type=98)
    a, b = AsyncEventNexus(), AsyncEventNexus()
    ca, cb = Collector(), Collector()
    a.add_handler(98, ca)
    b.add_handler(98, cb)
    a.add_producer(timer)
    b.add_producer(timer)
    ta, tb = a.start(), b.start()
    try:
        await ca.wait(1)
        await cb.wait(1)
        a.stop()
        await asyncio.wait_for(ta, 5)
        seen = len(cb.events)
        # b is still running and still registered: the shared timer must keep ticking for it
        await cb.wait(seen + 3, timeout=2)
    finally:
        b.stop()
        await asyncio.wait_for(tb, 5)
