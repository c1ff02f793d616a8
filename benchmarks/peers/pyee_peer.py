"""pyee's AsyncIOEventEmitter: ``emit`` calls sync listeners and schedules coroutine ones as tasks."""

from __future__ import annotations

from importlib.metadata import version as _version
from time import perf_counter
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from async_nexus import Event

from .work import Countdown, Latencies, paced, slow, waits

NAME = "pyee"
UNSUPPORTED = {"routing": "no filters (routes by event name)"}


def version() -> str:
    return _version("pyee")


async def _emit(n: int, emitter: AsyncIOEventEmitter, count: Countdown) -> float:
    emit = emitter.emit
    started = perf_counter()
    for i in range(n):
        emit("tick", Event(i, i % 1))
    await count.wait()
    return perf_counter() - started


async def throughput_async(n: int) -> float:
    emitter, count = AsyncIOEventEmitter(), Countdown(n)

    @emitter.on("tick")
    async def handler(event: Event) -> None:
        count.hit()

    return await _emit(n, emitter, count)


async def throughput_sync(n: int) -> float:
    emitter, count = AsyncIOEventEmitter(), Countdown(n)

    @emitter.on("tick")
    def handler(event: Event) -> None:
        count.hit()

    return await _emit(n, emitter, count)


async def fanout(n: int, handlers: int) -> float:
    emitter, count = AsyncIOEventEmitter(), Countdown(n * handlers)
    for _ in range(handlers):

        async def handler(event: Event) -> None:
            count.hit()

        emitter.on("tick", handler)
    return await _emit(n, emitter, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    emitter, lat = AsyncIOEventEmitter(), Latencies(n)

    @emitter.on("tick")
    async def handler(event: Event) -> None:
        lat.record(event.payload)

    async def send(i: int) -> None:
        emitter.emit("tick", Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    return lat.summary()


async def overload(n: int) -> Any:
    emitter, count = AsyncIOEventEmitter(), Countdown(n)

    @emitter.on("tick")
    async def handler(event: Event) -> None:
        await slow(count)

    return await _emit(n, emitter, count)


async def io_bound(n: int, sleep: float, concurrency: int) -> float:
    """``concurrency`` is not applied: pyee has no limit, every event is a task at once."""
    emitter, count = AsyncIOEventEmitter(), Countdown(n)

    @emitter.on("tick")
    async def handler(event: Event) -> None:
        await waits(count, sleep)

    return await _emit(n, emitter, count)


async def io_overload(n: int, sleep: float, concurrency: int) -> Any:
    return await io_bound(n, sleep, concurrency)
