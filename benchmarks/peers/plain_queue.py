"""What one writes by hand: a bounded asyncio.Queue, a dict of handlers, one consumer task."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from async_nexus import AsyncEventNexus, Event

from .work import FILTERS, Countdown, Latencies, never_matches, paced, slow

NAME = "asyncio.Queue"
UNSUPPORTED: dict[str, str] = {}
#: The same bound as the nexus, so both do the same backpressure work.
MAXSIZE = AsyncEventNexus.QUEUE_MAXLEN


def version() -> str:
    return f"python {sys.version.split()[0]}"


async def _run(n: int, types: int, consume: Callable[..., Any], count: Countdown) -> float:
    queue: asyncio.Queue[Event] = asyncio.Queue(MAXSIZE)
    consumer = asyncio.create_task(consume(queue))
    put = queue.put
    started = perf_counter()
    for i in range(n):
        await put(Event(i, i % types))
    await count.wait()
    elapsed = perf_counter() - started
    consumer.cancel()
    return elapsed


def _awaiting(handlers: dict[Any, Callable[..., Any]]) -> Callable[..., Any]:
    async def consume(queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            await handlers[event.type](event, queue)

    return consume


async def throughput_async(n: int) -> float:
    count = Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    return await _run(n, 1, _awaiting({0: handler}), count)


async def throughput_sync(n: int) -> float:
    count = Countdown(n)

    def handler(event: Event, queue: Any) -> None:
        count.hit()

    handlers: dict[int | str, Callable[[Event, Any], None]] = {0: handler}

    async def consume(queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            handlers[event.type](event, queue)

    return await _run(n, 1, consume, count)


async def routing(n: int, types: int) -> float:
    count = Countdown(n)
    filters = [never_matches() for _ in range(FILTERS)]

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    handlers: dict[int | str, Callable[[Event, Any], Awaitable[None]]] = {t: handler for t in range(types)}

    async def consume(queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            for passes in filters:
                if passes(event, queue):
                    break
            else:
                await handlers[event.type](event, queue)

    return await _run(n, types, consume, count)


async def fanout(n: int, handlers: int) -> float:
    count = Countdown(n * handlers)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    fan: dict[int | str, list[Callable[[Event, Any], Awaitable[None]]]] = {0: [handler] * handlers}

    async def consume(queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            for function in fan[event.type]:
                await function(event, queue)

    return await _run(n, 1, consume, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    lat = Latencies(n)

    async def handler(event: Event, queue: Any) -> None:
        lat.record(event.payload)

    queue: asyncio.Queue[Event] = asyncio.Queue(MAXSIZE)
    consumer = asyncio.create_task(_awaiting({0: handler})(queue))

    async def send(i: int) -> None:
        await queue.put(Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    consumer.cancel()
    return lat.summary()


async def overload(n: int) -> None:
    count = Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        await slow(count)

    await _run(n, 1, _awaiting({0: handler}), count)
