"""AsyncEventNexus: the hub of an event-driven program, and its lifecycle.

The nexus is made of parts: what goes in (handlers, filters, sources, events) is
:class:`~async_nexus.intake.NexusIntake`'s, the registrations are
:class:`~async_nexus.registry.NexusRegistry`'s and request/reply is a private part's
(``async_nexus._nexus_requests``). This module adds the lifecycle around the dispatch loop
(:mod:`~async_nexus.dispatch`) and the whole-program helpers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ._nexus_requests import NexusRequests
from ._tasks import stop_on_signals
from .consumers import close_consumers
from .counts import snapshot
from .errors import BadCall, InvalidLoopState, JournalError, LoopAlreadyStarted, LoopStopped
from .intake import NexusState as NexusState  # where code imports it from
from .items import DispatchTracer as DispatchTracer  # where 2.0 code imports them from
from .items import ErrorHook as ErrorHook
from .items import ReplyRoute as ReplyRoute
from .keeper import Keeper
from .registry import NexusRegistry

__all__ = ["AsyncEventNexus"]

logger = logging.getLogger("async_nexus")

_RUNNING = (NexusState.STARTING, NexusState.LOOPING, NexusState.STOPPING)
#: Journals being closed in a task of their own (a task needs a reference to live).
_CLOSING: set[asyncio.Task[None]] = set()


def _in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class AsyncEventNexus(NexusRegistry, NexusRequests):
    """The hub: sources feed it events, its loop routes each one to filters and handlers.

    :param multiple: allow several handlers per type (they all run, in registration
        order); without it a second handler for a type raises :class:`LookupError`.
    :param maxsize: bound of the queue (``0``: unbounded; by default :attr:`QUEUE_MAXLEN`,
        4096). ``await ingest()`` waits while it is full, ``ingest_nowait()`` raises
        :class:`~async_nexus.errors.QueueFull`.
    :param fail_fast: stop at the first failure and make :meth:`loop_forever` raise it.
    :param drain_timeout: how long a graceful :meth:`stop` keeps dispatching what is queued
        and waits for concurrent handlers in flight.
    :param max_chain: how many secondary events may descend from one event before
        the next one is refused with :class:`~async_nexus.errors.RunawayChain`.
    :param slow_callback_warning: seconds a handler, filter or any other code may hold the
        event loop before a ``WARNING`` names it (file, line, function); ``None``: no
        warning. Watched from a thread beside the loop, not per event.
    :param journal: keep every accepted event on disk until its handling is over (handled,
        or handed to the dead letters), and dispatch what was kept at the next start: a
        path (``str`` or ``os.PathLike``) or a :class:`~async_nexus.journal.SqliteJournal`.
        ``await ingest()`` then returns once the event is durable.
    """

    __slots__ = ()

    # -- the loop -------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`loop_forever` in a task and return it; events are accepted at once."""
        self._check_startable()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise BadCall(
                "start() needs a running event loop; call it from async code, or use nexus.run()"
            ) from None
        self._state = NexusState.STARTING
        self._task = asyncio.create_task(self._loop(), name="async_nexus loop")
        self._task.add_done_callback(self._loop_ended)
        return self._task

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if self._state is NexusState.STOPPED:
            return
        # Cancelled before its first turn: none of what _loop does at its end has happened.
        self._state = NexusState.STOPPED
        self._accepting = self._sources_open = False
        self._dispatcher.refusing = True
        self._dispatcher.wake_joiners()
        if self._keeper is not None:
            self._close_journal_soon(self._keeper)

    async def loop_forever(self) -> None:
        """Run the loop until :meth:`stop` (graceful) or cancellation (hard stop).

        :raises LoopAlreadyStarted: the loop is already running.
        :raises LoopStopped: the nexus has stopped; nexuses do not restart.
        """
        self._check_startable()
        self._state = NexusState.STARTING
        self._task = asyncio.current_task()
        await self._loop()

    def _check_startable(self) -> None:
        if self._state in (NexusState.STARTING, NexusState.LOOPING):
            raise LoopAlreadyStarted(
                f"the nexus loop is already {self._state.name}; start it once, "
                "and await the task start() returned"
            )
        if self._state is not NexusState.READY:
            raise LoopStopped(
                f"the nexus is {self._state.name} and cannot start again; create a new AsyncEventNexus"
            )

    async def _loop(self) -> None:
        dispatcher = self._dispatcher
        self._started_at = time.monotonic()
        try:
            if self._keeper is not None:
                for seq, event, due in self._keeper.take_later():  # replayed: keep their due time
                    self._schedule_kept(seq, event, max(0.0, due - time.time()))
            self._watchdog.start()
            if not dispatcher.stop_requested:
                self._state = NexusState.LOOPING
                self._feeds.start_all()
            else:
                self._state = NexusState.STOPPING
            await dispatcher.run()
            await self._shut_down()
        except asyncio.CancelledError:
            dispatcher.halted = dispatcher.interrupt = True
            dispatcher.scheduler.cancel_all()
            await self._feeds.stop_all()
            await dispatcher.cancel_lanes()
            await self._feeds.close_all()
            await self._close_journal()
            raise
        finally:
            self._watchdog.stop()
            self._state = NexusState.STOPPED
            self._stopped_at = time.monotonic()
            self._accepting = self._sources_open = False
            dispatcher.refusing = True
            dispatcher.wake_joiners()
        if dispatcher.failure is not None:
            raise dispatcher.failure

    async def join(self) -> None:
        """Wait until nothing is queued and no handler is running, concurrent ones included.

        Do not await it inside a handler: the handler would wait for itself.

        :raises BadCall: the nexus was never started and events wait in its queue, which
            nothing would ever dispatch.
        """
        dispatcher = self._dispatcher
        if self._state is NexusState.STOPPED:
            return
        quiet = not len(self._queue) and not dispatcher.busy
        if self._state is NexusState.READY:
            if quiet:
                return
            raise BadCall(
                f"join() on a nexus that was never started would wait for ever: {len(self._queue)} "
                "events are queued and no loop dispatches them. Call nexus.start() first"
            )
        if quiet and (dispatcher.waiting or self._state is not NexusState.LOOPING):
            return
        joiner = asyncio.get_running_loop().create_future()
        dispatcher.joiners.append(joiner)
        await joiner

    def stop(self) -> None:
        """Stop gracefully: sources stop, what is queued is dispatched, sources close.

        Safe to call at any time, also before the loop task has had its first turn, and
        more than once. ``ingest()`` is refused from now on. Concurrent handlers in flight
        finish within ``drain_timeout``. Cancel the loop task for a hard stop.
        """
        dispatcher = self._dispatcher
        if self._state is NexusState.STOPPED or dispatcher.stop_requested:
            return
        dispatcher.stop_requested = dispatcher.interrupt = True
        self._accepting = False
        if self._state in (NexusState.STARTING, NexusState.LOOPING):
            self._state = NexusState.STOPPING
        dispatcher.nudge()

    async def _shut_down(self) -> None:
        dispatcher = self._dispatcher
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self._drain_timeout, self._drain_expired)
        try:
            await self._feeds.stop_all()
            for producer in list(self._feeds.producers):
                producer._on_stop()
            dispatcher.interrupt = dispatcher.halted
            await dispatcher.run()
        finally:
            deadline.cancel()
        self._sources_open = False
        left = len(self._queue)
        later, retries = dispatcher.scheduler.cancel_all()
        cut = await dispatcher.cancel_lanes()
        # Consumers holding buffers (a sender's) write them out, in what is left of the time.
        await close_consumers(self._router.consumers(), deadline.when() - loop.time(), dispatcher.notify)
        if (left or cut) and dispatcher.failure is None:
            logger.warning(
                "async_nexus: drain timeout of %ss expired; %d queued events were not dispatched "
                "and %d concurrent handlers were cancelled",
                self._drain_timeout,
                left,
                cut,
            )
        if later or retries:
            logger.warning(
                "async_nexus: stopped with %d events scheduled for later (ingest_later/ingest_at) "
                "not yet due and %d events waiting for a retry; they were not dispatched%s",
                later,
                retries,
                "" if self._keeper is None else ", and the journal keeps them for the next start",
            )
        await self._feeds.close_all()
        await self._close_journal()

    def _close_journal_soon(self, keeper: Keeper) -> None:
        keeper.closing = True
        (closing := asyncio.ensure_future(self._close_journal())).add_done_callback(_CLOSING.discard)
        _CLOSING.add(closing)

    async def _close_journal(self) -> None:
        if self._keeper is not None:
            try:
                await self._keeper.close()
            except JournalError as exc:  # what it could not write is lost: say so, loudly
                await self._dispatcher.notify(exc, self._keeper.journal)

    def _drain_expired(self) -> None:
        self._dispatcher.halted = self._dispatcher.interrupt = True
        self._dispatcher.nudge()

    # -- whole-program helpers ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot of what the nexus has done, cheap enough to take every second.

        ``ingested`` (accepted into the queue, secondary events included), ``dispatched``,
        ``filtered``, ``unhandled``, ``failed`` (events whose handling raised), ``errors``
        (every report to the error hook, sources' included), ``in_flight`` (events being
        handled by concurrent handlers now), ``scheduled`` (events from
        :meth:`ingest_later` and :meth:`ingest_at` not due yet), ``retrying`` (events
        waiting for a retry), ``queued`` and its ``high_water`` mark,
        ``uptime`` (seconds the loop has run), ``by_type`` (the per-event counts for each
        type) and ``by_source`` (events accepted from each source, by its
        :attr:`~async_nexus.EventSource.name`; ``"ingest()"`` for direct calls,
        ``"secondary"`` for handlers' events).

        >>> AsyncEventNexus().stats()["dispatched"]
        0
        """
        return snapshot(
            self._router, self._queue, self._dispatcher, self._feeds, self._keeper, uptime=self._uptime()
        )

    def _uptime(self) -> float:
        started, stopped = self._started_at, self._stopped_at
        return 0.0 if started is None else (stopped or time.monotonic()) - started

    def cleanup(self) -> None:
        """Close every source and forget every registration.

        A nexus with a journal whose loop never ran closes the journal too: what was staged
        (by ``ingest_nowait()``, say) is written, and the file is unlocked, so that another
        nexus may open it. A nexus whose loop ran closed its journal when the loop ended.

        :raises InvalidLoopState: the loop is running; stop it and await its task first.
        :raises JournalError: the journal could not write what was staged
            (:class:`~async_nexus.errors.JournalFull`: no room). It is closed and unlocked all
            the same, and what it had committed before is kept.
        """
        if self._state in _RUNNING:
            raise InvalidLoopState(
                f"cleanup() while the loop is {self._state.name}; call stop() and await the loop task first"
            )
        self._router.clear()
        self._feeds.close_without_loop()
        keeper = self._keeper
        if keeper is not None and self._state is NexusState.READY and not keeper.closing:
            try:
                keeper.close_without_loop()
            except BadCall:
                # Never started, yet this thread's loop is writing a group of its journal (an
                # ingest): the loop closes it, once the group is written.
                if not _in_a_loop():
                    raise
                self._close_journal_soon(keeper)

    def __enter__(self) -> AsyncEventNexus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._state in _RUNNING:
            self.stop()  # the loop closes the sources when it returns
        else:
            self.cleanup()

    async def __aenter__(self) -> AsyncEventNexus:
        self.start()
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        self.stop()
        task = self._task
        if task is not None:
            try:
                await task
            except Exception:
                if exc_type is None:
                    raise
        self.cleanup()

    def run(self) -> None:
        """Run the loop until SIGINT or SIGTERM, then stop gracefully; a second signal stops hard.

        The blocking entry for a daemon's ``main()``.
        """
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        task = self.start()
        with stop_on_signals(self.stop, task):
            await task
