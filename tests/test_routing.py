"""Routing: exact types, ranges, patterns, default, filters, multiple handlers, priority."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import run_events

from async_nexus import AsyncEventNexus, Event
from async_nexus.testing import feed, running


def recorder(log: list[Any], tag: str) -> Any:
    return lambda e, q: log.append((tag, e.id))


async def test_range_is_inclusive() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_handler((10, 20), recorder(log, "range"))
    nexus.add_handler(-1, recorder(log, "default"))
    await run_events(nexus, Event(1, 9), Event(2, 10), Event(3, 15), Event(4, 20), Event(5, 21))
    assert log == [("default", 1), ("range", 2), ("range", 3), ("range", 4), ("default", 5)]


async def test_narrowest_range_wins() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_handler((12, 14), recorder(log, "narrow"))
    nexus.add_handler((0, 100), recorder(log, "wide"))
    nexus.add_handler((10, 20), recorder(log, "mid"))
    await run_events(nexus, Event(1, 13), Event(2, 11), Event(3, 50))
    assert log == [("narrow", 1), ("mid", 2), ("wide", 3)]


async def test_str_pattern_and_more_literal_wins() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_handler("sensor.*", recorder(log, "sensor"))
    nexus.add_handler("sensor.temp.*", recorder(log, "temp"))
    nexus.add_handler("*", recorder(log, "any"))
    await run_events(
        nexus, Event(1, "sensor.humidity"), Event(2, "sensor.temp.kitchen"), Event(3, "door.open")
    )
    assert log == [("sensor", 1), ("temp", 2), ("any", 3)]


async def test_exact_beats_range_and_pattern_beats_default() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_handler(15, recorder(log, "exact"))
    nexus.add_handler((10, 20), recorder(log, "range"))
    nexus.add_handler("sensor.temp", recorder(log, "exact-str"))
    nexus.add_handler("sensor.*", recorder(log, "pattern"))
    nexus.add_handler(-1, recorder(log, "default"))
    await run_events(
        nexus,
        Event(1, 15),
        Event(2, 16),
        Event(3, "sensor.temp"),
        Event(4, "sensor.x"),
        Event(5, "other"),
        Event(6, 99),
    )
    assert log == [
        ("exact", 1),
        ("range", 2),
        ("exact-str", 3),
        ("pattern", 4),
        ("default", 5),
        ("default", 6),
    ]


async def test_route_cache_invalidated_by_registration() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_handler(-1, recorder(log, "default"))
    task = nexus.start()
    await nexus.ingest(Event(1, 7))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.add_handler(7, recorder(log, "exact"))
    await nexus.ingest(Event(2, 7))
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert log == [("default", 1), ("exact", 2)]


async def test_filters_in_order_first_true_consumes() -> None:
    nexus = AsyncEventNexus()
    calls: list[Any] = []

    def first(e: Event, q: Any) -> bool:
        calls.append(("first", e.id))
        return e.id == 1

    def second(e: Event, q: Any) -> bool:
        calls.append(("second", e.id))
        return e.id == 2

    nexus.add_filter(first)
    nexus.add_filter(second)
    nexus.add_handler(-1, recorder(calls, "handler"))
    await run_events(nexus, Event(1, 0), Event(2, 0), Event(3, 0))
    assert calls == [
        ("first", 1),
        ("first", 2),
        ("second", 2),
        ("first", 3),
        ("second", 3),
        ("handler", 3),
    ]


async def test_filter_before_exact_handler() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []
    nexus.add_filter(lambda e, q: e.payload is None)
    nexus.add_handler(4, recorder(log, "h"))
    await run_events(nexus, Event(1, 4), Event(2, 4, 0, "ok"))
    assert log == [("h", 2)]


def test_second_handler_without_multiple_is_lookup_error() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(5, lambda e, q: None)
    with pytest.raises(LookupError):
        nexus.add_handler(5, lambda e, q: None)
    nexus.add_handler((1, 3), lambda e, q: None)
    with pytest.raises(LookupError):
        nexus.add_handler((1, 3), lambda e, q: None)
    nexus.add_handler("a.*", lambda e, q: None)
    with pytest.raises(LookupError):
        nexus.add_handler("a.*", lambda e, q: None)


async def test_multiple_runs_all_in_order_and_failure_isolated() -> None:
    nexus = AsyncEventNexus(multiple=True)
    log: list[Any] = []
    errs: list[BaseException] = []
    nexus.on_error(lambda exc, subject: errs.append(exc))

    def boom(e: Event, q: Any) -> None:
        log.append(("boom", e.id))
        raise RuntimeError("boom")

    async def third(e: Event, q: Any) -> None:
        log.append(("third", e.id))

    nexus.add_handler(5, recorder(log, "first"))
    nexus.add_handler(5, boom)
    nexus.add_handler(5, third)
    await run_events(nexus, Event(1, 5))
    assert log == [("first", 1), ("boom", 1), ("third", 1)]
    assert len(errs) == 1 and str(errs[0]) == "boom"


async def test_priority_lower_first_fifo_within() -> None:
    nexus = AsyncEventNexus()
    order: list[int] = []
    nexus.add_handler(-1, lambda e, q: order.append(e.id))
    events = [Event(1, 0, 5), Event(2, 0, 1), Event(3, 0, 5), Event(4, 0, -2), Event(5, 0, 1), Event(6, 0, 0)]
    for event in events:
        await nexus.ingest(event)
    task = nexus.start()
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert order == [4, 6, 2, 5, 1, 3]


async def test_decorators_return_function_unchanged() -> None:
    nexus = AsyncEventNexus()
    log: list[Any] = []

    def handler(e: Event, q: Any) -> None:
        log.append(("h", e.id))

    def flt(e: Event, q: Any) -> bool:
        log.append(("f", e.id))
        return False

    assert nexus.on(99)(handler) is handler
    assert nexus.filter(flt) is flt

    @nexus.on(98)
    async def teapot(e: Event, q: Any) -> None:
        log.append(("teapot", e.id))

    assert callable(teapot) and teapot.__name__ == "teapot"
    await run_events(nexus, Event(1, 99), Event(2, 98))
    assert log == [("f", 1), ("h", 1), ("f", 2), ("teapot", 2)]


async def test_a_kept_route_follows_handlers_added_and_removed_while_looping() -> None:
    nexus = AsyncEventNexus(multiple=True)
    log: list[tuple[str, object]] = []

    def first(e: Event, q: Any) -> None:
        log.append(("first", e.id))

    async def second(e: Event, q: Any) -> None:
        log.append(("second", e.id))

    nexus.add_handler(7, first)
    async with running(nexus):
        await feed(nexus, [Event(1, 7)])  # the route of type 7 is kept from here on
        nexus.add_handler(7, second)
        await feed(nexus, [Event(2, 7)])
        nexus.remove_handler(7, first)
        await feed(nexus, [Event(3, 7)])
        nexus.remove_handler(7, second)
        await feed(nexus, [Event(4, 7)])
    assert log == [("first", 1), ("first", 2), ("second", 2), ("second", 3)]
    assert nexus.stats()["by_type"][7]["unhandled"] == 1
