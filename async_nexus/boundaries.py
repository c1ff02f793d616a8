"""AsyncEventBoundary: carries chosen events from one nexus (event domain) to another."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .consumers import EventConsumer
from .errors import LoopStopped
from .events import Event, EventFactory
from .sources import EventProducer

__all__ = ["AsyncEventBoundary"]

_logger = logging.getLogger("async_nexus")

# An event that crossed, with where the answers go if it is a request.
_Crossing = tuple[Event, Callable[[Event], object] | None]


class AsyncEventBoundary(EventConsumer, EventProducer):
    """A handler in one nexus and a producer in another.

    Register it as a handler in the sending nexus for the types that should cross, and
    as a producer in the receiving nexus::

        boundary = AsyncEventBoundary()
        sender.add_handler(42, boundary)
        receiver.add_producer(boundary)

    It has its own bounded queue (``maxsize``, by default :attr:`QUEUE_MAXLEN`): while it
    is full, the sending nexus's handler waits, so a slow domain slows the one that feeds it
    instead of growing memory.
    Events are forwarded while the receiving nexus runs; at its graceful stop whatever is
    still in the boundary is handed over and dispatched there. Events that can no longer
    cross are never dropped in silence: one refused by :meth:`handle` raises into the
    sending nexus (its error hook sees it); what the boundary holds when the receiving
    nexus stops and no longer takes it reaches that nexus's error hook, with how many
    events were lost; and what it held at a hard stop of the receiver is logged as an
    error on the ``async_nexus`` logger.

    A request (:meth:`AsyncEventNexus.request`) crosses with its way back: the event that
    a handler on the receiving side returns for it is the answer the sender gets. A
    second boundary the other way makes a two-way link for ordinary events.
    """

    #: The bound used when ``maxsize`` is not given; a subclass may set its own, as in 1.0.
    #: A compatibility alias kept from async-nexus 1.0 (where it was 50).
    QUEUE_MAXLEN = 1024

    def __init__(self, *, maxsize: int | None = None, event_factory: EventFactory | None = None) -> None:
        EventProducer.__init__(self, event_factory)
        self._queue: asyncio.Queue[_Crossing] = asyncio.Queue(
            self.QUEUE_MAXLEN if maxsize is None else maxsize
        )
        self._closed = False
        self._stopping = False

    async def handle(self, event: Any, queue: Any) -> None:
        """Take ``event`` across (waiting while the boundary is full).

        :raises LoopStopped: the receiving nexus has stopped, so the event cannot cross.
        """
        if self._closed:
            raise self._gone(event)
        # A handler's queue knows where answers go if the event is a request; a plain
        # asyncio.Queue, as 1.0 programs passed, does not.
        find_route = getattr(queue, "reply_route", None)
        crossing = (event, find_route(event) if find_route is not None else None)
        if self._stopping:
            self._hand_over([crossing])
            return
        await self._queue.put(crossing)
        if self._stopping or self._closed:  # room came from the hand-over or the close
            self._hand_over([])

    def qsize(self) -> int:
        """Events taken from the sending side and not yet handed to the receiving nexus."""
        return self._queue.qsize()

    async def start(self) -> None:
        """Forward events to the receiving nexus until it stops: :meth:`transfer_events`."""
        await self.transfer_events()

    async def transfer_events(self) -> None:
        """Forward events to the receiving nexus, for ever; :meth:`start` runs it.

        Kept from async-nexus 1.0, where ``start()`` ran it in a task of its own.
        """
        # Cancellation while waiting for room is safe: the nexus keeps the event it was
        # offered when a graceful stop cancels its sources.
        while True:
            event, reply = await self._queue.get()
            await self.distribute_event(event, reply=reply)

    def on_stopping(self) -> None:
        """The receiving nexus is stopping: hand over what the sending side gave us.

        From now until the receiver has drained, what crosses is handed over directly.
        """
        self._stopping = True
        self._hand_over([])

    def _hand_over(self, crossings: list[_Crossing]) -> None:
        while not self._queue.empty():
            crossings.append(self._queue.get_nowait())
        if not crossings:
            return
        refused = [(event, reply) for event, reply in crossings if not self.hand_over(event, reply=reply)]
        if refused:
            raise self._gone(refused[0][0], len(refused))

    @staticmethod
    def _gone(event: Event, count: int = 1) -> LoopStopped:
        more = f" (and {count - 1} more)" if count > 1 else ""
        return LoopStopped(
            f"event {event.id!r} of type {event.type!r}{more} cannot cross: the receiving nexus "
            "of this boundary has stopped. Stop the sending nexus first (run_all() and "
            "NexusGroup stop the nexuses in reverse order: list the receiving one first)"
        )

    def _log_lost(self, exc: LoopStopped) -> None:
        _logger.error("async_nexus: %s: events were lost: %s", self.name, exc)

    def close(self) -> None:
        """Called by the receiving nexus once it stopped: refuse further events.

        Events still held (the receiving nexus was cancelled, a hard stop, before it took
        them) are lost: they are logged as an error with their number, never dropped in
        silence, and senders waiting for room are woken to be refused.
        """
        self._closed = True
        left: list[_Crossing] = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            self._log_lost(self._gone(left[0][0], len(left)))
