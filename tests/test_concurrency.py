"""Handlers registered with concurrency=N, with and without key=: limits, order, lifecycle."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import Hook

from async_nexus import (
    AsyncEventNexus,
    Event,
    EventConsumer,
    EventFanout,
    EventProducer,
    NamedEvent,
    errors,
)
from async_nexus.testing import Recorder


class Gauge:
    """An async handler that counts how many of its calls run at once; ``release`` lets them end."""

    def __init__(self, *, hold: bool = True) -> None:
        self.running = 0
        self.peak = 0
        self.done: list[Event] = []
        self.started: list[Event] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.changed = asyncio.Event()

    async def __call__(self, event: Event, queue: Any) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(event)
        self.changed.set()
        try:
            await self.release.wait()
            await asyncio.sleep(0)
        finally:
            self.running -= 1
            self.done.append(event)
            self.changed.set()

    async def until(self, condition: Any, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout) if hasattr(asyncio, "timeout") else _Timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


class _Timeout:
    """asyncio.timeout for Python 3.10."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handle = asyncio.get_running_loop().call_later(self.seconds, task.cancel)

    async def __aexit__(self, *exc: object) -> None:
        self._handle.cancel()


async def test_in_flight_never_exceeds_the_limit_and_reaches_it() -> None:
    gauge = Gauge()
    nexus = AsyncEventNexus()
    nexus.add_handler(1, gauge, concurrency=3)
    async with nexus:
        for i in range(10):
            nexus.ingest_nowait(Event(i, 1))
        await gauge.until(lambda: gauge.running == 3)
        assert nexus.stats()["in_flight"] == 3
        assert nexus.stats()["by_type"][1]["in_flight"] == 3
        assert nexus.stats()["queued"] == 7  # the loop waits for room; the rest stay queued
        gauge.release.set()
        await asyncio.wait_for(nexus.join(), 5)
    assert gauge.peak == 3
    assert len(gauge.done) == 10
    assert nexus.stats()["in_flight"] == 0


async def test_the_loop_goes_on_while_concurrent_handlers_run() -> None:
    gauge = Gauge()
    other = Recorder()
    nexus = AsyncEventNexus()
    nexus.add_handler(1, gauge, concurrency=2)
    nexus.add_handler(2, other)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await nexus.ingest(Event(2, 2))
        await other.wait_for(1)
        assert gauge.running == 1  # still running: the loop did not wait for it
        gauge.release.set()


async def test_equal_keys_in_order_and_different_keys_side_by_side() -> None:
    gates = {i: asyncio.Event() for i in range(6)}
    order: list[int] = []
    running: set[str] = set()
    both_running = asyncio.Event()

    async def handler(event: Event, queue: Any) -> None:
        running.add(event.payload)
        if running == {"a", "b"}:
            both_running.set()
        await gates[event.id].wait()
        order.append(event.id)
        running.discard(event.payload)

    nexus = AsyncEventNexus()
    nexus.add_handler("job", handler, concurrency=4, key=lambda e: e.payload)
    async with nexus:
        for i, key in enumerate("aabbab"):
            await nexus.ingest(Event(i, "job", 0, key))
        await asyncio.wait_for(both_running.wait(), 5)  # different keys side by side
        # Release in reverse: a later event of a key still waits for the earlier ones.
        for i in reversed(range(6)):
            gates[i].set()
            await asyncio.sleep(0)
        await asyncio.wait_for(nexus.join(), 5)
    by_key: dict[str, list[int]] = defaultdict(list)
    for i in order:
        by_key["aabbab"[i]].append(i)
    assert by_key == {"a": [0, 1, 4], "b": [2, 3, 5]}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(2, 6),
)
def test_per_key_order_matches_a_reference_model(jobs: list[tuple[int, int]], limit: int) -> None:
    # Reference model: within a key, the handling order is the dispatch order; across
    # keys, anything goes; never more than `limit` at once.
    timeline: list[tuple[str, int]] = []
    state = {"running": 0, "peak": 0}

    async def handler(event: Event, queue: Any) -> None:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        timeline.append(("start", event.id))
        for _ in range(event.payload[1]):
            await asyncio.sleep(0)
        timeline.append(("end", event.id))
        state["running"] -= 1

    async def main() -> None:
        nexus = AsyncEventNexus(maxsize=8)
        nexus.add_handler("job", handler, concurrency=limit, key=lambda e: e.payload[0])
        async with nexus:
            for i, job in enumerate(jobs):
                await nexus.ingest(Event(i, "job", 0, job))
            await asyncio.wait_for(nexus.join(), 10)

    asyncio.run(main())
    assert sorted(i for what, i in timeline if what == "end") == list(range(len(jobs)))
    assert state["peak"] <= limit
    for key in {k for k, _ in jobs}:
        ids = [i for i, (k, _) in enumerate(jobs) if k == key]
        assert [i for what, i in timeline if what == "start" and jobs[i][0] == key] == ids
        # One at a time within a key: each starts only after the one before it ended.
        for earlier, later in zip(ids, ids[1:], strict=False):
            assert timeline.index(("end", earlier)) < timeline.index(("start", later))


