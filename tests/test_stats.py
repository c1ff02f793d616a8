"""nexus.stats(): totals, per type, per source, uptime."""

from __future__ import annotations

import asyncio
from typing import Any

from support import Collector

from async_nexus import AsyncEventNexus, Event, EventConverter, EventProducer, errors


class Three(EventConverter):
    async def event_generator(self) -> Any:
        for i in range(3):
            yield Event(i, "from-converter")


class Pusher(EventProducer):
    pass


async def test_stats_per_type_and_per_source() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)
    nexus.add_filter(lambda e, q: e.type == "spam")
    collector = Collector()
    nexus.add_handler("from-converter", collector)
    nexus.add_handler("ok", lambda e, q: Event(0, "child") if e.id == 0 else None)
    nexus.add_handler("child", lambda e, q: None)

    def broken(event: Event, queue: Any) -> None:
        raise ValueError("bad")

    nexus.add_handler("bad", broken)
    pusher = Pusher()
    converter = Three()
    nexus.add_producer(pusher)
    nexus.add_converter(converter)
    assert nexus.stats()["uptime"] == 0.0
    async with nexus:
        await collector.wait(3)
        for i in range(2):
            await nexus.ingest(Event(i, "ok"))
        await pusher.distribute_event(Event(9, "spam"))
        await nexus.ingest(Event(1, "bad"))
        await nexus.ingest(Event(1, "nobody"))
        await asyncio.wait_for(nexus.join(), 5)
        stats = nexus.stats()
    assert stats["uptime"] > 0
    assert nexus.stats()["uptime"] >= stats["uptime"]
    assert {k: stats[k] for k in ("ingested", "dispatched", "filtered", "unhandled", "failed", "errors")} == {
        "ingested": 9,
        "dispatched": 9,
        "filtered": 1,
        "unhandled": 1,
        "failed": 1,
        "errors": 2,
    }
    assert stats["by_type"]["ok"] == {
        "dispatched": 2,
        "filtered": 0,
        "unhandled": 0,
        "failed": 0,
        "in_flight": 0,
        "handled": 2,
    }
    assert stats["handled"] == 9 - 1 - 1 - 1  # less the filtered, unhandled and failed
    assert stats["by_type"]["bad"]["handled"] == 0
    assert stats["by_type"]["spam"]["filtered"] == 1
    assert stats["by_type"]["bad"]["failed"] == 1
    assert stats["by_type"]["nobody"]["unhandled"] == 1
    assert stats["by_type"]["from-converter"]["dispatched"] == 3
    assert stats["by_source"] == {converter.name: 3, pusher.name: 1, "secondary": 1, "ingest()": 4}
    assert stats["queued"] == 0 and stats["high_water"] >= 1


async def test_stats_count_refused_events_nowhere() -> None:
    nexus = AsyncEventNexus(maxsize=1)
    nexus.ingest_nowait(Event(1, 1))
    try:
        nexus.ingest_nowait(Event(2, 1))
    except errors.QueueFull:
        pass
    assert nexus.stats()["ingested"] == 1
    assert nexus.stats()["queued"] == 1


async def test_types_past_the_route_limit_are_routed_right_and_counted_together(
    monkeypatch: Any,
) -> None:
    from async_nexus._core import routing

    monkeypatch.setattr(routing, "_ROUTE_LIMIT", 2)
    nexus = AsyncEventNexus()
    exact, default = Collector(), Collector()
    nexus.add_handler("c", exact)
    nexus.add_handler(-1, default)
    async with nexus:
        for event_type in ("a", "b", "c", "d", "c"):
            await nexus.ingest(Event(0, event_type))
        await asyncio.wait_for(nexus.join(), 5)
        # a registration while running reaches kept routes and past-the-limit types alike
        nexus.remove_handler("c", exact)
        await nexus.ingest(Event(1, "c"))
        await nexus.ingest(Event(1, "a"))
        await asyncio.wait_for(nexus.join(), 5)
    assert [e.type for e in exact.events] == ["c", "c"]
    assert [(e.id, e.type) for e in default.events] == [(0, "a"), (0, "b"), (0, "d"), (1, "c"), (1, "a")]
    by_type = nexus.stats()["by_type"]
    assert set(by_type) == {"a", "b", "(other types)"}
    assert by_type["(other types)"]["dispatched"] == 4
    assert nexus.stats()["dispatched"] == 7


async def test_stats_state_and_registrations_with_what_their_lanes_hold() -> None:
    nexus = AsyncEventNexus()
    release = asyncio.Event()
    started: list[int] = []

    async def slow(event: Event, queue: Any) -> None:
        started.append(event.id)
        await release.wait()

    def by_user(event: Event) -> object:
        return event.payload

    def ranged(event: Event, queue: Any) -> None:
        pass

    nexus.add_handler("order", slow, concurrency=4, key=by_user)
    nexus.add_handler((10, 20), ranged)
    assert nexus.stats()["state"] == "READY"
    async with nexus:
        try:
            for i in range(3):
                await nexus.ingest(Event(i, "order", payload=f"user{i}"))
            while len(started) < 3:
                await asyncio.sleep(0.01)
            stats = nexus.stats()
        finally:
            release.set()
        await asyncio.wait_for(nexus.join(), 5)
        after = nexus.stats()
    assert stats["state"] == "LOOPING"
    assert stats["registrations"] == [
        {
            "type": "order",
            "handler": slow.__qualname__,
            "concurrency": 4,
            "in_flight": 3,
            "key": by_user.__qualname__,
        },
        {"type": [10, 20], "handler": ranged.__qualname__, "concurrency": 1, "in_flight": None, "key": None},
    ]
    assert stats["by_type"]["order"]["in_flight"] == 3
    assert after["registrations"][0]["in_flight"] == 0
    assert after["by_type"]["order"]["handled"] == 3
    assert nexus.stats()["state"] == "STOPPED"


async def test_stats_longest_loop_stall_names_how_long_a_handler_held_the_loop() -> None:
    import time

    nexus = AsyncEventNexus(slow_callback_warning=0.05)
    nexus.add_handler("block", lambda e, q: time.sleep(0.4))
    assert nexus.stats()["longest_loop_stall"] == 0.0
    async with nexus:
        await nexus.ingest(Event(1, "block"))
        await asyncio.wait_for(nexus.join(), 5)
    # The watchdog looks every 25 ms, so it sees the hold from at most that after it began.
    assert 0.3 <= nexus.stats()["longest_loop_stall"] < 5


async def test_stats_of_a_journal_give_its_size_in_bytes(tmp_path: Any) -> None:
    nexus = AsyncEventNexus(journal=tmp_path / "events.db")
    nexus.add_handler("x", lambda e, q: None)
    async with nexus:
        await nexus.ingest(Event(1, "x", payload="y" * 10_000))
        await asyncio.wait_for(nexus.join(), 5)
        journal = nexus.stats()["journal"]
    assert journal["bytes"] >= 10_000  # the payload went through the file (or its log)
