"""Events per second through one async handler: ``python benchmarks/single_handler.py``.

A producer coroutine ingests 200,000 events into a nexus with the default ``maxsize``;
the time runs from the first ingest until ``join()`` returns. The full suite against
the peers (issue 4) will live beside it; this is the figure the core is judged by now.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from async_nexus import AsyncEventNexus, Event

EVENTS = 200_000


async def measure() -> float:
    """Return events per second for one run."""
    nexus = AsyncEventNexus()
    handled = 0

    async def handler(event: Event, queue: Any) -> None:
        nonlocal handled
        handled += 1

    nexus.add_handler(1, handler)
    task = nexus.start()
    started = time.perf_counter()
    for i in range(EVENTS):
        await nexus.ingest(Event(i, 1))
    await nexus.join()
    elapsed = time.perf_counter() - started
    nexus.stop()
    await task
    assert handled == EVENTS
    return EVENTS / elapsed


def main() -> None:
    """Print the median of five runs after a warm-up."""
    asyncio.run(measure())
    runs = sorted(asyncio.run(measure()) for _ in range(5))
    print(
        f"one async handler, {EVENTS:,} events: median {runs[2]:,.0f} events/s "
        f"(min {runs[0]:,.0f}, max {runs[-1]:,.0f})"
    )


if __name__ == "__main__":
    main()
