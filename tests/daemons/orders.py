"""Targets for ``python -m async_nexus run tests.daemons.orders:<factory>`` in tests/test_runner.py.

Handlers report on stdout, one line per fact (``HANDLED 5``), so the tests wait for lines
instead of sleeping. ``backlog`` also writes each handled id to the file named by the
``DAEMON_OUT`` environment variable.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from async_nexus import AsyncEventNexus, Event

BACKLOG = 300


class GatedNexus(AsyncEventNexus):
    """A nexus that tells its handlers when stop() was called."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()
        super().stop()


def say(line: str) -> None:
    """Print without flushing: the runner makes stdout line-buffered, as a daemon needs."""
    print(line)


def backlog() -> AsyncEventNexus:
    """BACKLOG events queued before the loop starts; the first waits for stop().

    So when the signal comes, BACKLOG - 1 events are still queued, every time.
    """
    nexus = GatedNexus(maxsize=0)
    out = open(os.environ["DAEMON_OUT"], "a", buffering=1)  # open for the life of the process

    async def handle(event: Event, queue: Any) -> None:
        if event.id == 0:
            await nexus.stopping.wait()
        out.write(f"{event.id}\n")

    nexus.add_handler("order", handle)
    for number in range(BACKLOG):
        nexus.ingest_nowait(Event(number, "order"))
    return nexus


def counted() -> AsyncEventNexus:
    """Five events handled at once, then ``HANDLED 5``; runs until signalled."""
    nexus = AsyncEventNexus()
    handled = 0

    def handle(event: Event, queue: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == 5:
            say("HANDLED 5")

    nexus.add_handler(1, handle)
    for number in range(5):
        nexus.ingest_nowait(Event(number, 1))
    return nexus


async def built_in_the_loop() -> AsyncEventNexus:
    """An async factory: says whether its handler runs in the loop the factory ran in."""
    await asyncio.sleep(0)
    factory_loop = asyncio.get_running_loop()
    nexus = AsyncEventNexus()

    def handle(event: Event, queue: Any) -> None:
        same = asyncio.get_running_loop() is factory_loop
        say(f"HANDLED {event.id} SAME LOOP {same} LOOP {type(factory_loop).__module__}")

    nexus.add_handler(1, handle)
    nexus.ingest_nowait(Event(1, 1))
    return nexus


def failing() -> AsyncEventNexus:
    """Events 1..5; the handler raises on event 3."""
    nexus = AsyncEventNexus()

    def handle(event: Event, queue: Any) -> None:
        if event.id == 3:
            raise ValueError("order 3 is malformed")
        say(f"HANDLED {event.id}")

    nexus.add_handler(1, handle)
    for number in range(1, 6):
        nexus.ingest_nowait(Event(number, 1))
    return nexus


def blocked() -> AsyncEventNexus:
    """The handler of the first of two events never returns: only a hard stop ends it."""
    nexus = AsyncEventNexus()

    async def handle(event: Event, queue: Any) -> None:
        say(f"ENTERED {event.id}")
        await asyncio.Event().wait()

    nexus.add_handler(1, handle)
    nexus.ingest_nowait(Event(1, 1))
    nexus.ingest_nowait(Event(2, 1))
    return nexus


def slow() -> AsyncEventNexus:
    """A hundred events of 50 ms each: far more than a short drain timeout lets through."""
    nexus = AsyncEventNexus()

    async def handle(event: Event, queue: Any) -> None:
        await asyncio.sleep(0.05)

    nexus.add_handler(1, handle)
    for number in range(100):
        nexus.ingest_nowait(Event(number, 1))
    return nexus


def broken_factory() -> AsyncEventNexus:
    """A factory that fails: the runner exits 1 with its traceback."""
    raise RuntimeError("the database is not reachable")


def returns_nothing() -> None:
    """A factory that forgot to return the nexus."""
    AsyncEventNexus()


def _ready_made() -> AsyncEventNexus:
    nexus = AsyncEventNexus()
    nexus.add_handler(1, lambda event, queue: say(f"HANDLED {event.id} FROM THE MODULE'S NEXUS"))
    nexus.ingest_nowait(Event(1, 1))
    return nexus


#: A target that is a nexus itself, not a factory.
READY_MADE = _ready_made()

NOT_A_FACTORY = 42
