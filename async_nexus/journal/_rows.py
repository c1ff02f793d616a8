"""Events as the journal stores them, and back: the bytes of a row and the checks on the way.
Private: :mod:`async_nexus.journal` is its only user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..codec import EventCodec
from ..errors import BadType, DecodeError, JournalError, NotAnEvent
from ..events import Event, NamedEvent


def body(codec: EventCodec, event: Event) -> bytearray:
    """The stored form of ``event``.

    A ``bytearray``, not ``bytes``: sqlite3 binds it without looking for an adapter (see
    :class:`~async_nexus.journal._sql.Batch`).

    :raises BadType: the codec cannot encode it, or it is a :class:`NamedEvent` whose class
        the codec does not know; the message says what.
    """
    if isinstance(event, NamedEvent) and not codec.is_registered(type(event)):
        # It would be stored, and then refused at the next open: no nexus could start.
        raise BadType(
            f"the journal cannot store event {event.id!r}: its class {type(event).__qualname__} is "
            "not registered with the journal's codec, so it could not be read back; give the "
            "journal SqliteJournal(path, codec=EventCodec(named_events=[...])) with it"
        )
    try:
        return bytearray(codec.encode(event))
    except NotAnEvent:
        raise
    except (TypeError, ValueError) as exc:
        raise BadType(f"the journal cannot store event {event.id!r} (type {event.type!r}): {exc}") from exc


def event(codec: EventCodec, path: Path, seq: int, event_type: Any, stored: bytes) -> Event:
    """The event stored as ``seq``, rebuilt.

    :raises JournalError: the codec cannot rebuild it; the message says which codec would.
    """
    try:
        return codec.decode(stored)
    except DecodeError as exc:
        if isinstance(event_type, str) and event_type not in codec.named_events:
            fix = (
                f"if {event_type!r} is a NamedEvent class, give the journal a codec that knows "
                f"it: SqliteJournal(path, codec=EventCodec(named_events=[{event_type}, ...]))"
            )
        else:
            fix = "open the journal with the codec (format, named events) it was written with"
        raise JournalError(
            f"the journal {path} holds an event (seq {seq}, type {event_type!r}) this codec "
            f"cannot rebuild: {exc}; {fix}"
        ) from exc
