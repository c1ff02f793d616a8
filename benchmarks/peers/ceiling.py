"""The ceiling: build each event and await its handler directly; no queue, no task switch."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from async_nexus import Event

from .work import FILTERS, Countdown, Latencies, never_matches, paced, slow

NAME = "ceiling"
UNSUPPORTED: dict[str, str] = {}


def version() -> str:
    return f"python {sys.version.split()[0]}"


async def _call(n: int, types: int, handler: Callable[..., Any], count: Countdown) -> float:
    started = perf_counter()
    for i in range(n):
        await handler(Event(i, i % types), None)
    await count.wait()
    return perf_counter() - started


async def throughput_async(n: int) -> float:
    count = Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    return await _call(n, 1, handler, count)


async def throughput_sync(n: int) -> float:
    count = Countdown(n)

    def handler(event: Event, queue: Any) -> None:
        count.hit()

    started = perf_counter()
    for i in range(n):
        handler(Event(i, i % 1), None)
    await count.wait()
    return perf_counter() - started


async def routing(n: int, types: int) -> float:
    count = Countdown(n)
    filters = [never_matches() for _ in range(FILTERS)]

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    handlers: dict[int | str, Callable[[Event, Any], Awaitable[None]]] = {t: handler for t in range(types)}

    async def route(event: Event, queue: Any) -> None:
        for passes in filters:
            if passes(event, queue):
                return
        await handlers[event.type](event, queue)

    return await _call(n, types, route, count)


async def fanout(n: int, handlers: int) -> float:
    count = Countdown(n * handlers)

    async def handler(event: Event, queue: Any) -> None:
        count.hit()

    fan = [handler] * handlers

    async def each(event: Event, queue: Any) -> None:
        for function in fan:
            await function(event, queue)

    return await _call(n, 1, each, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    lat = Latencies(n)

    async def handler(event: Event, queue: Any) -> None:
        lat.record(event.payload)

    async def send(i: int) -> None:
        await handler(Event(i, 0, 0, perf_counter()), None)

    await paced(n, rate, send)
    await lat.wait()
    return lat.summary()


async def overload(n: int) -> None:
    count = Countdown(n)

    async def handler(event: Event, queue: Any) -> None:
        await slow(count)

    await _call(n, 1, handler, count)
