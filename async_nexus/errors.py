"""The exceptions of Async Nexus.

Every misuse of the API is a :class:`BadCall`, so ``except BadCall`` catches them all.
Failures that happen *inside* a running nexus (a handler raising, an unhandled event, a
source failing) are not raised at the caller: they reach the nexus's error hook
(:meth:`async_nexus.AsyncEventNexus.on_error`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event

__all__ = [
    "AsyncNexusError",
    "BadCall",
    "BadValue",
    "BadType",
    "NotRegistered",
    "AlreadyRegistered",
    "InvalidLoopState",
    "LoopAlreadyStarted",
    "LoopStopped",
    "MisconfiguredEventConsumer",
    "MisconfiguredEventProducer",
    "MultipleStart",
    "NoMoreEvents",
    "NotAnEvent",
    "QueueFull",
    "RequestTimeout",
    "HandlerTimeout",
    "RunawayChain",
    "FanoutFailed",
    "UnhandledEvent",
    "DecodeError",
    "JournalError",
    "JournalCorrupt",
    "JournalLocked",
    "JournalFull",
]


class AsyncNexusError(Exception):
    """Base class of every exception defined by Async Nexus."""


class NoMoreEvents(AsyncNexusError):
    """Raised by a converter's ``obtain_event()`` when it has nothing more to give.

    The nexus retires that converter (and closes it) and keeps running.
    """


class UnhandledEvent(AsyncNexusError):
    """An event that no filter consumed and no handler (not even a default one) matched.

    It is reported to the error hook, never raised into the code that ingested the event.
    The event is kept in :attr:`event`.
    """

    def __init__(self, message: str, event: Event | None = None) -> None:
        super().__init__(message)
        self.event = event


class BadCall(AsyncNexusError):
    """A method was called wrongly: bad arguments, or the wrong moment in the lifecycle."""


class BadValue(BadCall, ValueError):
    """An argument has the right type but a value the call cannot take (a negative delay, say).

    It is also a :class:`ValueError`, which is what such calls raised before.
    """


class BadType(BadCall, TypeError):
    """An argument is of a type the call does not take.

    It is also a :class:`TypeError`, which is what such calls raised before.
    """


class NotRegistered(BadCall, LookupError):
    """The handler, filter or source to remove is not registered there.

    It is also a :class:`LookupError`, which is what such calls raised before.
    """


class AlreadyRegistered(BadCall, LookupError):
    """A second handler for one event type, on a nexus made without ``multiple=True``.

    It is also a :class:`LookupError`, as the guide says. Create the nexus with
    ``AsyncEventNexus(multiple=True)`` to run several handlers per type.
    """


class MisconfiguredEventProducer(BadCall):
    """A producer was used in a way its configuration does not allow.

    For example it distributed an event before being registered with any nexus, or it
    asked for its ``event_factory`` when none was given.
    """


class MisconfiguredEventConsumer(BadCall, TypeError):
    """A handler, filter or consumer cannot be called as ``handler(event, queue)``.

    Raised at registration, never per event. It is also a :class:`TypeError`.
    """


class NotAnEvent(BadCall, TypeError):
    """Something that is not an :class:`~async_nexus.Event` was given where an event is needed."""


class MultipleStart(BadCall):
    """A source was registered twice with the same nexus, which would start it twice."""


class LoopAlreadyStarted(BadCall):
    """The nexus loop is already running (or starting) and cannot be started again."""


class LoopStopped(BadCall):
    """The nexus is stopping or has stopped: it accepts no more events and cannot restart."""


class InvalidLoopState(BadCall):
    """The call needs the nexus in another state than the one it is in."""


class QueueFull(AsyncNexusError, asyncio.QueueFull):
    """``ingest_nowait()`` found the nexus queue full.

    It is also an :class:`asyncio.QueueFull`, so code written against ``asyncio.Queue``
    catches it as it expects. Use ``await nexus.ingest(event)`` to wait for room instead.
    """


class RunawayChain(AsyncNexusError):
    """Secondary events kept producing secondary events past the nexus's limits.

    Raised into the handler that tried to emit one more; the handler's failure reaches
    the error hook and the loop goes on.
    """


class FanoutFailed(AsyncNexusError):
    """Several handlers of an :class:`~async_nexus.EventFanout` raised for one event.

    Every handler still received the event; :attr:`exceptions` holds each failure in
    registration order. A single failure is re-raised as itself instead.
    """

    def __init__(self, message: str, exceptions: list[BaseException]) -> None:
        super().__init__(message)
        self.exceptions = exceptions


class RequestTimeout(AsyncNexusError, TimeoutError):
    """``nexus.request()`` got no reply within its timeout. No waiter is left behind."""


class HandlerTimeout(AsyncNexusError, TimeoutError):
    """A handler registered with ``timeout=`` ran longer and was cancelled.

    It is reported like any failure of the handler: the event counts as failed.
    """


class DecodeError(AsyncNexusError, ValueError):
    """Bytes that arrived from a transport are not a valid event.

    :attr:`raw` holds what arrived (possibly truncated), so it can be logged or
    dead-lettered.
    """

    def __init__(self, message: str, raw: Any = None) -> None:
        super().__init__(message)
        self.raw = raw


class JournalError(AsyncNexusError):
    """The durable journal (:class:`~async_nexus.journal.SqliteJournal`) failed.

    The message says which journal file, what went wrong and what to do about it; the
    underlying :mod:`sqlite3` or :class:`OSError` failure, if any, is its ``__cause__``.
    """


class JournalCorrupt(JournalError):
    """The journal file cannot be trusted: it is not a SQLite database, fails SQLite's
    integrity check, is empty, or belongs to another program or format version.

    The journal never starts empty in its place: move the file aside (keep it, it may hold
    events) and start again, which creates a new journal.
    """


class JournalLocked(JournalError):
    """Another journal object holds the journal file: in another process (named by its pid)
    or in this one. One journal file serves one nexus at a time.
    """


class JournalFull(JournalError, OSError):
    """Writing to the journal failed for lack of room (SQLite's "database or disk is full") or
    an operating-system error.

    Nothing already committed is lost, and the operations of the failed commit stay staged
    and are written by the next commit. It is also an :class:`OSError`, with ``errno`` set
    (``ENOSPC`` for a full disk), ``strerror`` the message and ``filename`` the journal's path.
    """

    def __str__(self) -> str:
        # The message names the journal already; OSError's "[Errno 28] message: 'path'" would
        # say it twice.
        return self.strerror if self.strerror is not None else super().__str__()
