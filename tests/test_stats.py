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
    }
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