async def test_every_kind_of_registration_runs_concurrently() -> None:
    class Ping(NamedEvent):
        pass

    class Consumer(EventConsumer):
        def __init__(self, gauge: Gauge) -> None:
            self.gauge = gauge

        async def handle(self, event: Any, queue: Any) -> None:
            await self.gauge(event, queue)

    gauges = {name: Gauge() for name in ("range", "pattern", "named", "default", "consumer", "fanout")}
    fanout = EventFanout()
    fanout.register(gauges["fanout"])
    nexus = AsyncEventNexus()
    nexus.add_handler((100, 199), gauges["range"], concurrency=2)
    nexus.add_handler("sensor.*", gauges["pattern"], concurrency=2)
    nexus.add_handler(Ping, gauges["named"], concurrency=2)
    nexus.add_handler(-1, gauges["default"], concurrency=2)
    nexus.add_handler("consumer", Consumer(gauges["consumer"]), concurrency=2)
    nexus.add_handler("fanout", fanout, concurrency=2)
    events = {
        "range": [Event(1, 150), Event(2, 151)],
        "pattern": [Event(1, "sensor.a"), Event(2, "sensor.b")],
        "named": [Ping(1, None), Ping(2, None)],
        "default": [Event(1, "other"), Event(2, "other")],
        "consumer": [Event(1, "consumer"), Event(2, "consumer")],
        "fanout": [Event(1, "fanout"), Event(2, "fanout")],
    }
    async with nexus:
        for batch in events.values():
            for event in batch:
                await nexus.ingest(event)
        for gauge in gauges.values():
            await gauge.until(lambda gauge=gauge: gauge.running == 2)  # type: ignore[misc]
            gauge.release.set()
        await asyncio.wait_for(nexus.join(), 5)
    assert {name: gauge.peak for name, gauge in gauges.items()} == dict.fromkeys(gauges, 2)


async def test_with_multiple_each_registration_has_its_own_limit() -> None:
    wide, narrow = Gauge(), Gauge()
    nexus = AsyncEventNexus(multiple=True)
    nexus.add_handler(1, wide, concurrency=4)
    nexus.add_handler(1, narrow, concurrency=2)
    async with nexus:
        for i in range(6):
            nexus.ingest_nowait(Event(i, 1))
        await narrow.until(lambda: narrow.running == 2)
        assert wide.running == 2  # held back with narrow: the loop waits for room in both
        narrow.release.set()
        wide.release.set()
        await asyncio.wait_for(nexus.join(), 5)
    assert (wide.peak, narrow.peak) == (4, 2) or (wide.peak <= 4 and narrow.peak == 2)
    assert len(wide.done) == len(narrow.done) == 6


