"""aiopubsub: a Hub routes by hierarchic Key; async listeners read their own unbounded queue."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version as _version
from time import perf_counter
from typing import Any

import aiopubsub

from async_nexus import Event

from .work import Countdown, Latencies, paced, slow

NAME = "aiopubsub"
UNSUPPORTED = {"routing": "no filters (routes by key, wildcards)"}
KEY = aiopubsub.Key("tick")


def version() -> str:
    return _version("aiopubsub")


def _parts() -> tuple[aiopubsub.Publisher, aiopubsub.Subscriber]:
    hub = aiopubsub.Hub()
    return aiopubsub.Publisher(hub, prefix=aiopubsub.Key("bench")), aiopubsub.Subscriber(hub, "bench")


async def _publish(n: int, publisher: aiopubsub.Publisher, count: Countdown, sub: Any) -> float:
    publish = publisher.publish
    started = perf_counter()
    for i in range(n):
        publish(KEY, Event(i, i % 1))
    await count.wait()
    elapsed = perf_counter() - started
    await sub.remove_all_listeners()
    return elapsed


def _listen(sub: aiopubsub.Subscriber, receiver: Callable[..., Any], is_async: bool = True) -> None:
    key = aiopubsub.Key("bench", "tick")
    if is_async:
        sub.add_async_listener(key, receiver)
    else:
        sub.add_sync_listener(key, receiver)


async def throughput_async(n: int) -> float:
    (publisher, sub), count = _parts(), Countdown(n)

    async def receiver(key: aiopubsub.Key, event: Event) -> None:
        count.hit()

    _listen(sub, receiver)
    return await _publish(n, publisher, count, sub)


async def throughput_sync(n: int) -> float:
    (publisher, sub), count = _parts(), Countdown(n)

    def receiver(key: aiopubsub.Key, event: Event) -> None:
        count.hit()

    _listen(sub, receiver, is_async=False)
    return await _publish(n, publisher, count, sub)


async def fanout(n: int, handlers: int) -> float:
    (publisher, sub), count = _parts(), Countdown(n * handlers)
    for _ in range(handlers):

        async def receiver(key: aiopubsub.Key, event: Event) -> None:
            count.hit()

        _listen(sub, receiver)
    return await _publish(n, publisher, count, sub)


async def latency(n: int, rate: float) -> dict[str, float]:
    (publisher, sub), lat = _parts(), Latencies(n)

    async def receiver(key: aiopubsub.Key, event: Event) -> None:
        lat.record(event.payload)

    _listen(sub, receiver)

    async def send(i: int) -> None:
        publisher.publish(KEY, Event(i, 0, 0, perf_counter()))

    await paced(n, rate, send)
    await lat.wait()
    await sub.remove_all_listeners()
    return lat.summary()


async def overload(n: int) -> Any:
    (publisher, sub), count = _parts(), Countdown(n)

    async def receiver(key: aiopubsub.Key, event: Event) -> None:
        await slow(count)

    _listen(sub, receiver)
    return await _publish(n, publisher, count, sub)
