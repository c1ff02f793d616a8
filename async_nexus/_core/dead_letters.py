"""The dead letters of one nexus: where they are kept, and how they are listed, replayed, deleted.

:class:`~async_nexus._core.outcomes.Outcomes` hands each dead letter to the store as a
:data:`Draft` the moment the event's handling finally fails. Two stores:

* :class:`MemoryStore`, without a journal: the newest :data:`~async_nexus.dead_letters.MEMORY_LIMIT`,
  kept at once; lost when the process ends.
* :class:`JournalStore`, with one: the drafts wait on the event's item until its handling is
  over (every handler done with it), and are then staged in the journal together with the
  removal of the event's row, so one transaction writes both. An event cut off by a hard
  stop keeps its row and no dead letter: it is replayed at the next start, not duplicated.

An event whose source has a dead-letter place of its own (a transport's, such as Redis's
``<stream>:dead``: the item's ``dead`` route) is kept there, not here too: one place per dead
letter, so that replaying from both never sends it twice.

:class:`DeadLetters` answers the nexus's public methods. A replay sends each event back in
through the admission's ``REPLAY`` door and removes its dead letter in the same step, so
with a journal the event's new row and the dead letter's removal share one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from ..dead_letters import MEMORY_LIMIT, DeadLetter, copy_event, reason_of, replayed
from ..errors import BadCall, BadType
from ..events import Event
from ..journal import SqliteJournal
from .admission import Admission, Door
from .items import Item

# Internal: the public face is AsyncEventNexus.dead_letters() and its kin.
__all__: list[str] = []

#: A dead letter before it is stored: event, reason, exception, message, attempts, handler, when.
Draft = tuple[Event, str, str, str, int, "str | None", float]


def draft(event: Event, exc: BaseException, attempts: int, handler: str | None) -> Draft:
    """What ``exc`` on ``event`` leaves to keep; the event is copied, so later changes stay out."""
    headers = None if event.headers is None else dict(event.headers)
    return (
        copy_event(event, headers), reason_of(exc), type(exc).__qualname__, str(exc), attempts,
        handler, time.time(),
    )  # fmt: skip


def root_of(item: Item | None) -> Item | None:
    """The item a retry retries (the one whose handling is over last), or ``item`` itself."""
    while item is not None and item.origin is not None:
        item = item.origin
    return item


def kept_by_source(root: Item | None) -> bool:
    """Whether the source of ``root``'s event keeps its dead letters itself (a transport's
    ``on_dead_letter`` route, see :class:`~async_nexus.sources.SourcePort`)."""
    return root is not None and root.dead is not None


class Store(Protocol):
    """Where the dead letters of a nexus are kept."""

    def keep(self, draft: Draft, item: Item | None) -> None:
        """Keep a dead letter of the event of ``item`` (``None`` for a bare event)."""

    async def newest(self, limit: int, event_type: int | str | None) -> list[DeadLetter]:
        """The newest ``limit`` dead letters (of ``event_type`` if given), newest first."""

    async def find(self, ids: list[int] | None) -> list[DeadLetter]:
        """Those of ``ids`` that exist (every one if None), oldest first."""

    async def existing(self, ids: list[int] | None) -> list[int]:
        """The ids of ``ids`` that exist (every one if None)."""

    def remove(self, id: int) -> None:
        """Forget the dead letter ``id`` (it exists)."""

    def count(self) -> int:
        """How many are kept now."""


class MemoryStore:
    """The newest ``limit`` dead letters, in memory; the oldest go first."""

    __slots__ = ("_letters", "_next_id", "_limit")

    def __init__(self, limit: int = MEMORY_LIMIT) -> None:
        self._letters: dict[int, DeadLetter] = {}  # in id order: ids only grow
        self._next_id = 1
        self._limit = limit

    def keep(self, draft: Draft, item: Item | None) -> None:
        if kept_by_source(root_of(item)):
            return
        id = self._next_id
        self._next_id += 1
        self._letters[id] = DeadLetter(id, *draft)
        if len(self._letters) > self._limit:
            del self._letters[next(iter(self._letters))]

    async def newest(self, limit: int, event_type: int | str | None) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for letter in reversed(self._letters.values()):
            if len(found) >= limit:
                break
            if event_type is None or letter.event.type == event_type:
                found.append(letter)
        return found

    async def find(self, ids: list[int] | None) -> list[DeadLetter]:
        if ids is None:
            return list(self._letters.values())
        return [self._letters[id] for id in sorted(set(ids)) if id in self._letters]

    async def existing(self, ids: list[int] | None) -> list[int]:
        return [letter.id for letter in await self.find(ids)]

    def remove(self, id: int) -> None:
        self._letters.pop(id, None)

    def count(self) -> int:
        return len(self._letters)


class JournalStore:
    """The dead letters in the nexus's journal, each written with the removal of its event."""

    __slots__ = ("_journal", "_held")

    def __init__(self, journal: SqliteJournal) -> None:
        self._journal = journal
        #: The drafts of items whose handling is not over yet.
        self._held: dict[Item, list[Draft]] = {}

    def keep(self, draft: Draft, item: Item | None) -> None:
        if item is None:  # nothing holds a row for it: keep it now
            self._add([draft])
            return
        item = root_of(item)  # a retry: the row belongs to the item it retries
        assert item is not None
        if kept_by_source(item):
            return
        drafts = self._held.get(item)
        if drafts is not None:
            drafts.append(draft)  # another registration failed on it too
            return
        self._held[item] = [draft]
        # The item's done removes its row: stage the dead letters just before, in the same
        # step, so the journal writes both in one transaction.
        done = item.done
        if done is None:  # not a kept event's item: nothing to wait for
            self._add(self._held.pop(item))
            return

        def bury_then_done(event: Event) -> object:
            self._add(self._held.pop(item, ()))
            return done(event)

        item.done = bury_then_done

    def _add(self, drafts: Iterable[Draft]) -> None:
        add = self._journal.add_dead_letter
        for event, reason, exception, message, attempts, handler, when in drafts:
            add(
                event, reason=reason, exception=exception, message=message, attempts=attempts,
                handler=handler, when=when,
            )  # fmt: skip

    async def newest(self, limit: int, event_type: int | str | None) -> list[DeadLetter]:
        return await self._journal.dead_letters(limit=limit, event_type=event_type)

    async def find(self, ids: list[int] | None) -> list[DeadLetter]:
        return await self._journal.dead_letters_by_id(ids)

    async def existing(self, ids: list[int] | None) -> list[int]:
        return await self._journal.dead_letter_ids(ids)

    def remove(self, id: int) -> None:
        self._journal.remove_dead_letter(id)

    def count(self) -> int:
        return self._journal.dead_letter_count


