"""Helpers shared by the test modules: thin names over :mod:`async_nexus.testing`, and an error hook."""

from __future__ import annotations

import asyncio
from typing import Any

from async_nexus import AsyncEventNexus, Event
from async_nexus.testing import Recorder, feed, running


class Hook:
    """Error hook recording (exception, subject) and signalling the first call."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, Any]] = []
        self.called = asyncio.Event()

    def __call__(self, exc: BaseException, subject: Any, /) -> None:
        self.calls.append((exc, subject))
        self.called.set()


class Collector(Recorder):
    """A handler collecting events; ``wait(n)`` returns once n events have arrived.

    The older name for :class:`async_nexus.testing.Recorder`, kept for the tests that use it.
    """

    async def wait(self, n: int, timeout: float = 5) -> list[Event]:
        await self.wait_for(n, timeout=timeout)
        return self.events


async def run_events(nexus: AsyncEventNexus, *events: Event) -> None:
    """Start ``nexus``, ingest ``events``, wait until they are dispatched, stop it."""
    async with running(nexus):
        await feed(nexus, events)
