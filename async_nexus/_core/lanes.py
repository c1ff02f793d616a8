"""Lanes: where a handler registered with ``concurrency=N`` runs, beside the loop.

A :class:`Lane` holds at most N events at once: those being handled and those waiting
behind a busy key together. The dispatch loop hands it an event only when it has room
(:meth:`~async_nexus._core.routing.Route.lanes_full`), so a full lane holds
the loop, the loop holds the queue, and the queue holds the producers: backpressure
reaches the sources as it does for a handler that runs in the loop.

Each event gets a task of its own. With ``key=``, the task of an event whose key is busy
first waits for the task of the previous event of that key, so events of one key are
handled one at a time, in the order the loop dispatched them, and different keys side
by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from ..errors import BadCall
from ..events import Event
from .dispatch import Dispatcher
from .items import HANDLING, HandlerQueue, Item
from .routing import Route

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []

#: ``key(event) -> hashable``: events with equal keys are handled one at a time, in order.
KeyFunction = Callable[[Event], Hashable]


def check_concurrency(concurrency: object, key: object) -> None:
    """Refuse a ``concurrency``/``key`` pair that cannot work, saying why."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise BadCall(
            f"concurrency must be an int >= 1 (how many events of this registration are handled "
            f"at once; 1 runs them one at a time in the loop), got {concurrency!r}"
        )
    if key is not None:
        if not callable(key):
            raise BadCall(
                f"key must be a function key(event) -> hashable (events with equal keys are "
                f"handled one at a time, in order), got {key!r} of type {type(key).__qualname__}"
            )
        if concurrency == 1:
            raise BadCall(
                "key= orders events among handlers running side by side, and concurrency=1 runs "
                "them one at a time already; give concurrency=N (N >= 2) with key=, or drop key="
            )


class Lane:
    """One registration's handler, run in tasks beside the loop; up to ``limit`` events held."""

    __slots__ = ("dispatcher", "queue", "handler", "function", "is_async", "limit", "key", "held", "tails")

    def __init__(
        self,
        dispatcher: Dispatcher,
        queue: HandlerQueue,
        handler: object,
        function: Callable[..., Any],
        is_async: bool,
        *,
        limit: int,
        key: KeyFunction | None,
    ) -> None:
        self.dispatcher = dispatcher
        self.queue = queue  # what the handler gets as its queue
        self.handler = handler  # what was registered, for messages
        self.function, self.is_async = function, is_async
        self.limit, self.key = limit, key
        #: Events this lane holds: being handled, or waiting behind a busy key.
        self.held = 0
        #: The task of the last event of each busy key.
        self.tails: dict[Hashable, asyncio.Task[None]] = {}

    def __call__(self, event: Event, item: Item | None, route: Route) -> None:
        """Take ``event`` (the loop made sure there is room) and start handling it.

        ``item`` is ``None`` for a bare event that nothing waits for (no acknowledgement,
        answer or span).

        :raises Exception: whatever the key function raised, or :class:`TypeError` for a
            key that is not hashable; the event was not taken.
        """
        key: Hashable = None
        previous = None
        if self.key is not None:
            key = self.key(event)
            previous = self.tails.get(key)  # an unhashable key raises here, before anything changed
        self.held += 1
        route.in_flight += 1
        if item is not None:
            item.holders += 1
        task = asyncio.create_task(self._handle(event, item, previous))
        self.dispatcher.lane_started(task)
        # A callback, not ``finally``: a task cancelled before its first step runs no code.
        task.add_done_callback(lambda task: self._settle(task, route, key))
        if self.key is not None:
            self.tails[key] = task

    async def _handle(self, event: Event, item: Item | None, previous: asyncio.Task[None] | None) -> None:
        dispatcher = self.dispatcher
        HANDLING.set((dispatcher, item))
        if previous is not None and not previous.done():
            await asyncio.wait((previous,))  # order within a key; its outcome is its own
        try:
            result = self.function(event, self.queue)
            if self.is_async:
                result = await result
            if result is not None:
                await dispatcher.emit_result(result, item)
        except Exception as exc:
            await dispatcher.fail_in_lane(exc, event, item, self)
        # Only when the handler ran to its end: an event whose handler was cancelled (a
        # hard stop) was not handled, so nothing that follows a dispatch (an ack) happens.
        if item is not None:
            await dispatcher.release(item)

    def _settle(self, task: asyncio.Task[None], route: Route, key: Hashable) -> None:
        self.held -= 1
        route.in_flight -= 1
        if self.key is not None and self.tails.get(key) is task:
            del self.tails[key]
        self.dispatcher.lane_finished(task)

    def __repr__(self) -> str:
        return f"<Lane of {self.handler!r}: {self.held} of {self.limit} held>"
