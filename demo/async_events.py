"""The usage guide's demo: every kind of source, filter and handler in one small program.

Run ``python demo/async_events.py --seconds 5``. Each handler prints what it receives; after
the given number of seconds the nexus stops gracefully (queued events are still dispatched)
and the program exits 0.

:func:`build` returns the configured nexus with its sources registered, so a runner can run
it too; :func:`main` adds the guide's "teapot" task, which ingests one event after a second.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import async_nexus
from async_nexus import Event

TEAPOT_TYPE = 99
PING_TYPE = 50
COUNT_TYPE = 51
COUNTDOWN_TYPE = 98
HEARTBEAT_TYPE = 97


class Kettle(async_nexus.NamedEvent):
    """A named event: its class is its type, so handlers are registered for the class."""


class PingConverter(async_nexus.SimpleEventConverter):
    """Pull mode, state kept in an attribute: a type-50 event every 0.2 s."""

    def __init__(self) -> None:
        self.last_id = 1000

    async def obtain_event(self) -> Event:
        await asyncio.sleep(0.2)  # stands in for waiting on real input
        self.last_id += 1
        return Event(self.last_id, PING_TYPE, 0, "ping")


class DemoEventConverter(async_nexus.EventConverter):
    """Pull mode, state kept in a generator: eight events with ids from the nexus.

    Every third one is a :class:`Kettle` instead of a plain type-51 event.
    """

    def __init__(self, nexus: async_nexus.AsyncEventNexus) -> None:
        self.nexus = nexus

    async def event_generator(self) -> AsyncIterator[Event]:
        for number in range(8):
            await asyncio.sleep(0.15)
            if number % 3 == 2:
                yield Kettle(self.nexus.next_id(), f"boiled #{number}")
            else:
                yield Event(self.nexus.next_id(), COUNT_TYPE, 0, number)


class RandomTypeProducer(async_nexus.EventProducer):
    """Push mode: events of a random type in 1..5, one every 0.1 s, until stopped."""

    async def start(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            event_type = random.randint(1, 5)
            event = self.event_factory.create_event(f"random #{event_type}", event_type=event_type)
            await self.distribute_event(event)


async def teapot(nexus: async_nexus.AsyncEventNexus, delay: float = 1.0) -> None:
    """The simplest source: a plain task that ingests a single event."""
    await asyncio.sleep(delay)
    await nexus.ingest(Event(1001, TEAPOT_TYPE, 0, "TEAPOT!"))


def build() -> async_nexus.AsyncEventNexus:
    """Return the demo's nexus with its sources, filter and handlers registered (not started)."""
    nexus = async_nexus.AsyncEventNexus()

    # Sources: two converters, a producer and two timers.
    nexus.register(PingConverter())
    nexus.register(DemoEventConverter(nexus))
    nexus.add_producer(RandomTypeProducer(event_factory=nexus))
    nexus.add_producer(
        async_nexus.Timer(
            interval=0.3,
            type=async_nexus.Timer.COUNT_DOWN,
            count=3,
            event_type=COUNTDOWN_TYPE,
            event_factory=nexus,
        )
    )
    nexus.add_producer(
        async_nexus.Timer(
            interval=0.5, type=async_nexus.Timer.ONGOING, event_type=HEARTBEAT_TYPE, event_factory=nexus
        )
    )

    # A filter: pings with an even id are consumed here and go no further.
    def drop_even_pings(event: Event, queue: asyncio.Queue[Any]) -> bool:
        return event.type == PING_TYPE and isinstance(event.id, int) and event.id % 2 == 0

    nexus.add_filter(drop_even_pings)

    # A fanout: both handlers see every countdown tick, in registration order.
    fanout = async_nexus.EventFanout()

    def countdown_display(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"[display] countdown at {event.payload}")

    async def countdown_log(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"[log] countdown tick, id {event.id}")

    fanout.register(countdown_display)
    fanout.register(countdown_log)
    nexus.add_handler(COUNTDOWN_TYPE, fanout)

    # Per-type handlers.
    async def teapot_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"teapot id {event.id}: {event.payload}")  # the payload is "TEAPOT!"

    def heartbeat_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"heartbeat {event.payload}")

    def ping_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"ping {event.id} (odd id: it passed the filter)")

    async def count_handler(event: Event, queue: asyncio.Queue[Any]) -> Event:
        print(f"count {event.payload}")
        # A returned event is a secondary event, dispatched by the same loop (type 5).
        return Event(nexus.next_id(), 5, 0, f"echo of count {event.payload}")

    def kettle_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"kettle {event.id}: {event.payload}")

    def low_random_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"random event of type {event.type}")

    nexus.add_handler(TEAPOT_TYPE, teapot_handler)
    nexus.add_handler(HEARTBEAT_TYPE, heartbeat_handler)
    nexus.add_handler(PING_TYPE, ping_handler)
    nexus.add_handler(COUNT_TYPE, count_handler)
    nexus.add_handler(Kettle, kettle_handler)
    for event_type in (1, 2, 3):
        nexus.add_handler(event_type, low_random_handler)
    nexus.add_handler(4, async_nexus.EventDiscarder())

    # The default handler: everything else (random type 5 and the echoes of counts).
    def default_handler(event: Event, queue: asyncio.Queue[Any]) -> None:
        print(f"default handler got {event}")

    nexus.add_handler(-1, default_handler)
    return nexus


async def main(seconds: float) -> None:
    """Run the demo nexus for ``seconds``, then stop it gracefully."""
    nexus = build()
    loop_task = nexus.start()
    teapot_task = asyncio.create_task(teapot(nexus))
    asyncio.get_running_loop().call_later(seconds, nexus.stop)
    try:
        await loop_task
    finally:
        teapot_task.cancel()
        await asyncio.gather(teapot_task, return_exceptions=True)
    totals = {name: count for name, count in nexus.stats().items() if isinstance(count, int)}
    print(f"stopped gracefully after {seconds:g} s: {totals}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: ``--seconds N``."""
    parser = argparse.ArgumentParser(
        description=(
            "Async Nexus demo: pull-mode converters, a push-mode producer, timers, a filter, "
            "a fanout, per-type handlers, a NamedEvent, a default handler and the teapot event. "
            "Runs for a while, then stops gracefully."
        )
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        metavar="N",
        help="how many seconds to run before stopping gracefully (default: 5)",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def cli(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the demo."""
    args = parse_args(argv)
    asyncio.run(main(args.seconds))


if __name__ == "__main__":
    cli()
