"""AsyncEventBoundary: carries chosen events from one nexus (event domain) to another."""

from __future__ import annotations

import asyncio
from typing import Any

from .consumers import EventConsumer
from .errors import LoopStopped
from .events import Event, EventFactory
from .sources import EventProducer

__all__ = ["AsyncEventBoundary"]


class AsyncEventBoundary(EventConsumer, EventProducer):
    """A handler in one nexus and a producer in another.

    Register it as a handler in the sending nexus for the types that should cross, and
    as a producer in the receiving nexus::

        boundary = AsyncEventBoundary()
        sender.add_handler(42, boundary)
        receiver.add_producer(boundary)

    It has its own bounded queue (``maxsize``): while it is full, the sending nexus's
    handler waits, so a slow domain slows the one that feeds it instead of growing memory.
    Events are forwarded while the receiving nexus runs; at its graceful stop whatever is
    still in the boundary is handed over and dispatched there.
    """

    def __init__(self, *, maxsize: int = 1024, event_factory: EventFactory | None = None) -> None:
        EventProducer.__init__(self, event_factory)
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._closed = False
        self._stopping = False

    async def handle(self, event: Any, queue: Any) -> None:
        """Take ``event`` across (waiting while the boundary is full).

        :raises LoopStopped: the receiving nexus has stopped, so the event cannot cross.
        """
        if self._closed:
            raise self._gone(event)
        if self._stopping:
            self._hand_over([event])
            return
        await self._queue.put(event)
        if self._stopping:  # room came from the hand-over itself: follow the others
            self._hand_over([])

    def qsize(self) -> int:
        """Events taken from the sending side and not yet handed to the receiving nexus."""
        return self._queue.qsize()

    async def start(self) -> None:
        """Forward events to the receiving nexus until it stops."""
        # Cancellation while waiting for room is safe: the nexus keeps the event it was
        # offered when a graceful stop cancels its sources.
        while True:
            event = await self._queue.get()
            await self.distribute_event(event)

    def _on_stop(self) -> None:
        # The receiving nexus is stopping: what the sending side gave us, and gives us
        # until the receiver has drained, is handed over directly.
        self._stopping = True
        try:
            self._hand_over([])
        except LoopStopped:
            pass

    def _hand_over(self, events: list[Event]) -> None:
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        if not events:
            return
        delivered = False
        for nexus in self.nexuses():
            try:
                for event in events:
                    nexus._accept_forced(event)
                delivered = True
            except LoopStopped:
                continue
        if not delivered:
            raise self._gone(events[0], len(events))

    @staticmethod
    def _gone(event: Event, count: int = 1) -> LoopStopped:
        more = f" (and {count - 1} more)" if count > 1 else ""
        return LoopStopped(
            f"event {event.id!r} of type {event.type!r}{more} cannot cross: the receiving nexus "
            "of this boundary has stopped"
        )

    def close(self) -> None:
        """Called by the receiving nexus once it stopped: refuse further events."""
        self._closed = True
