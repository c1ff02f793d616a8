"""async-nexus as it is in this tree: the implementation the others are compared with."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

import async_nexus
from async_nexus import AsyncEventNexus, Event, EventFanout

from .work import FILTERS, PATTERNS, RANGES, Countdown, Latencies, never_matches, paced, slow, waits

NAME = "async-nexus"
UNSUPPORTED: dict[str, str] = {}


def version() -> str:
    return f"{async_nexus.__version__} (this tree)"


async def _feed(nexus: AsyncEventNexus, n: int, types: int, count: Countdown) -> float:
    task = nexus.start()
    ingest = nexus.ingest
    started = perf_counter()
    for i in range(n):
        await ingest(Event(i, i % types))
    await count.wait()
    elapsed = perf_counter() - started
    nexus.stop()
    await task
    return elapsed


async def throughput_async(n: int) -> float:
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    nexus.add_handler(0, handler)
    return await _feed(nexus, n, 1, count)


async def throughput_sync(n: int) -> float:
    nexus, count = AsyncEventNexus(), Countdown(n)

    def handler(event: Event, queue: Any) -> None:
        count.hit()

    nexus.add_handler(0, handler)
    return await _feed(nexus, n, 1, count)


async def routing(n: int, types: int) -> float:
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    for _ in range(FILTERS):
        nexus.add_filter(never_matches())
    for event_type in range(types):
        nexus.add_handler(event_type, handler)
    for event_range in RANGES:
        nexus.add_handler(event_range, handler)
    for pattern in PATTERNS:
        nexus.add_handler(pattern, handler)
    return await _feed(nexus, n, types, count)


async def fanout(n: int, handlers: int) -> float:
    nexus, count, fan = AsyncEventNexus(), Countdown(n * handlers), EventFanout()

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    for _ in range(handlers):
        fan.register(handler)
    nexus.add_handler(0, fan)
    return await _feed(nexus, n, 1, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    nexus, lat = AsyncEventNexus(), Latencies(n)

    async def handler(event: Event, queue: Any) -> None:
        lat.record(event.payload)

    nexus.add_handler(0, handler)
    task = nexus.start()

    async def send(i: int) -> None:
        await nexus.ingest(Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    nexus.stop()
    await task
    return lat.summary()


async def overload(n: int) -> None:
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        await slow(count)

    nexus.add_handler(0, handler)
    await _feed(nexus, n, 1, count)


async def io_bound(n: int, sleep: float, concurrency: int, keys: int = 0) -> float:
    """Up to ``concurrency`` handlers at once; with ``keys``, one at a time per ``id % keys``."""
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        await waits(count, sleep)

    if keys:
        nexus.add_handler(0, handler, concurrency=concurrency, key=lambda event: event.id % keys)
    else:
        nexus.add_handler(0, handler, concurrency=concurrency)
    return await _feed(nexus, n, 1, count)


async def io_overload(n: int, sleep: float, concurrency: int) -> None:
    """Ingest ``n`` events as fast as the nexus takes them, then stop it (which drains the rest)."""
    nexus = AsyncEventNexus()

    async def handler(event: Event, queue: Any) -> None:
        await asyncio.sleep(sleep)

    nexus.add_handler(0, handler, concurrency=concurrency)
    task = nexus.start()
    ingest = nexus.ingest
    for i in range(n):
        await ingest(Event(i, 0))
    nexus.stop()
    await task