def check_selection(what: str, ids: Iterable[int] | None, all: bool) -> list[int] | None:
    """The ids to act on (None: all of them), or :class:`BadCall` saying what to pass."""
    if ids is None and not all:
        raise BadCall(f"{what}() needs the dead letters to act on: pass ids=[...] (their ids), or all=True")
    if ids is not None and all:
        raise BadCall(f"{what}() takes ids=[...] or all=True, not both")
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise BadType(f"{what}() takes ids as an iterable of ints (dead letter ids), got {ids!r}")
    chosen = list(ids)
    for id in chosen:
        if not isinstance(id, int) or isinstance(id, bool):
            raise BadType(
                f"{what}() takes dead letter ids, which are ints (DeadLetter.id), got {id!r} "
                f"of type {type(id).__qualname__}"
            )
    return chosen


class DeadLetters:
    """What the nexus's dead-letter methods do: list, replay, delete."""

    __slots__ = ("_store", "_admission", "_durable")

    def __init__(
        self, store: Store, admission: Admission, durable: Callable[[], Awaitable[None]] | None
    ) -> None:
        self._store, self._admission, self._durable = store, admission, durable

    async def list(self, limit: int, event_type: int | str | None) -> list[DeadLetter]:
        """See :meth:`AsyncEventNexus.dead_letters() <async_nexus.AsyncEventNexus.dead_letters>`."""
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise BadCall(f"limit must be an int >= 0 (how many dead letters to list), got {limit!r}")
        if event_type is not None and (
            not isinstance(event_type, (int, str)) or isinstance(event_type, bool)
        ):
            raise BadType(f"event_type must be an int or a str (an event type), got {event_type!r}")
        return await self._store.newest(limit, event_type)

    async def replay(self, ids: Iterable[int] | None, all: bool) -> int:
        """See :meth:`async_nexus.AsyncEventNexus.replay_dead_letters`."""
        chosen = check_selection("replay_dead_letters", ids, all)
        self._admission.check_gate(Door.REPLAY)
        letters = await self._store.find(chosen)
        admit, remove = self._admission.admit, self._store.remove
        for letter in letters:  # the first admit() raises if the gate closed meanwhile
            # No await in between: with a journal, the event's new row and the removal of
            # its dead letter are staged together, and so written in one transaction.
            admit(replayed(letter.event), Door.REPLAY)
            remove(letter.id)
        if letters and self._durable is not None:
            await self._durable()
        return len(letters)

    async def delete(self, ids: Iterable[int] | None, all: bool) -> int:
        """See :meth:`async_nexus.AsyncEventNexus.delete_dead_letters`."""
        chosen = check_selection("delete_dead_letters", ids, all)
        found = await self._store.existing(chosen)
        for id in found:
            self._store.remove(id)
        if found and self._durable is not None:
            await self._durable()
        return len(found)

    def count(self) -> int:
        """How many dead letters are kept now."""
        return self._store.count()


def held_store(journal: SqliteJournal | None) -> Store:
    """The store for a nexus with ``journal`` (or without one)."""
    return MemoryStore() if journal is None else JournalStore(journal)
