"""The durable journal: events kept in a SQLite file until their handling is over.

A :class:`SqliteJournal` is one SQLite database in WAL mode, used by one event loop.

**Opening.** :meth:`~SqliteJournal.open` is blocking and called once, before the loop starts. It
locks the file for this process (``{path}-lock``), checks it (a file that is not a journal, is
damaged or empty is refused with :class:`~async_nexus.errors.JournalCorrupt`: a journal never
silently starts empty) and returns every event it holds, to replay, each marked as delivered
once more.

**Staged operations.** :meth:`~SqliteJournal.append`, :meth:`~SqliteJournal.remove` and
:meth:`~SqliteJournal.save_checkpoint` return at once: they *stage* an operation in memory, in
order. Nothing is durable until it has been committed.

**Groups.** Staged operations are written in *groups*: one transaction and one fsync for all the
operations staged since the previous group. A group starts as soon as something is staged and no
group is being written (so an ``append()`` that nobody awaits still becomes durable by itself);
while a group is being written, newly staged operations wait for the next one. ``await
commit()`` returns once everything staged before the call is durable, so many callers share one
fsync. Groups are written in the order they were staged, and a group is durable whole or not at
all: a checkpoint is stored together with the events staged with it, so a source that saves
where it is along with the events it produced never resumes past or before them. An event
removed before its group was written never reaches the disk.

**Where the work runs.** The event loop begins each group's transaction and makes its changes
itself: that takes a fraction of a millisecond and does not wait for the disk (the pages change
in SQLite's cache). What follows depends on ``synchronous``. At ``"full"`` the commit waits for
the disk, so one worker thread of the journal's own makes it, and the loop resolves one future
when it is done (which wakes each ``commit()`` that waits for it). At ``"normal"`` the commit
does not wait for the disk, and takes less than the trip to a thread and back while the loop is
busy, so the loop commits too; the thread then writes the log out to the disk every 64 groups,
so that SQLite's checkpoint (a commit now and then that copies the log into the database, and
syncs it first) finds little left to sync. Either way the loop is held for at most one group's
transaction; the longest is measured (``stats()["longest_loop_stall_s"]``).

**Failures.** A group that cannot be written (a full disk is
:class:`~async_nexus.errors.JournalFull`) is rolled back whole; its operations go back in front
of the newer ones and are written by the next group. Nothing committed is ever lost by a
failure.

**synchronous.** ``"full"`` (the default) syncs the write-ahead log at every commit: a committed
group survives a process crash and a power cut alike. ``"normal"`` syncs only when the log is
copied into the database: a committed group survives a crash of the process (the operating
system still writes it out), but the last groups before a power cut or an operating-system crash
may be lost; the journal itself stays consistent either way.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..codec import EventCodec
from ..dead_letters import DeadLetter
from ..errors import BadCall, BadType, BadValue, JournalError
from ..events import Event
from . import _lock as lock
from . import _rows as rows
from . import _sql as sql
from ._groups import GroupCommitter

__all__ = ["REDELIVERED", "JournalEntry", "SqliteJournal"]

#: The header each replayed event carries: how many times it has been delivered, as a string.
REDELIVERED = "redelivered"

_SYNCHRONOUS = ("full", "normal")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An event the journal held when it was opened, to be replayed.

    :param seq: where the event is in the journal; :meth:`SqliteJournal.remove` takes it.
    :param event: the event as appended, its id kept, with the header :data:`REDELIVERED` set
        to ``str(deliveries)``.
    :param due: the wall-clock time (``time.time()``) it was scheduled for, or None.
    :param deliveries: how many times the journal has handed it out, this time included.
    """

    seq: int
    event: Event
    due: float | None
    deliveries: int


