"""Request/reply: the correlation of a request with its answer, and the waiters.

A request is an event with a ``correlation-id`` header; its answer is any event that
carries that id in ``in-reply-to``. The nexus keeps one :class:`Requests` table: a
waiter (a future) per open request, resolved by the first answer that arrives, however
it arrives: returned by a handler here, passed back across a boundary, or delivered by
a transport as an ordinary event.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import secrets

from ..errors import RequestTimeout
from ..events import CORRELATION_ID, IN_REPLY_TO, Event

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []


class Requests:
    """The open requests of one nexus, by correlation id."""

    __slots__ = ("waiters", "_ids")

    def __init__(self) -> None:
        #: ``correlation id -> future`` of every request still waiting for its answer.
        self.waiters: dict[str, asyncio.Future[Event]] = {}
        self._ids = (f"{secrets.token_hex(6)}-{n}" for n in itertools.count(1))

    def open(self, event: Event) -> tuple[Event, asyncio.Future[Event]]:
        """A copy of ``event`` that carries a new correlation id, and the future of its answer."""
        correlation = next(self._ids)
        request = copy.copy(event)
        request.headers = {**(event.headers or {}), CORRELATION_ID: correlation}
        waiter: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self.waiters[correlation] = waiter
        return request, waiter

    def close(self, request: Event) -> None:
        """Forget ``request``: answered, timed out or abandoned."""
        self.waiters.pop((request.headers or {}).get(CORRELATION_ID, ""), None)

    def answer(self, event: Event) -> bool:
        """Hand ``event`` to the request waiting for it, if it answers one; true if it did."""
        headers = event.headers
        if not headers:
            return False
        waiter = self.waiters.get(headers.get(IN_REPLY_TO, ""))
        if waiter is None or waiter.done():
            return False
        waiter.set_result(event)
        return True


def answer_to(request: Event, answer: Event) -> Event:
    """A copy of ``answer`` that says which request it answers."""
    correlation = (request.headers or {}).get(CORRELATION_ID)
    if correlation is None:
        return answer
    answer = copy.copy(answer)
    answer.headers = {**(answer.headers or {}), IN_REPLY_TO: correlation}
    return answer


def timed_out(event: Event, timeout: float) -> RequestTimeout:
    """The error of a request that got no answer, naming the causes we know of."""
    return RequestTimeout(
        f"no answer to request {event.id!r} of type {event.type!r} within {timeout} s. Either no "
        "handler of that type (here or across a boundary or transport) returned an Event or called "
        "nexus.reply(request, answer); or the answering side is slow or gone; or the handler that "
        "would answer waits, directly or not, for the one that asked: for instance a request to a "
        "keyed registration (key=) with the caller's own key, which runs only after the caller "
        "returns"
    )
