"""Dead letters: events whose handling finally failed, kept so they can be seen and replayed.

A nexus keeps each dead letter as a :class:`DeadLetter`: with a journal
(``AsyncEventNexus(journal=...)``), in the journal file, written in the same transaction that
removes the event, so it survives restarts; without one, the last :data:`MEMORY_LIMIT` in
memory, lost when the process ends. :meth:`AsyncEventNexus.dead_letters()
<async_nexus.AsyncEventNexus.dead_letters>` lists them,
:meth:`~async_nexus.AsyncEventNexus.replay_dead_letters` sends them back into the queue, and
:meth:`~async_nexus.AsyncEventNexus.delete_dead_letters` forgets them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .errors import HandlerTimeout, UnhandledEvent
from .events import Event

__all__ = [
    "FAILED",
    "MALFORMED",
    "MEMORY_LIMIT",
    "REPLAYED",
    "TIMEOUT",
    "UNHANDLED",
    "DeadLetter",
    "reason_of",
    "replayed",
]

#: The header a replayed event carries: how many times it has been replayed from the dead
#: letters, as a string (``"1"`` the first time, ``"2"`` if it failed again and was replayed
#: again, ...).
REPLAYED = "replayed"

#: A handler raised on the event, for the last time (after its retries, if it has ``retry=``).
FAILED = "failed"
#: No filter consumed the event and no handler (not even a default one) took it.
UNHANDLED = "unhandled"
#: A handler registered with ``timeout=`` ran longer and was cancelled, for the last time.
TIMEOUT = "timeout"
#: What a transport received could not be read as an event (Redis's ``<stream>:dead`` records).
MALFORMED = "malformed"

#: How many dead letters a nexus without a journal keeps in memory: the newest ones.
MEMORY_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetter:
    """An event whose handling finally failed, with why.

    :param id: the record's id, unique within the nexus's store (the journal's row id, or a
        counter in memory); what :meth:`~async_nexus.AsyncEventNexus.replay_dead_letters` and
        :meth:`~async_nexus.AsyncEventNexus.delete_dead_letters` take.
    :param event: the event as it was when it failed (id, type, priority, payload, headers).
    :param reason: :data:`FAILED`, :data:`UNHANDLED`, :data:`TIMEOUT` or :data:`MALFORMED`.
    :param exception: the exception's type name (``""`` if there was none).
    :param message: ``str()`` of the exception.
    :param attempts: how many times the handler was tried (``1`` without ``retry=``).
    :param handler: the name of the handler that failed, ``None`` if no handler took it.
    :param when: ``time.time()`` when it became a dead letter.
    """

    id: int
    event: Event
    reason: str
    exception: str
    message: str
    attempts: int
    handler: str | None
    when: float

    def as_dict(self) -> dict[str, Any]:
        """Its fields with the event's spread out: what the console's API and
        ``python -m async_nexus dead-letters --json`` show of it.

        The keys are ``id``, ``event_id``, ``type``, ``priority``, ``payload``, ``headers`` (a
        copy), ``reason``, ``exception``, ``message``, ``attempts``, ``handler`` and ``when``.
        """
        event = self.event
        return {
            "id": self.id,
            "event_id": event.id,
            "type": event.type,
            "priority": event.priority,
            "payload": event.payload,
            "headers": dict(event.headers or {}),
            "reason": self.reason,
            "exception": self.exception,
            "message": self.message,
            "attempts": self.attempts,
            "handler": self.handler,
            "when": self.when,
        }


def reason_of(exc: BaseException) -> str:
    """The reason a dead letter made by ``exc`` is kept for."""
    if isinstance(exc, UnhandledEvent):
        return UNHANDLED
    if isinstance(exc, HandlerTimeout):
        return TIMEOUT
    return FAILED


def replayed(event: Event) -> Event:
    """A copy of ``event`` to send back into a queue: same fields, :data:`REPLAYED` counted up."""
    headers = dict(event.headers or {})
    try:
        count = int(headers.get(REPLAYED, "0"))
    except ValueError:
        count = 0
    headers[REPLAYED] = str(count + 1)
    return copy_event(event, headers)


def copy_event(event: Event, headers: dict[str, str] | None) -> Event:
    """``event`` with other ``headers``; named events keep their class."""
    twin = copy.copy(event)
    twin.headers = headers
    return twin