async def test_filters_run_first_in_the_loop() -> None:
    gauge = Gauge(hold=False)
    seen: list[int] = []

    def spam(event: Event, queue: Any) -> bool:
        seen.append(event.id)
        return bool(event.id % 2)

    nexus = AsyncEventNexus()
    nexus.add_filter(spam)
    nexus.add_handler(1, gauge, concurrency=3)
    async with nexus:
        for i in range(6):
            await nexus.ingest(Event(i, 1))
        await asyncio.wait_for(nexus.join(), 5)
    assert seen == list(range(6))
    assert sorted(e.id for e in gauge.done) == [0, 2, 4]


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, "2", True, None])
def test_bad_concurrency_is_refused_with_the_reason(concurrency: Any) -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall, match="concurrency must be an int >= 1"):
        nexus.add_handler(1, lambda e, q: None, concurrency=concurrency)
    with pytest.raises(errors.BadCall, match="concurrency must be an int >= 1"):
        nexus.on(1, concurrency=concurrency)


def test_bad_key_is_refused_with_the_reason() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall, match="key must be a function key\\(event\\)"):
        nexus.add_handler(1, lambda e, q: None, concurrency=2, key="customer")  # type: ignore[arg-type]
    with pytest.raises(errors.BadCall, match="concurrency=1 runs them one at a time already"):
        nexus.add_handler(1, lambda e, q: None, key=lambda e: e.payload)
    assert nexus.stats()["by_type"] == {}


async def test_a_key_function_that_raises_is_reported_and_the_loop_goes_on() -> None:
    hook = Hook()
    gauge = Gauge(hold=False)
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler(1, gauge, concurrency=2, key=lambda e: e.payload["customer"])
    nexus.add_handler(2, gauge, concurrency=2, key=lambda e: e.payload)  # a list is not hashable
    async with nexus:
        await nexus.ingest(Event(1, 1, 0, {}))
        await nexus.ingest(Event(2, 2, 0, [1]))
        await nexus.ingest(Event(3, 1, 0, {"customer": "c"}))
        await asyncio.wait_for(nexus.join(), 5)
    assert [type(exc) for exc, _ in hook.calls] == [KeyError, TypeError]
    assert [subject.id for _, subject in hook.calls] == [1, 2]
    assert [e.id for e in gauge.done] == [3]


async def test_decorator_takes_the_same_keywords() -> None:
    gauge = Gauge()
    nexus = AsyncEventNexus()

    @nexus.on("job", concurrency=2, key=lambda e: e.payload)
    async def handler(event: Event, queue: Any) -> None:
        await gauge(event, queue)

    async with nexus:
        for i, key in enumerate("abc"):
            await nexus.ingest(Event(i, "job", 0, key))
        await gauge.until(lambda: gauge.running == 2)
        gauge.release.set()
        await asyncio.wait_for(nexus.join(), 5)
    assert gauge.peak == 2


async def test_join_waits_for_handlers_in_flight() -> None:
    gauge = Gauge()
    nexus = AsyncEventNexus()
    nexus.add_handler(1, gauge, concurrency=2)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await gauge.until(lambda: gauge.running == 1)
        joining = asyncio.ensure_future(nexus.join())
        await asyncio.sleep(0.01)
        assert not joining.done()  # the queue is empty, but a handler is in flight
        gauge.release.set()
        await asyncio.wait_for(joining, 5)
        assert gauge.done


async def test_graceful_stop_lets_handlers_in_flight_finish_and_their_events_follow() -> None:
    gauge = Gauge()
    emitted = Recorder()

    async def handler(event: Event, queue: Any) -> Event:
        await gauge(event, queue)
        return Event(event.id, "after")  # secondary events of in-flight handlers are dispatched too

    nexus = AsyncEventNexus()
    nexus.add_handler(1, handler, concurrency=3)
    nexus.add_handler("after", emitted)
    task = nexus.start()
    for i in range(5):
        await nexus.ingest(Event(i, 1))
    await gauge.until(lambda: gauge.running == 3)
    nexus.stop()
    await asyncio.sleep(0.01)
    assert not task.done()
    gauge.release.set()
    await asyncio.wait_for(task, 5)
    assert len(gauge.done) == 5
    assert sorted(e.id for e in emitted.events) == list(range(5))


