"""The usage guide's demo: every kind of source, filter and handler in one program.

Run ``python demo/async_events.py --seconds 5``; it prints what each handler sees, stops
gracefully after the given time and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import async_nexus
from async_nexus import Event


class Treacle(async_nexus.NamedEvent):
    """A named event: the class is the type."""


class Greeter(async_nexus.SimpleEventConverter):
    """Pull mode with state in attributes: an event of type 50 every 0.2 s."""

    id = 1000

    async def obtain_event(self) -> Event:
        await asyncio.sleep(0.2)
        self.id += 1
        return Event(self.id, 50, 0, "hi")


class Counter(async_nexus.EventConverter):
    """Pull mode with state in a generator: ten events of type 51, ids from the nexus."""

    def __init__(self, nexus: async_nexus.AsyncEventNexus) -> None:
        self.nexus = nexus

    async def event_generator(self) -> AsyncIterator[Event]:
        for number in range(10):
            await asyncio.sleep(0.3)
            yield Event(self.nexus.next_id(), 51, 0, number)


class RandomProducer(async_nexus.EventProducer):
    """Push mode: events of random types 1..5, and now and then a Treacle."""

    async def start(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            kind = random.randint(1, 6)
            if kind == 6:
                event: Event = Treacle(self.event_factory.next_id(), "sticky")
            else:
                event = self.event_factory.create_event("random", event_type=kind)
            await self.distribute_event(event)


async def teapot(nexus: async_nexus.AsyncEventNexus) -> None:
    """The simplest source of all: a task that ingests one event."""
    await asyncio.sleep(1)
    await nexus.ingest(Event(1001, 99, 0, "TEAPOT!"))


def build() -> async_nexus.AsyncEventNexus:
    """Build the demo's nexus with its sources, filter and handlers registered."""
    nexus = async_nexus.AsyncEventNexus()

    nexus.register(Greeter())
    nexus.register(Counter(nexus))
    nexus.add_producer(RandomProducer(event_factory=nexus))
    nexus.add_producer(
        async_nexus.Timer(interval=0.5, type=async_nexus.Timer.COUNT_DOWN, count=5, event_type=98)
    )
    nexus.add_producer(async_nexus.Timer(interval=1.0, type=async_nexus.Timer.ONGOING, event_type=97))

    @nexus.filter
    def drop_even_counts(event: Event, queue: Any) -> bool:
        return event.type == 51 and event.payload % 2 == 0

    fanout = async_nexus.EventFanout()
    fanout.register(lambda event, queue: print(f"fanout A: timer {event.type} at {event.payload}"))
    fanout.register(lambda event, queue: print(f"fanout B: timer {event.type} at {event.payload}"))
    nexus.add_handler(98, fanout)

    @nexus.on(99)
    async def teapot_handler(event: Event, queue: Any) -> None:
        print(f"teapot ID: {event.id} says {event.payload}")

    @nexus.on(Treacle)
    def treacle_handler(event: Event, queue: Any) -> None:
        print(f"treacle {event.id}: {event.payload}")

    @nexus.on(51)
    async def odd_counts(event: Event, queue: Any) -> Event:
        print(f"count {event.payload} (odd: the filter dropped the even ones)")
        return Event(nexus.next_id(), 5, 0, f"secondary from count {event.payload}")

    nexus.add_handler((1, 4), lambda event, queue: print(f"random type {event.type} (range 1..4)"))
    nexus.add_handler(50, async_nexus.EventDiscarder())
    nexus.add_handler(-1, lambda event, queue: print(f"default handler: {event}"))
    return nexus


async def main(seconds: float) -> None:
    """Run the demo nexus for ``seconds``, then stop it gracefully."""
    nexus = build()
    task = nexus.start()
    teapot_task = asyncio.create_task(teapot(nexus))
    asyncio.get_running_loop().call_later(seconds, nexus.stop)
    await task
    teapot_task.cancel()
    print(f"stopped gracefully: {nexus.stats()}")


def cli() -> None:
    """Parse the command line and run the demo."""
    parser = argparse.ArgumentParser(
        description="Async Nexus demo: converters, producers, timers, a filter, a fanout, "
        "per-type, range and default handlers, a NamedEvent and the teapot event."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds))


if __name__ == "__main__":
    cli()
