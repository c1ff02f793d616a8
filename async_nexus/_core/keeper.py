"""What a nexus with a journal keeps, and when it lets go.

A nexus created with ``journal=`` writes every event it accepts to its
:class:`~async_nexus.journal.SqliteJournal` before the event can be lost, and removes it
when its handling is over: handled, or handed to the dead letters. The :class:`Keeper`
is the one place that knows this: the admission asks it to keep an event and gets back the
:class:`~async_nexus._core.items.Item` to queue, whose ``done`` (and ``dead``) let go of the
journal's row and then do what they did before (a transport's acknowledgement).

At start the keeper replays what the journal holds: events in the queue at once,
events scheduled for later when the loop runs. Nothing here runs without a journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BadCall, BadType, JournalError
from ..events import Event
from ..journal import SqliteJournal
from .items import DeadLetterRoute, Item, ReplyRoute

# Internal: the public face is AsyncEventNexus(journal=...) and async_nexus.journal.
__all__: list[str] = []

logger = logging.getLogger("async_nexus")


def as_journal(journal: object) -> SqliteJournal:
    """The journal that ``journal=`` names: a path, or a :class:`SqliteJournal` as it is."""
    if isinstance(journal, SqliteJournal):
        return journal
    if isinstance(journal, (str, os.PathLike)):
        return SqliteJournal(journal)
    raise BadType(
        f"journal= takes a path (str or os.PathLike) or an async_nexus.journal.SqliteJournal, "
        f"got {journal!r} of type {type(journal).__qualname__}"
    )


class JournalCheckpoints:
    """Sources' positions, saved in the journal (see :class:`~async_nexus.checkpoints.Checkpoints`)."""

    __slots__ = ("_journal",)

    def __init__(self, journal: SqliteJournal) -> None:
        self._journal = journal

    def load(self, name: str) -> str | None:
        return self._journal.checkpoint(name)

    def save(self, name: str, value: str) -> None:
        self._journal.save_checkpoint(name, value)


class Keeper:
    """The journal of one nexus, as its intake and dispatcher use it."""

    __slots__ = ("journal", "later", "replayed", "checkpoints", "durable", "_closing", "_report", "_reports")

    def __init__(
        self, journal: SqliteJournal, report: Callable[[BaseException, Any], Awaitable[None]]
    ) -> None:
        self.journal = journal
        self._report = report
        #: Tasks that report a failure or close the journal: a task needs a reference to live.
        self._reports: set[asyncio.Task[None]] = set()

        def failed(error: BaseException) -> None:
            # Events nobody awaits were staged in that group: the error hook must hear of it.
            self._in_a_task(report(error, journal))

        journal.on_failure(failed)
        #: What sources save their positions in: the journal, in its transactions.
        self.checkpoints = JournalCheckpoints(journal)
        #: ``await durable()`` returns once what was kept so far is on disk, at the journal's
        #: ``synchronous`` level: the journal's own commit, bound once.
        self.durable: Callable[[], Awaitable[None]] = journal.commit
        #: Replayed events that were scheduled for later: (seq, event, due wall-clock time).
        self.later: list[tuple[int, Event, float]] = []
        self.replayed = 0
        # A task of the loop closes the journal: nothing else may close it meanwhile.
        self._closing = False

    def replay(self, put: Callable[[Item, int], None]) -> None:
        """Open the journal; ``put`` each event it holds that is due, keep the others for later.

        :raises JournalCorrupt: the file is not a journal, or is damaged.
        :raises JournalLocked: another process has it open.
        """
        for entry in self.journal.open():
            if entry.due is None:
                put(self.item(entry.event, entry.seq), entry.event.priority)
            else:
                self.later.append((entry.seq, entry.event, entry.due))
            self.replayed += 1
        if self.replayed:
            logger.info(
                "async_nexus: replaying %d events kept in the journal %s (%d of them scheduled for later)",
                self.replayed,
                self.journal.path,
                len(self.later),
            )

    def keep(self, event: Event, due_in: float | None = None) -> int:
        """Stage ``event`` (due in ``due_in`` seconds, if scheduled); its row's number.

        :raises TypeError: the codec cannot encode its payload; nothing was staged.
        """
        return self.journal.append(event, due=None if due_in is None else time.time() + due_in)

    def forget(self, seq: int) -> None:
        """Let go of a row whose event will not be handled here (refused, cancelled)."""
        self.journal.remove(seq)

    def item(
        self,
        event: Event,
        seq: int,
        depth: int = 0,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        dead: DeadLetterRoute | None = None,
        waiter: asyncio.Future[Event] | None = None,
    ) -> Item:
        """The item to queue for a kept event: when its handling is over, its row goes."""
        remove = self.journal.remove
        item = Item(event, depth, reply, None, waiter)
        if done is None:
            item.done = lambda event: remove(seq)
        else:

            def handled(event: Event) -> None:
                remove(seq)
                done(event)

            item.done = handled
        if dead is not None:

            def dead_letter(event: Event, exc: BaseException, attempts: int) -> Any:
                remove(seq)
                return dead(event, exc, attempts)

            item.dead = dead_letter
        return item

    def take_later(self) -> list[tuple[int, Event, float]]:
        """The replayed events scheduled for later, once: the loop schedules them as it starts."""
        later, self.later = self.later, []
        return later

    async def close(self) -> None:
        """Write what is staged (the last removals) and close the journal.

        What it could not write is lost: that is reported to the error hook, loudly.
        """
        try:
            await self.journal.close()
        except JournalError as exc:
            await self._report(exc, self.journal)

    def close_soon(self) -> None:
        """Close the journal in a task of the running loop (the nexus's loop task is gone)."""
        self._closing = True
        self._in_a_task(self.close())

    def close_without_loop(self) -> None:
        """Write what is staged and close the journal, blocking: for a nexus whose loop never ran.

        If this thread's loop is writing a group of the journal (an ``ingest()`` of a nexus
        never started), that loop closes it in a task, once the group is written.

        :raises JournalError: the last write failed; the journal is closed all the same.
        """
        if self._closing:
            return
        try:
            self.journal.close_without_loop()
        except BadCall:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise
            self.close_soon()

    def _in_a_task(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