async def test_drain_timeout_cancels_handlers_that_do_not_finish() -> None:
    gauge = Gauge()
    nexus = AsyncEventNexus(drain_timeout=0.05)
    nexus.add_handler(1, gauge, concurrency=2)
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await gauge.until(lambda: gauge.running == 1)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert gauge.running == 0  # cancelled at the drain timeout
    assert nexus.stats()["in_flight"] == 0


async def test_hard_stop_cancels_handlers_in_flight_and_acknowledges_nothing() -> None:
    gauge = Gauge()
    feeder = EventProducer()
    nexus = AsyncEventNexus()
    nexus.add_handler(1, gauge, concurrency=2)
    nexus.add_producer(feeder)
    acked: list[Event] = []
    task = nexus.start()
    await feeder.distribute_event(Event(1, 1), on_dispatched=acked.append)
    await gauge.until(lambda: gauge.running == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gauge.running == 0
    assert acked == []


async def test_fail_fast_stops_at_the_first_failure_of_a_concurrent_handler() -> None:
    gauge = Gauge()

    async def handler(event: Event, queue: Any) -> None:
        if event.id == 2:
            raise RuntimeError("boom")
        await gauge(event, queue)

    nexus = AsyncEventNexus(fail_fast=True)
    nexus.add_handler(1, handler, concurrency=4)
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await gauge.until(lambda: gauge.running == 1)
    await nexus.ingest(Event(2, 1))
    await nexus.ingest(Event(3, 1))
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(task, 5)
    assert gauge.running == 0  # the others were cancelled


async def test_acknowledgement_waits_for_the_concurrent_handler() -> None:
    gauge = Gauge()
    feeder = EventProducer()
    nexus = AsyncEventNexus()
    nexus.add_handler(1, gauge, concurrency=2)
    nexus.add_producer(feeder)
    acked: list[int] = []
    async with nexus:
        for i in range(2):
            await feeder.distribute_event(Event(i, 1), on_dispatched=lambda e: acked.append(e.id))
        await gauge.until(lambda: gauge.running == 2)
        assert acked == []
        gauge.release.set()
        await asyncio.wait_for(nexus.join(), 5)
    assert sorted(acked) == [0, 1]


async def test_secondary_events_of_a_concurrent_handler_count_its_chain() -> None:
    hook = Hook()

    async def echo(event: Event, queue: Any) -> None:
        await asyncio.sleep(0)
        queue.put_nowait(Event(event.id + 1, "echo"))

    nexus = AsyncEventNexus(max_chain=5)
    nexus.on_error(hook)
    nexus.add_handler("echo", echo, concurrency=3)
    async with nexus:
        await nexus.ingest(Event(0, "echo"))
        await asyncio.wait_for(hook.called.wait(), 5)
    assert isinstance(hook.calls[0][0], errors.RunawayChain)
    assert hook.calls[0][1].id == 5


async def test_failures_are_counted_after_the_handler_finished() -> None:
    hook = Hook()
    release = asyncio.Event()

    async def failing(event: Event, queue: Any) -> None:
        await release.wait()
        raise ValueError("late failure")

    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler(1, failing, concurrency=2)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await asyncio.sleep(0.01)
        assert nexus.stats()["by_type"][1]["failed"] == 0
        release.set()
        await asyncio.wait_for(nexus.join(), 5)
        assert nexus.stats()["by_type"][1]["failed"] == 1
    assert hook.calls[0][1].id == 1


async def test_backpressure_reaches_the_producer_when_the_lane_is_full() -> None:
    gauge = Gauge()
    nexus = AsyncEventNexus(maxsize=4)
    nexus.add_handler(1, gauge, concurrency=2)
    async with nexus:
        for i in range(6):  # 2 in flight, 4 queued
            await nexus.ingest(Event(i, 1))
        await gauge.until(lambda: gauge.running == 2)
        with pytest.raises(errors.QueueFull):
            nexus.ingest_nowait(Event(6, 1))
        blocked = asyncio.ensure_future(nexus.ingest(Event(7, 1)))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        gauge.release.set()
        await asyncio.wait_for(blocked, 5)
        await asyncio.wait_for(nexus.join(), 5)
    assert len(gauge.done) == 7
