"""What every implementation shares: counting handler calls, pacing a producer, the routing table.

Standard library only: this module also runs in the venv that holds async-nexus 1.0.2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

#: Filters that all pass (return False) in the routing scenario.
FILTERS = 10
#: The inclusive int ranges and the str patterns registered beside the exact types.
RANGES = [(100_000 + k * 1_000, 100_000 + k * 1_000 + 999) for k in range(10)]
PATTERNS = [f"sensor.{k}.*" for k in range(10)]
#: Events per producer step in the latency scenario: small, so an event waits for few others.
BATCH = 10


class Countdown:
    """Handlers call :meth:`hit`; :meth:`wait` returns once ``n`` calls have happened."""

    __slots__ = ("left", "_done")

    def __init__(self, n: int) -> None:
        self.left = n
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hit(self, times: int = 1) -> None:
        self.left -= times
        if not self.left:
            self._done.set_result(None)

    async def wait(self) -> None:
        await self._done


class Latencies(Countdown):
    """A countdown that also records, per event, the time since the stamp it carries."""

    __slots__ = ("samples",)

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.samples: list[float] = []

    def record(self, stamp: float) -> None:
        self.samples.append(perf_counter() - stamp)
        self.hit()

    def summary(self) -> dict[str, float]:
        """p50, p99 and max in microseconds."""
        ordered = sorted(self.samples)
        last = len(ordered) - 1
        return {
            "p50": ordered[last // 2] * 1e6,
            "p99": ordered[int(last * 0.99)] * 1e6,
            "max": ordered[last] * 1e6,
        }


def never_matches() -> Callable[[Any, Any], bool]:
    """A distinct filter function that lets every event pass."""

    def passes(event: Any, queue: Any) -> bool:
        return False

    return passes


async def paced(n: int, rate: float, send: Callable[[int], Awaitable[None]]) -> None:
    """Call ``send(i)`` for ``i < n`` at ``rate`` per second, :data:`BATCH` at a time.

    Each batch waits for its moment on the loop clock; the producer yields at least once
    per batch, so implementations whose emit never yields still get to run handlers.
    """
    loop = asyncio.get_running_loop()
    interval = BATCH / rate
    start = loop.time()
    for step, first in enumerate(range(0, n, BATCH)):
        deadline = start + step * interval
        while True:
            ahead = deadline - loop.time()
            # Sleep coarsely while far ahead (the selector rounds to milliseconds), then spin.
            await asyncio.sleep(ahead - 0.002 if ahead > 0.002 else 0)
            if ahead <= 0:
                break
        for i in range(first, min(first + BATCH, n)):
            await send(i)


async def slow(count: Countdown) -> None:
    """The handler of the overload scenario: it yields to the loop once per event."""
    await asyncio.sleep(0)
    count.hit()


async def waits(count: Countdown, seconds: float) -> None:
    """The handler of scenario 8: it awaits ``seconds``, as a call over the network would."""
    await asyncio.sleep(seconds)
    count.hit()
