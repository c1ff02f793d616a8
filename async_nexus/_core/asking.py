"""Request/reply on a nexus: what ``nexus.request()`` and ``nexus.reply()`` do.

The correlation of a request with its answer, and the waiters, are
:class:`~async_nexus._core.requests.Requests`'s; this part admits a request at the
request's door (:mod:`~async_nexus._core.admission`) and waits for its answer.
"""

from __future__ import annotations

import asyncio

from ..errors import BadCall
from ..events import Event
from .admission import Admission, Door
from .dispatch import Dispatcher
from .items import HANDLING, require_event
from .requests import Requests, answer_to, timed_out

# Internal: the public face is AsyncEventNexus.request() and reply().
__all__: list[str] = []


class RequestReply:
    """The requests one nexus makes, and the answers its handlers give."""

    __slots__ = ("_requests", "_admission", "_dispatcher")

    def __init__(self, requests: Requests, admission: Admission, dispatcher: Dispatcher) -> None:
        self._requests, self._admission, self._dispatcher = requests, admission, dispatcher

    async def request(self, event: Event, timeout: float) -> Event:
        """Admit ``event`` as a request and return its answer (see ``AsyncEventNexus.request``)."""
        lane = HANDLING.get()
        from_lane = lane is not None and lane[0] is self._dispatcher
        if not from_lane and self._dispatcher.runs_in_this_task():
            # Before any other check: whatever the state, this is the mistake to name.
            raise BadCall(
                f"request() for event {getattr(event, 'id', '?')!r} of type "
                f"{getattr(event, 'type', '?')!r} from a handler or filter that runs in the dispatch "
                "loop would wait for itself: the loop dispatches the request only after this handler "
                "returns. Register the handler with concurrency=N (N >= 2) so it runs beside the "
                "loop, or emit the event and handle the answer in a handler of its own"
            )
        require_event(event, "request() takes")
        request, waiter = self._requests.open(event)
        try:
            # From a concurrent handler the request goes ahead of every event, and is taken
            # even during a drain: the caller never waits for room it holds itself.
            door = Door.URGENT_REQUEST if from_lane else Door.REQUEST
            waiting = self._admission.admit(request, door, reply=self._take_answer, waiter=waiter)

            async def queue_and_wait() -> Event:
                if waiting is not None:
                    await waiting
                return await waiter

            return await asyncio.wait_for(queue_and_wait(), timeout)
        except asyncio.TimeoutError:
            raise timed_out(event, timeout) from None
        finally:
            self._requests.close(request)

    def reply(self, request: Event, answer: Event) -> None:
        """Answer ``request`` while handling it (see ``AsyncEventNexus.reply``)."""
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
            self._admission.admit(answer, Door.LATE_ANSWER)
