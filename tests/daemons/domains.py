"""Two domains joined by a boundary, for tests/test_domains_daemon.py.

``pipeline`` is a runner target (``python -m async_nexus run tests.daemons.domains:pipeline``)
returning ``(back, front)``; ``python -m tests.daemons.domains`` runs the same two with
``async_nexus.run_all``. A producer feeds ``front`` as fast as it takes events; ``front``
sends every one across a boundary to ``back``, whose handler is slower, so at any moment
events wait in each queue and in the boundary. The files named by the environment say what
happened: ``DOMAINS_OFFERED`` (ids about to be offered to ``front``), ``DOMAINS_ACCEPTED``
(ids ``front`` accepted) and ``DOMAINS_HANDLED`` (ids ``back`` handled). ``back`` prints
``HANDLED 100`` on stdout when it has handled a hundred, so a test knows both loops run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, EventProducer, run_all


def _log(variable: str) -> Any:
    return open(os.environ[variable], "a", buffering=1)  # open for the life of the process


class Orders(EventProducer):
    """Offers numbered events for as long as the nexus takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.offered, self.accepted = _log("DOMAINS_OFFERED"), _log("DOMAINS_ACCEPTED")

    async def start(self) -> None:
        number = 0
        while True:
            self.offered.write(f"{number}\n")
            await self.distribute_event(Event(number, "order"))
            self.accepted.write(f"{number}\n")
            number += 1


def pipeline() -> tuple[AsyncEventNexus, AsyncEventNexus]:
    """``(back, front)``: the back domain first, because the front feeds it."""
    back, front = AsyncEventNexus(maxsize=50), AsyncEventNexus(maxsize=50)
    boundary = AsyncEventBoundary(maxsize=16)
    front.add_producer(Orders())
    front.add_handler("order", boundary)
    back.add_producer(boundary)
    handled = _log("DOMAINS_HANDLED")
    count = 0

    async def handle(event: Event, queue: Any) -> None:
        nonlocal count
        await asyncio.sleep(0.001)  # slower than the producer: the queues stay full
        handled.write(f"{event.id}\n")
        count += 1
        if count == 100:
            print("HANDLED 100", flush=True)

    back.add_handler("order", handle)
    return back, front


def named() -> dict[str, AsyncEventNexus]:
    """The same two, named for the logs and metrics."""
    back, front = pipeline()
    return {"back": back, "front": front}


def dying() -> list[AsyncEventNexus]:
    """``[steady, fragile]``: ``fragile`` dies of its third event (fail_fast); ``steady`` has a backlog."""
    steady, fragile = AsyncEventNexus(maxsize=0), AsyncEventNexus(fail_fast=True)

    def count(event: Event, queue: Any) -> None:
        print(f"STEADY {event.id}", flush=True)

    def brittle(event: Event, queue: Any) -> None:
        if event.id == 3:
            raise ValueError("event 3 broke the fragile domain")

    steady.add_handler(1, count)
    fragile.add_handler(1, brittle)
    for number in range(1, 6):
        fragile.ingest_nowait(Event(number, 1))
        steady.ingest_nowait(Event(number, 1))
    return [steady, fragile]


if __name__ == "__main__":
    if sys.argv[1:] == ["dying"]:
        run_all(*dying())
    else:
        run_all(*pipeline())
