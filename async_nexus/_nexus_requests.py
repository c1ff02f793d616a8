"""Request/reply on a nexus: :meth:`~NexusRequests.request` and :meth:`~NexusRequests.reply`.

Private: :class:`NexusRequests` is a part of :class:`~async_nexus.AsyncEventNexus`, which is
where these methods are documented and used. The correlation of a request with its answer,
and the waiters, are :mod:`~async_nexus.requests`'s; this part puts a request through the
nexus's queue, dispatcher and journal.
"""

from __future__ import annotations

import asyncio

from .errors import BadCall
from .events import Event
from .intake import NexusIntake
from .items import HANDLING, URGENT, Item, require_event
from .requests import answer_to, timed_out

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []


class NexusRequests(NexusIntake):
    """The request/reply part of :class:`~async_nexus.AsyncEventNexus`."""

    __slots__ = ()

    async def request(self, event: Event, *, timeout: float = 10.0) -> Event:
        """Dispatch ``event`` as a request and return the answer.

        The answer is the event that a handler of the request returns (or passes to
        :meth:`reply`), here or in another domain: across a boundary or a transport, the
        request carries a ``correlation-id`` header and the answer comes back with it in
        ``in-reply-to``. ``event`` itself is not changed; a copy with the header is sent.

        From a concurrent handler (``concurrency=N``) the request goes ahead of every
        queued event and is taken even by a full registration: the caller never waits for
        room it holds. From a handler that runs in the loop it raises :class:`BadCall`.

        >>> async def main():
        ...     async with AsyncEventNexus() as nexus:
        ...         nexus.add_handler("sum?", lambda e, q: Event(0, "sum", 0, sum(e.payload)))
        ...         answer = await nexus.request(Event(1, "sum?", 0, [1, 2, 3]))
        ...         print(answer.payload)
        >>> asyncio.run(main())
        6

        :raises RequestTimeout: no answer came within ``timeout`` seconds; nothing waits
            for it any more, and a late answer is dispatched like any other event.
        :raises BadCall: called from a handler or filter that runs in the loop.
        :raises Exception: whatever a handler of the request in this nexus raised, or
            :class:`~async_nexus.errors.UnhandledEvent` if no handler took it here (the
            error hook sees it too).
        """
        lane = HANDLING.get()
        from_lane = lane is not None and lane[0] is self._dispatcher
        # A handler in flight during a graceful stop may still ask: the drain answers it.
        if not self._accepting and not (from_lane and not self._dispatcher.halted):
            raise self._refusal("request() refused")
        require_event(event, "request() takes")
        if not from_lane and self._task is not None and asyncio.current_task() is self._task:
            raise BadCall(
                f"request() for event {event.id!r} of type {event.type!r} from a handler or filter "
                "that runs in the dispatch loop would wait for itself: the loop dispatches the "
                "request only after this handler returns. Register the handler with "
                "concurrency=N (N >= 2) so it runs beside the loop, or emit the event and handle "
                "the answer in a handler of its own"
            )
        request, waiter = self._requests.open(event)
        keeper = self._keeper
        if keeper is None:
            item = Item(request, 0, self._take_answer, None, waiter)
        else:
            item = keeper.item(request, keeper.keep(request), 0, self._take_answer, None, None, waiter)

        async def send_and_wait() -> Event:
            if from_lane:
                item.urgent = True
                self._queue.put_forced(item, URGENT)
                self._dispatcher.nudge()
            else:
                await self._queue.put(item, request.priority)
            return await waiter

        try:
            return await asyncio.wait_for(send_and_wait(), timeout)
        except asyncio.TimeoutError:
            raise timed_out(event, timeout) from None
        finally:
            self._requests.close(request)

    def reply(self, request: Event, answer: Event) -> None:
        """Answer ``request`` while handling it, instead of (or besides) returning ``answer``.

        :raises BadCall: ``request`` is not a request that this nexus is dispatching now.
        """
        require_event(answer, "reply() answers with")
        current = self._dispatcher.handling()
        if current is None or current.event is not request or current.reply is None:
            raise BadCall(
                f"reply() to event {request.id!r} of type {request.type!r}, which is not a request "
                "being handled now; call reply() from the handler of a request, before it returns"
            )
        current.reply(answer_to(request, answer))

    def _take_answer(self, answer: Event) -> None:
        """The reply route of this nexus's own requests."""
        if not self._requests.answer(answer):
            # Too late, or a second answer: dispatched like any event, so it is not lost.
            self._accept_forced(answer)
