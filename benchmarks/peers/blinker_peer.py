"""blinker: a Signal calls its receivers in the sender's own call (``send_async`` for coroutines)."""

from __future__ import annotations

from importlib.metadata import version as _version
from time import perf_counter
from typing import Any

from blinker import Signal

from async_nexus import Event

from .work import Countdown, Latencies, paced, slow

NAME = "blinker"
UNSUPPORTED = {"routing": "no filters (routes by signal, sender)"}


def version() -> str:
    return _version("blinker")


async def _send_async(n: int, signal: Signal, count: Countdown) -> float:
    send = signal.send_async
    started = perf_counter()
    for i in range(n):
        await send(Event(i, i % 1))
    await count.wait()
    return perf_counter() - started


async def throughput_async(n: int) -> float:
    signal, count = Signal(), Countdown(n)

    async def receiver(event: Event) -> None:
        count.hit()

    signal.connect(receiver)
    return await _send_async(n, signal, count)


async def throughput_sync(n: int) -> float:
    signal, count = Signal(), Countdown(n)

    def receiver(event: Event) -> None:
        count.hit()

    signal.connect(receiver)
    send = signal.send
    started = perf_counter()
    for i in range(n):
        send(Event(i, i % 1))
    await count.wait()
    return perf_counter() - started


async def fanout(n: int, handlers: int) -> float:
    signal, count = Signal(), Countdown(n * handlers)
    receivers = []
    for _ in range(handlers):

        async def receiver(event: Event) -> None:
            count.hit()

        receivers.append(receiver)  # blinker holds receivers weakly
        signal.connect(receiver)
    return await _send_async(n, signal, count)


async def latency(n: int, rate: float) -> dict[str, float]:
    signal, lat = Signal(), Latencies(n)

    async def receiver(event: Event) -> None:
        lat.record(event.payload)

    signal.connect(receiver)

    async def send(i: int) -> None:
        await signal.send_async(Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    return lat.summary()


async def overload(n: int) -> Any:
    signal, count = Signal(), Countdown(n)

    async def receiver(event: Event) -> None:
        await slow(count)

    signal.connect(receiver)
    return await _send_async(n, signal, count)
