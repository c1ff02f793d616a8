"""Helpers shared by the test modules: a recording handler, a recording error hook, a runner."""

from __future__ import annotations

import asyncio
from typing import Any

from async_nexus import AsyncEventNexus, Event


class Hook:
    """Error hook recording (exception, subject) and signalling the first call."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, Any]] = []
        self.called = asyncio.Event()

    def __call__(self, exc: BaseException, subject: Any, /) -> None:
        self.calls.append((exc, subject))
        self.called.set()


class Collector:
    """A handler collecting events; ``wait(n)`` returns once n events have arrived."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event, queue: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, n: int, timeout: float = 5) -> list[Event]:
        async def until() -> None:
            while len(self.events) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.events


async def run_events(nexus: AsyncEventNexus, *events: Event) -> None:
    """Start ``nexus``, ingest ``events``, wait until they are dispatched, stop it."""
    task = nexus.start()
    for event in events:
        await nexus.ingest(event)
    await asyncio.wait_for(nexus.join(), 5)
    nexus.stop()
    await asyncio.wait_for(task, 5)
