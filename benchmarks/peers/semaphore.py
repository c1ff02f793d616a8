"""What one writes by hand for handlers that wait on I/O: an asyncio.Semaphore, a task per event.

Only scenario 8 measures it. The producer acquires the semaphore before it starts each
task, and the task releases it when its handler returns: at most ``concurrency`` handlers
run at once, and the producer waits for room, as a nexus's dispatch loop does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from time import perf_counter

from async_nexus import Event

from .work import Countdown, waits

NAME = "asyncio.Semaphore"
UNSUPPORTED: dict[str, str] = {}


def version() -> str:
    return f"python {sys.version.split()[0]}"


async def _spawn(n: int, concurrency: int, handler: Callable[[Event], Awaitable[None]]) -> None:
    """Start a task per event, at most ``concurrency`` at once; returns once all are started."""
    room = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def handle(event: Event) -> None:
        try:
            await handler(event)
        finally:
            room.release()

    for i in range(n):
        await room.acquire()
        task = asyncio.create_task(handle(Event(i, 0)))
        running.add(task)
        task.add_done_callback(running.discard)


async def io_bound(n: int, sleep: float, concurrency: int) -> float:
    count = Countdown(n)

    async def handler(event: Event) -> None:
        await waits(count, sleep)

    started = perf_counter()
    await _spawn(n, concurrency, handler)
    await count.wait()
    return perf_counter() - started


async def io_overload(n: int, sleep: float, concurrency: int) -> None:
    count = Countdown(n)

    async def handler(event: Event) -> None:
        await waits(count, sleep)

    await _spawn(n, concurrency, handler)
    await count.wait()