class SqliteJournal:
    """A durable journal of events in the SQLite file ``path`` (see the module's description).

    Not thread-safe: every method is called from the thread of the event loop that uses it
    (:meth:`open` before that loop starts).

    :param path: the database file; ``{path}-lock``, ``{path}-wal`` and ``{path}-shm`` live
        next to it.
    :param codec: turns events into the bytes stored; its registry of
        :class:`~async_nexus.NamedEvent` classes decides which named events can be replayed.
    :param synchronous: ``"full"`` (survives power cuts) or ``"normal"`` (survives process
        crashes; faster).
    :param dead_letters_max: how many dead letters it keeps (see :meth:`add_dead_letter`);
        past it the oldest are removed, with a ``WARNING`` that says how many.
    :raises BadValue: ``synchronous`` is neither, or ``dead_letters_max`` is not an int >= 1.
    :raises BadType: ``path`` is not a ``str`` or path-like, or ``codec`` not an
        :class:`~async_nexus.codec.EventCodec`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: EventCodec | None = None,
        synchronous: Literal["full", "normal"] = "full",
        dead_letters_max: int = 10_000,
        _max_page_count: int | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise BadType(f"the journal's path must be a str or a path-like object, not {path!r}")
        if synchronous not in _SYNCHRONOUS:
            raise BadValue(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if codec is not None and not isinstance(codec, EventCodec):
            raise BadType(f"codec must be an EventCodec, not {type(codec).__qualname__}")
        bound = dead_letters_max
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 1:
            raise BadValue(
                f"dead_letters_max must be an int >= 1 (how many dead letters the journal keeps), "
                f"not {dead_letters_max!r}"
            )
        self._path = Path(path)
        self._synchronous: str = synchronous
        self._codec = codec if codec is not None else EventCodec()
        self._store = sql.Store(self._path, synchronous, _max_page_count, dead_letters_max)
        self._state = "new"  # -> "open" -> "closing" -> "closed"
        self._groups = GroupCommitter(self._path, self._store, inline=synchronous == "normal")
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._next_seq = 1
        self._next_dead = 1
        self._checkpoints: dict[str, str] = {}

    @property
    def path(self) -> Path:
        """The journal's database file."""
        return self._path

    @property
    def synchronous(self) -> str:
        """``"full"`` or ``"normal"``: how durable a commit is (see the module's description)."""
        return self._synchronous

    @property
    def codec(self) -> EventCodec:
        """The codec that turns events into the bytes stored, and back."""
        return self._codec

    @property
    def last_error(self) -> JournalError | None:
        """Why the last failed commit failed, or None if none has failed."""
        return self._groups.last_error

    # -- opening ---------------------------------------------------------------------------------

    def open(self, *, replay: bool = True) -> list[JournalEntry]:
        """Lock, open (or create) and check the journal; return the events it holds, to replay.

        Blocking: call it once, before the event loop starts. The entries come in dispatch
        order (priority, then arrival); each one's delivery count is incremented durably before
        it is returned, and its event carries the header :data:`REDELIVERED`.

        With ``replay=False`` (a tool that looks at the journal or changes it, such as
        ``python -m async_nexus dead-letters``), nothing is delivered: the list is empty and
        no delivery is counted.

        :raises JournalLocked: another open journal, in this process or another, holds the file.
        :raises JournalCorrupt: the file is not a journal (not a SQLite database, another
            program's database, another format version, an empty file) or is damaged. It is left
            untouched; the message says what to do.
        :raises JournalError: the file cannot be opened or created, or it holds an event the
            codec cannot rebuild (a :class:`~async_nexus.NamedEvent` class missing from the
            codec's registry).
        :raises BadCall: the journal was opened already.
        """
        if self._state != "new":
            raise BadCall(f"the journal {self._path} was opened already; open() is called once")
        self._lock_fd = lock.acquire_lock(self._path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-nexus-journal")
        try:
            loaded = self._executor.submit(self._store.open).result()
            rows, checkpoints, next_seq, count, dead_count, self._next_dead = loaded
            entries = [self._entry(*row) for row in rows] if replay else []
            if entries:
                self._executor.submit(self._store.mark_delivered).result()
        except BaseException:
            self._executor.submit(self._store.close).result()
            self._executor.shutdown()
            self._release()
            self._state = "new"  # open() may be tried again, e.g. once the file was moved aside
            raise
        self._checkpoints = checkpoints
        self._next_seq = next_seq
        self._groups.rows = count
        self._groups.dead_rows = dead_count
        self._groups.executor = self._executor
        self._state = "open"
        return entries

    def _entry(
        self, seq: int, due: float | None, deliveries: int, event_type: Any, stored: bytes
    ) -> JournalEntry:
        event = rows.event(self._codec, self._path, seq, event_type, stored)
        event.headers = {**(event.headers or {}), REDELIVERED: str(deliveries + 1)}
        return JournalEntry(seq, event, due, deliveries + 1)

    # -- staging ---------------------------------------------------------------------------------

    def append(self, event: Event, *, due: float | None = None) -> int:
        """Stage ``event`` to be stored and return its ``seq``, higher than any stored.

        The event is encoded at once, so a later change to it is not stored.

        :param due: for a scheduled event, the wall-clock time (``time.time()``) it is due.
        :raises BadType: the codec cannot encode the event (its payload, id, type or headers);
            the message says what, and nothing is staged.
        :raises BadCall: the journal is not open.
        """
        if self._state != "open":
            self._check_open()
        if due is not None:
            if not isinstance(due, (int, float)) or isinstance(due, bool):
                raise BadType(f"due must be a time.time() value (a float) or None, not {due!r}")
            if not math.isfinite(due):
                raise BadValue(f"due must be a finite time, not {due!r}")
            due = float(due)
        body = rows.body(self._codec, event)
        seq = self._next_seq
        self._next_seq += 1
        if due is None:
            self._groups.insert(seq, (seq, event.priority, event.type, body))
        else:
            self._groups.insert_later(seq, (seq, event.priority, due, event.type, body))
        return seq

    def remove(self, seq: int) -> None:
        """Stage the removal of the event stored as ``seq`` (its handling is over).

        :raises BadValue: ``seq`` was never given out by this journal.
        """
        if self._state != "open":
            self._check_open()
        if not isinstance(seq, int) or not 0 < seq < self._next_seq:
            raise BadValue(f"the journal {self._path} never stored seq {seq!r}")
        self._groups.delete(seq)

    def save_checkpoint(self, name: str, value: str) -> None:
        """Stage ``value`` as the checkpoint ``name``.

        It is committed in the same transaction as the events staged with it (the same group),
        never before the events staged ahead of it.
        """
        self._check_open()
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadType(f"a checkpoint's name and value are strings, not {name!r}: {value!r}")
        self._groups.checkpoint(name, value)
        self._checkpoints[name] = value

    # -- dead letters ----------------------------------------------------------------------------

    @property
    def dead_letters_max(self) -> int:
        """How many dead letters the journal keeps; past it the oldest are removed."""
        return self._store.dead_max

    @property
    def dead_letter_count(self) -> int:
        """How many dead letters it holds now, those staged included."""
        return self._groups.dead_rows + self._groups.dead_letters_staged()

    def add_dead_letter(
        self,
        event: Event,
        *,
        reason: str,
        exception: str = "",
        message: str = "",
        attempts: int = 1,
        handler: str | None = None,
        when: float,
    ) -> int:
        """Stage keeping ``event`` as a dead letter; return its id, higher than any given before.

        Staged as :meth:`append` is: staged with the :meth:`remove` of the event's row, both are
        written in one transaction. Past :attr:`dead_letters_max`, that transaction removes
        the oldest dead letters.

        :raises BadType: the codec cannot encode the event; nothing is staged.
        :raises BadCall: the journal is not open.
        """
        self._check_open()
        body = rows.body(self._codec, event)
        id = self._next_dead
        self._next_dead += 1
        row = (id, event.type, reason, exception, message, int(attempts), handler, float(when), body)
        self._groups.dead_letter(id, row)
        return id

    def remove_dead_letter(self, id: int) -> None:
        """Stage removing the dead letter ``id`` (replayed, or deleted); an unknown id is no error."""
        self._check_open()
        self._groups.delete_dead_letter(id)

    async def dead_letters(
        self, *, limit: int = 100, event_type: int | str | None = None
    ) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first; only of ``event_type`` if given.

        What is staged is committed first, so the list includes it.

        :raises JournalError: the commit failed.
        :raises BadCall: the journal is not open.
        """
        await self._settled()
        return [self._dead_letter(row) for row in self._store.dead_letters(limit, event_type)]

    async def dead_letters_by_id(self, ids: list[int] | None) -> list[DeadLetter]:
        """The dead letters with these ids that exist (every one if None), oldest first.

        :raises JournalError: committing what was staged failed.
        :raises BadCall: the journal is not open.
        """
        await self._settled()
        return [self._dead_letter(row) for row in self._store.dead_letters_by_id(ids)]

    async def dead_letter_ids(self, ids: list[int] | None) -> list[int]:
        """The ids of ``ids`` that name a dead letter held (every id held if None), in order.

        :raises JournalError: committing what was staged failed.
        :raises BadCall: the journal is not open.
        """
        await self._settled()
        return self._store.dead_letter_ids(ids)

    async def _settled(self) -> None:
        """Commit what is staged; return with no group in flight, so the loop may read the file."""
        self._check_open()
        await self.commit()
        await self._groups.settled()

    def _dead_letter(self, row: tuple[Any, ...]) -> DeadLetter:
        id, event_type, reason, exception, message, attempts, handler, when, stored = row
        event = rows.event(self._codec, self._path, id, event_type, stored)
        return DeadLetter(id, event, reason, exception, message, attempts, handler, when)

    def checkpoint(self, name: str) -> str | None:
        """The last value saved as checkpoint ``name`` (staged or committed), or None."""
        return self._checkpoints.get(name)

    def pending_commit(self) -> bool:
        """True while something is staged or being written and not yet durable."""
        return self._groups.pending()

    async def commit(self) -> None:
        """Return once everything staged before the call is durable.

        Callers that commit while a group is being written share the next group.

        :raises JournalFull: the group could not be written for lack of room (or an
            :class:`OSError`); its operations stay staged and the next commit tries them again.
        :raises JournalError: the group failed for another reason; the same holds.
        :raises BadCall: the journal is not open.
        """
        if self._state != "open" and self._state != "closing":
            self._check_open()
        done = self._groups.outcome()
        if done is not None and (cause := await done) is not None:
            raise self._groups.failure(cause) from cause

    # -- closing ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is staged, then stop the thread, close the database and unlock it.

        The journal is closed even when that last commit fails: the error is raised, and the
        operations it could not write are not stored. Closing twice does nothing.

        :raises JournalFull: the last commit failed for lack of room.
        :raises JournalError: the last commit failed for another reason.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closing"
        try:
            while self.pending_commit():
                await self.commit()
        finally:
            executor, self._executor = self._executor, None
            self._groups.executor = None  # no group starts from now on
            try:
                if executor is not None:
                    # The executor runs one job at a time, in order: this waits for a group in flight.
                    await asyncio.get_running_loop().run_in_executor(executor, self._store.close)
            finally:
                if executor is not None:
                    executor.shutdown(wait=False)
                self._release()

    def close_without_loop(self) -> None:
        """:meth:`close`, blocking, for a journal no event loop uses (a nexus that never ran).

        What is staged (appended before any loop ran) is written in the journal's thread, at
        either ``synchronous`` level, then the thread stops, the database is closed and
        unlocked, even when that write fails. Closing twice does nothing.

        :raises BadCall: a loop uses the journal (a group is being written, or it is being
            closed); await :meth:`close` in that loop instead. The journal stays open.
        :raises JournalFull: the last write failed for lack of room; what was committed
            before is kept.
        :raises JournalError: the last write failed for another reason; the same holds.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        if self._state == "closing":
            raise BadCall(f"the journal {self._path} is being closed by an event loop: await its close()")
        batch = self._groups.take_staged()
        executor, self._executor = self._executor, None
        try:
            if batch and executor is not None:
                try:
                    executor.submit(self._store.write, batch).result()
                except Exception as exc:
                    self._groups.last_error = error = self._groups.failure(exc)
                    raise error from exc
        finally:
            try:
                if executor is not None:
                    executor.submit(self._store.close).result()
            finally:
                if executor is not None:
                    executor.shutdown()
                self._release()

    def _release(self) -> None:
        self._state = "closed"
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            lock.release_lock(fd)

    def _check_open(self) -> None:
        if self._state == "new":
            raise BadCall(f"the journal {self._path} is not open yet: call open() first")
        if self._state == "closed":
            raise BadCall(f"the journal {self._path} is closed; open a new SqliteJournal on it")

    # -- observing -------------------------------------------------------------------------------

    def on_failure(self, callback: Callable[[JournalError], None] | None) -> None:
        """Call ``callback(error)`` (in the loop) for each group that could not be written, and
        for each time the disk failed to write the log out.

        A waiter of :meth:`commit` gets the error anyway; this is for the operations nobody
        awaits. The nexus reports them to its error hook.
        """
        self._groups.on_failure = callback

    def stats(self) -> dict[str, float | int]:
        """Counters of the journal since it was opened.

        ``rows`` stored, ``staged`` operations not yet durable, ``commits`` (groups written),
        ``events_per_commit`` and ``ops_per_commit`` (means), ``longest_commit_s`` (the longest
        transaction, sync included), ``longest_loop_stall_s`` (the longest time the event loop
        itself spent on one group: its changes, and at ``"normal"`` the commit too),
        ``log_flushes`` (at ``"normal"``, times the thread wrote the log out), ``failed_commits``
        and ``last_error_at`` (``time.time()`` of the last failure, 0 if none; :attr:`last_error`
        says what it was).
        """
        return self._groups.stats()

    async def _set_max_page_count(self, pages: int) -> int:
        """For tests: limit the database's size, to run it into SQLITE_FULL (or lift the limit)."""
        if self._executor is None:
            raise BadCall("the journal is not open")
        await self._groups.settled()  # no commit in the thread now, and none starts before this
        return self._store.set_max_page_count(pages)
