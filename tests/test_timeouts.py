"""add_handler(..., timeout=): a handler that runs longer is cancelled and fails with HandlerTimeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventNexus, Event, errors
from async_nexus.testing import Recorder


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_a_handler_that_runs_longer_is_cancelled_and_reported(concurrency: int) -> None:
    hook = Hook()
    cancelled: list[int] = []
    after = Recorder()

    async def slow(event: Event, queue: Any) -> None:
        if event.id == 1:
            try:
                await asyncio.get_running_loop().create_future()  # never returns on its own
            except asyncio.CancelledError:
                cancelled.append(event.id)
                raise

    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("job", slow, concurrency=concurrency, timeout=0.05)
    nexus.add_handler("next", after)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.ingest(Event(2, "job"))
        await nexus.ingest(Event(3, "next"))
        await asyncio.wait_for(hook.called.wait(), 5)
        await after.wait_for(1)
        await asyncio.wait_for(nexus.join(), 5)
        stats = nexus.stats()["by_type"]["job"]
    ((exc, subject),) = hook.calls
    assert isinstance(exc, errors.HandlerTimeout) and isinstance(exc, TimeoutError)
    assert "ran longer than timeout=0.05s on event 1 of type 'job'" in str(exc)
    assert subject.id == 1
    assert cancelled == [1]
    assert stats["failed"] == 1 and stats["dispatched"] == 2


async def test_a_handler_within_its_timeout_returns_as_usual() -> None:
    nexus = AsyncEventNexus()

    @nexus.on("sum?", timeout=5)
    async def add(event: Event, queue: Any) -> Event:
        return Event(0, "sum", 0, sum(event.payload))

    async with nexus:
        answer = await nexus.request(Event(1, "sum?", 0, [1, 2]))
    assert answer.payload == 3


@pytest.mark.parametrize("timeout", [0, -1, "1", True])
def test_a_bad_timeout_is_refused(timeout: Any) -> None:
    async def handler(event: Event, queue: Any) -> None:
        pass

    with pytest.raises(errors.BadCall, match="timeout must be a number of seconds > 0"):
        AsyncEventNexus().add_handler(1, handler, timeout=timeout)


def test_a_timeout_on_a_plain_function_is_refused_with_the_reason() -> None:
    with pytest.raises(errors.BadCall, match="cannot be cut off; make it `async def`"):
        AsyncEventNexus().add_handler(1, lambda e, q: None, timeout=1)
