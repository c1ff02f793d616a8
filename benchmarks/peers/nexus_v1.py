"""async-nexus 1.0.2, the original library from PyPI; runs only in the suite's own venv of it.

There ``ingest()`` dispatches in the producer's own call, and handlers and filters must be
coroutines. The loop task needs a converter, or it ends at once: one that never delivers.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

import async_nexus
from async_nexus import AsyncEventNexus, Event, EventFanout, SimpleEventConverter

from .work import FILTERS, Countdown, Latencies, paced, slow

NAME = "async-nexus 1.0.2"
UNSUPPORTED = {"throughput_sync": "handlers must be coroutines"}


def version() -> str:
    return str(async_nexus.__version__)


class _Idle(SimpleEventConverter):
    async def obtain_event(self) -> Event:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")


async def _started(nexus: AsyncEventNexus) -> None:
    nexus.add_converter(_Idle())
    nexus.start()
    await asyncio.sleep(0)  # the loop task sets the state that ingest() checks


async def _feed(nexus: AsyncEventNexus, n: int, types: int, count: Countdown) -> float:
    await _started(nexus)
    ingest = nexus.ingest
    started = perf_counter()
    for i in range(n):
        await ingest(Event(i, i % types, 0, None))
    await count.wait()
    elapsed = perf_counter() - started
    nexus.stop()
    return elapsed


async def throughput_async(n: int) -> float:
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    nexus.add_handler(0, handler)
    return await _feed(nexus, n, 1, count)


def _async_filter() -> Any:
    async def passes(event: Event, queue: Any) -> bool:
        return False

    return passes


async def routing(n: int, types: int) -> float:
    # No ranges or patterns in 1.0.2: the exact types and the filters only.
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    for _ in range(FILTERS):
        nexus.add_filter(_async_filter())
    for event_type in range(types):
        nexus.add_handler(event_type, handler)
    return await _feed(nexus, n, types, count)


async def fanout(n: int, handlers: int) -> float:
    nexus, count, fan = AsyncEventNexus(), Countdown(n * handlers), EventFanout()
    for _ in range(handlers):
        # 1.0.2 keeps fanout handlers in a set: each must be a distinct object.
        async def handler(event: Event, queue: Any) -> None:
            count.hit()

        fan.register(handler)
    nexus.add_handler(0, fan)
    return await _feed(nexus, n, 1, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    nexus, lat = AsyncEventNexus(), Latencies(n)

    async def handler(event: Event, queue: Any) -> None:
        lat.record(event.payload)

    nexus.add_handler(0, handler)
    await _started(nexus)

    async def send(i: int) -> None:
        await nexus.ingest(Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    nexus.stop()
    return lat.summary()


async def overload(n: int) -> None:
    nexus, count = AsyncEventNexus(), Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        await slow(count)

    nexus.add_handler(0, handler)
    await _feed(nexus, n, 1, count)
