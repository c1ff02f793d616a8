"""pyventus: an EventLinker holds the subscribers; the AsyncIO emitter runs each emission as a task."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version as _version
from time import perf_counter
from typing import Any

from pyventus.events import AsyncIOEventEmitter, EventEmitter, EventLinker

from async_nexus import Event

from .work import Countdown, Latencies, paced, slow

NAME = "pyventus"
UNSUPPORTED = {"routing": "no filters (routes by event name)"}


def version() -> str:
    return _version("pyventus")


def _emitter(*callbacks: Callable[..., Any]) -> EventEmitter:
    # A linker class of its own: pyventus keeps subscribers on the class, not on an instance.
    class Linker(EventLinker, debug=False):  # type: ignore[misc,call-arg]  # pyventus is untyped
        pass

    for callback in callbacks:
        Linker.subscribe("tick", event_callback=callback)
    return AsyncIOEventEmitter(event_linker=Linker, debug=False)


async def _emit(n: int, emitter: EventEmitter, count: Countdown) -> float:
    emit = emitter.emit
    started = perf_counter()
    for i in range(n):
        emit("tick", Event(i, i % 1))
    await count.wait()
    return perf_counter() - started


async def throughput_async(n: int) -> float:
    count = Countdown(n)

    async def handler(event: Event) -> None:
        count.hit()

    return await _emit(n, _emitter(handler), count)


async def throughput_sync(n: int) -> float:
    count = Countdown(n)

    def handler(event: Event) -> None:
        count.hit()

    return await _emit(n, _emitter(handler), count)


async def fanout(n: int, handlers: int) -> float:
    count = Countdown(n * handlers)
    receivers = []
    for _ in range(handlers):

        async def handler(event: Event) -> None:
            count.hit()

        receivers.append(handler)
    return await _emit(n, _emitter(*receivers), count)


async def latency(n: int, rate: float) -> dict[str, float]:
    lat = Latencies(n)

    async def handler(event: Event) -> None:
        lat.record(event.payload)

    emitter = _emitter(handler)

    async def send(i: int) -> None:
        emitter.emit("tick", Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    return lat.summary()


async def overload(n: int) -> Any:
    count = Countdown(n)

    async def handler(event: Event) -> None:
        await slow(count)

    return await _emit(n, _emitter(handler), count)
