"""Group commit for :mod:`async_nexus.journal`: the staged operations, the one group being
written, the futures its waiters hold, and the counters. Private: the journal is its only user.

Everything here runs on the event loop; ``write`` (handed over by the journal) runs in the
journal's thread at ``full`` and in the loop at ``normal``, where ``flush_log`` runs in the
thread (see "Where the work runs" in :mod:`async_nexus.journal`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import BadCall, JournalError, JournalFull
from . import _sql as sql

logger = logging.getLogger("async_nexus")

# What a group's waiters receive: None once it is durable, or what made it fail. A result rather
# than an exception, so that a group nobody waits for leaves no "exception never retrieved".
Done = asyncio.Future[BaseException | None]

#: At ``normal``, the thread flushes the log once this many groups were written since the last
#: flush (by then up to a few hundred of the log's pages).
_FLUSH_EVERY = 64


class _Outcome(asyncio.Future):  # type: ignore[type-arg]
    """A group's outcome, shared by all its waiters, so it refuses to be cancelled.

    A waiter whose task is cancelled must not cancel the group for the others. Refusing is
    what ``asyncio.shield`` would do, without its two extra futures per waiter: the task
    still gets its CancelledError, once the group is written (a few milliseconds).
    """

    def cancel(self, msg: object = None) -> bool:
        return False


class GroupCommitter:
    """Stages operations and writes them in groups, one group at a time: in ``executor``, or in
    the loop itself when ``inline``."""

    def __init__(
        self,
        path: Path,
        store: sql.Store,
        *,
        inline: bool,
    ) -> None:
        self.path = path
        self.store = store
        #: Commit in the loop too (the commits do not wait for the disk), and have the thread
        #: flush the log now and then.
        self.inline = inline
        #: Set by the journal once its thread runs; None again once it is closing.
        self.executor: Executor | None = None
        self.rows = 0
        #: Dead letters stored (committed).
        self.dead_rows = 0
        self.last_error: JournalError | None = None
        #: Told of each group that could not be written, for the groups nobody awaits.
        self.on_failure: Callable[[JournalError], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._staged = sql.Batch()
        self._kicked = False
        self._writing: sql.Batch | None = None
        self._next_done: Done | None = None
        self._current_done: Done | None = None
        self._stall = 0.0
        self._commits = 0
        self._events_committed = 0
        self._ops_committed = 0
        self._longest_commit = 0.0
        self._longest_stall = 0.0
        self._failures = 0
        self._last_error_at = 0.0
        self._unflushed = 0
        self._flushing = False
        self._log_flushes = 0

    def insert(self, seq: int, row: tuple[Any, ...]) -> None:
        """Stage storing an event as ``seq``: ``row`` as in :attr:`Batch.inserts`."""
        self._staged.inserts[seq] = row
        if not self._kicked:
            self._kick()

    def insert_later(self, seq: int, row: tuple[Any, ...]) -> None:
        """Stage storing a scheduled event as ``seq``: ``row`` as in :attr:`Batch.later`."""
        self._staged.later[seq] = row
        if not self._kicked:
            self._kick()

    def delete(self, seq: int) -> None:
        """Stage removing ``seq``; an event not yet written is simply dropped."""
        staged = self._staged
        if staged.inserts.pop(seq, None) is None and staged.later.pop(seq, None) is None:
            staged.deletes.append(seq)
            if not self._kicked:
                self._kick()

    def dead_letter(self, id: int, row: tuple[Any, ...]) -> None:
        """Stage storing a dead letter as ``id``: ``row`` as in :attr:`Batch.dead`."""
        self._staged.dead[id] = row
        if not self._kicked:
            self._kick()

    def delete_dead_letter(self, id: int) -> None:
        """Stage removing the dead letter ``id``; one not yet written is simply dropped."""
        if self._staged.dead.pop(id, None) is None:
            self._staged.dead_deletes.append(id)
            if not self._kicked:
                self._kick()

    def dead_letters_staged(self) -> int:
        """Dead letters staged or being written, less those staged for removal."""
        writing = self._writing
        count = len(self._staged.dead) - len(self._staged.dead_deletes)
        if writing is not None:
            count += len(writing.dead) - len(writing.dead_deletes)
        return count

    def checkpoint(self, name: str, value: str) -> None:
        """Stage saving ``value`` as the checkpoint ``name``."""
        self._staged.checkpoints[name] = value
        if not self._kicked:
            self._kick()

    def pending(self) -> bool:
        """Something is staged or being written."""
        return bool(self._staged) or self._writing is not None

    def take_staged(self) -> sql.Batch:
        """Take what is staged, for a journal closing without a loop to write; no group starts after.

        :raises BadCall: a loop uses the journal: a group is being written, or a commit waits
            for one. Nothing was taken.
        """
        waiting = self._next_done is not None and not self._next_done.done()
        if self._writing is not None or waiting:
            raise BadCall(
                f"the journal {self.path} is in use by an event loop (a group is being written or "
                "awaited); it cannot be closed without that loop: await close() in that loop"
            )
        self.executor = None
        batch, self._staged = self._staged, sql.Batch()
        return batch

    def outcome(self) -> Done | None:
        """The outcome of the group that makes everything staged now durable; None if it is.

        A plain method, not a coroutine: ``await journal.commit()`` is made for every event
        ingested, and one coroutine less for each counts.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        if self._staged:
            if self._next_done is None:
                self._next_done = _Outcome(loop=loop)
            if not self._kicked:
                self._kick()
            return self._next_done
        return self._in_flight() if self._writing is not None else None

    async def settled(self) -> None:
        """Return once no group is being written, whatever became of the last one."""
        while self._writing is not None:
            await self._in_flight()

    def _in_flight(self) -> Done:
        """The outcome of the group being written, shared by all who wait for it."""
        if self._current_done is None:
            self._current_done = _Outcome(loop=self._loop)
        return self._current_done

    def _kick(self) -> None:
        if self._kicked or self._writing is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first commit() starts the committer
        self._bind(loop)
        self._kicked = True
        # call_soon, not now: what the current callbacks stage still joins this group.
        loop.call_soon(self._start_group)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop:
            return
        if self._writing is not None:
            raise BadCall(f"the journal {self.path} is in use by another event loop")
        # A previous loop (asyncio.run() called twice) has nothing in flight: forget its futures.
        self._loop = loop
        self._kicked = False
        self._next_done = self._current_done = None

    def _start_group(self) -> None:
        started = time.perf_counter()
        self._kicked = False
        loop = self._loop
        if self._writing is not None or self.executor is None or loop is None:
            return
        if not self._staged:
            # What the waiters committed was appended and removed again before it was written.
            done, self._next_done = self._next_done, None
            if done is not None and not done.done():
                done.set_result(None)
            return
        batch, self._staged = self._staged, sql.Batch()
        self._writing = batch
        self._current_done, self._next_done = self._next_done, None
        try:
            added = self.store.stage(batch)
            seconds = self.store.commit() if self.inline else 0.0
        except BaseException as exc:  # rolled back: the group goes back to be staged
            self._stall = time.perf_counter() - started
            self._group_written(batch, exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like still stop the program
            return
        if not self.inline:  # the commit waits for the disk: the thread makes it
            committing = loop.run_in_executor(self.executor, self.store.commit)
            staged_in = time.perf_counter() - started
            committing.add_done_callback(partial(self._committed_in_thread, batch, added, staged_in))
            self._stall = staged_in
            return
        self._stall = seconds = time.perf_counter() - started
        self._group_written(batch, None, added, seconds)
        self._unflushed += 1
        if self._unflushed >= _FLUSH_EVERY and not self._flushing:
            self._unflushed, self._flushing = 0, True
            flushing = loop.run_in_executor(self.executor, self.store.flush_log)
            flushing.add_done_callback(self._log_flushed)

    def _log_flushed(self, future: asyncio.Future[None]) -> None:
        self._flushing = False
        if future.cancelled():
            return
        cause = future.exception()
        if cause is None:
            self._log_flushes += 1
            return
        # Never swallowed: after a failed sync the kernel may report the next one as a success.
        self._failed(
            JournalError(
                f"the disk failed to write out the write-ahead log of the journal {self.path}: "
                f"{cause}. Groups committed since the last sync may not be on it; check the disk"
            )
        )

    def _committed_in_thread(
        self, batch: sql.Batch, added: sql.Staged, staged_in: float, future: asyncio.Future[float]
    ) -> None:
        if future.cancelled():
            self._group_written(batch, JournalError(f"writing to the journal {self.path} was cancelled"))
        elif (cause := future.exception()) is not None:
            self._group_written(batch, cause)
        else:
            self._group_written(batch, None, added, staged_in + future.result())

    def _group_written(
        self,
        batch: sql.Batch,
        cause: BaseException | None,
        added: sql.Staged | None = None,
        seconds: float = 0.0,
    ) -> None:
        started = time.perf_counter()
        self._writing = None
        done, self._current_done = self._current_done, None
        if cause is None:
            assert added is not None
            self.rows += added.added
            if batch.dead or batch.dead_deletes:
                self.dead_rows += added.dead_added - added.dead_trimmed
                if added.dead_trimmed:
                    logger.warning(
                        "async_nexus: the journal %s keeps at most %d dead letters; the %d oldest were "
                        "removed to make room. Replay or delete dead letters sooner, or give "
                        "SqliteJournal(..., dead_letters_max=) a larger bound",
                        self.path, self.store.dead_max, added.dead_trimmed,
                    )  # fmt: skip
            self._commits += 1
            self._events_committed += len(batch.inserts) + len(batch.later)
            self._ops_committed += len(batch)
            self._longest_commit = max(self._longest_commit, seconds)
        else:
            self._staged = batch.then(self._staged)  # rolled back whole: in front of newer ones
            self._failures += 1
            self._failed(self.failure(cause))
        if done is not None and not done.done():
            done.set_result(cause)
        # After a failure, try again only for someone who asks (a commit() or a new operation):
        # retrying by itself would spin on a full disk.
        if self._next_done is not None or (cause is None and self._staged):
            self._kick()
        self._longest_stall = max(self._longest_stall, self._stall + time.perf_counter() - started)

    def _failed(self, error: JournalError) -> None:
        self.last_error = error
        self._last_error_at = time.time()
        if self.on_failure is not None:
            self.on_failure(error)

    def failure(self, cause: BaseException) -> JournalError:
        """The error a waiter of a group that failed with ``cause`` gets (a new one each time)."""
        what = (
            f"could not write to the journal {self.path}: {cause}. The operations of that commit "
            "stay staged, in order, and the next commit writes them; nothing committed before is lost"
        )
        if sql.is_full(cause):
            code = getattr(cause, "errno", None) or errno.ENOSPC
            message = f"{what}. Make room on its disk (or lift the quota) and commit again"
            return JournalFull(code, message, str(self.path))
        return JournalError(what)

    def stats(self) -> dict[str, float | int]:
        """The counters :meth:`SqliteJournal.stats` reports."""
        commits = self._commits
        return {
            "rows": self.rows,
            "staged": len(self._staged) + len(self._writing or ()),
            "commits": commits,
            "events_per_commit": self._events_committed / commits if commits else 0.0,
            "ops_per_commit": self._ops_committed / commits if commits else 0.0,
            "longest_commit_s": self._longest_commit,
            "longest_loop_stall_s": self._longest_stall,
            "log_flushes": self._log_flushes,
            "failed_commits": self._failures,
            "last_error_at": self._last_error_at,
        }
