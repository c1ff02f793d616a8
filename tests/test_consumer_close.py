"""A graceful stop closes the consumers registered with the nexus, after the drain."""

from __future__ import annotations

import asyncio
from typing import Any

from support import Hook

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, EventConsumer, EventFanout


class Buffering(EventConsumer):
    """Keeps what it is handed until it is closed, then 'writes' it."""

    def __init__(self, log: list[str], name: str = "buffer") -> None:
        self.log, self.name = log, name
        self.buffer: list[int] = []
        self.written: list[int] = []

    async def handle(self, event: Any, queue: Any) -> None:
        self.buffer.append(event.id)

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.written, self.buffer = self.written + self.buffer, []
        self.log.append(f"closed {self.name}")


async def test_graceful_stop_closes_consumers_after_the_last_event() -> None:
    log: list[str] = []
    consumer = Buffering(log)
    nexus = AsyncEventNexus()
    nexus.add_handler("a", consumer)
    nexus.add_handler("b", consumer)  # registered twice: closed once
    nexus.add_handler(-1, lambda e, q: log.append(f"handled {e.id}"))
    async with nexus:
        for i in range(3):
            await nexus.ingest(Event(i, "a"))
        await nexus.ingest(Event(9, "other"))
    assert consumer.written == [0, 1, 2]
    assert log == ["handled 9", "closed buffer"]


async def test_a_fanout_closes_its_consumers_and_a_boundary_is_left_to_its_receiver() -> None:
    log: list[str] = []
    first, second = Buffering(log, "first"), Buffering(log, "second")
    fanout = EventFanout()
    fanout.register(first)
    fanout.register(lambda e, q: None)
    fanout.register(second)
    boundary = AsyncEventBoundary()
    receiver = AsyncEventNexus()
    receiver.add_producer(boundary)
    crossed: list[int] = []
    receiver.add_handler("x", lambda e, q: crossed.append(e.id))
    sender = AsyncEventNexus()
    sender.add_handler("f", fanout)
    sender.add_handler("x", boundary)
    async with receiver:
        async with sender:
            await sender.ingest(Event(1, "f"))
            await sender.ingest(Event(2, "x"))
        assert log == ["closed first", "closed second"]
        # The sending side stopped; the boundary still carries what it took.
        await asyncio.wait_for(receiver.join(), 5)
    assert crossed == [2]


async def test_a_close_that_fails_or_overruns_the_drain_timeout_is_reported() -> None:
    class Broken(EventConsumer):
        def handle(self, event: Any, queue: Any) -> None:
            pass

        def close(self) -> None:
            raise OSError("disk gone")

    class Stuck(EventConsumer):
        def handle(self, event: Any, queue: Any) -> None:
            pass

        async def close(self) -> None:
            await asyncio.get_running_loop().create_future()

    hook = Hook()
    nexus = AsyncEventNexus(drain_timeout=0.2)
    nexus.on_error(hook)
    broken, stuck = Broken(), Stuck()
    nexus.add_handler("a", broken)
    nexus.add_handler("b", stuck)
    async with nexus:
        pass
    assert [(type(exc), subject) for exc, subject in hook.calls] == [(OSError, broken), (TimeoutError, stuck)]
    assert "did not finish within the drain timeout" in str(hook.calls[1][0])
