"""AsyncEventNexus: the hub of an event-driven program.

The nexus is one object that holds its parts and delegates to them: its lifecycle, its
queue, the admission that every event enters by, the routing table and the
registrations that fill it, the dispatch loop and what becomes of failures,
request/reply, the scheduler, the sources' feeds and the port they reach the nexus by,
the journal's keeper and the watchdog. The parts are private (``async_nexus._core``);
this module adds the one run of the loop around them: start, dispatch until drained or
halted, close. The Architecture page of the docs draws the parts and the path of an event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from ._core.admission import Admission, Door
from ._core.asking import RequestReply
from ._core.counts import snapshot
from ._core.dead_letters import DeadLetters, held_store
from ._core.dispatch import Dispatcher
from ._core.feeds import Feeds
from ._core.items import DispatchTracer, ErrorHook, ReplyRoute
from ._core.keeper import Keeper, as_journal
from ._core.lifecycle import Lifecycle, NexusState
from ._core.outcomes import Outcomes
from ._core.queue import Doorbell, EventQueue
from ._core.registrations import Registrations
from ._core.requests import Requests
from ._core.routing import Router, TypeSpec
from ._tasks import stop_on_signals
from .consumers import HandlerLike, as_callable, close_consumers
from .dead_letters import DeadLetter
from .errors import BadCall, BadValue, InvalidLoopState
from .events import Event, EventFactory
from .journal import SqliteJournal
from .policy import Retry
from .schedule import ScheduledEvent, Scheduler
from .sources import EventProducer, EventSource, SimpleEventConverter
from .watchdog import Watchdog

__all__ = ["AsyncEventNexus", "NexusState", "DispatchTracer", "ErrorHook", "ReplyRoute"]

logger = logging.getLogger("async_nexus")

F = TypeVar("F", bound=Callable[..., Any])

_INGEST = Door.INGEST  # a global read on the hot path


class AsyncEventNexus(EventFactory):
    """The hub: sources feed it events, its loop routes each one to filters and handlers.

    :param multiple: allow several handlers per type (they all run, in registration
        order); without it a second handler for a type raises
        :class:`~async_nexus.errors.AlreadyRegistered`, a :class:`LookupError`.
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
    :param yield_every: seconds of dispatching after which the loop lets the rest of the
        program run while a backlog drains (timers, sources, other tasks); see
        :attr:`yield_every`.
    :param journal: keep every accepted event on disk until its handling is over (handled,
        or handed to the dead letters), and dispatch what was kept at the next start: a
        path (``str`` or ``os.PathLike``) or a :class:`~async_nexus.journal.SqliteJournal`.
        ``await ingest()`` then returns once the event is durable. The journal keeps the
        :meth:`dead letters <dead_letters>` too.
    """

    __slots__ = (
        "_life", "_queue", "_doorbell", "_router", "_requests", "_scheduler", "_outcomes",
        "_keeper", "_admission", "_dispatcher", "_feeds", "_registrations", "_asking",
        "_watchdog", "_drain_timeout", "_deadline", "_task", "_started_at", "_stopped_at",
        "_dead_letters",
    )  # fmt: skip

    READY = NexusState.READY
    STARTING = NexusState.STARTING
    LOOPING = NexusState.LOOPING
    STOPPING = NexusState.STOPPING
    STOPPED = NexusState.STOPPED

    #: The bound of the queue when ``maxsize`` is not given. A subclass may set its own, as
    #: in async-nexus 1.0 (where it was 50).
    QUEUE_MAXLEN = 4096

    def __init__(
        self,
        multiple: bool = False,
        *,
        maxsize: int | None = None,
        fail_fast: bool = False,
        drain_timeout: float = 10.0,
        max_chain: int = 1000,
        slow_callback_warning: float | None = 0.1,
        yield_every: float = 0.010,
        journal: str | os.PathLike[str] | SqliteJournal | None = None,
    ) -> None:
        super().__init__()
        self._life = life = Lifecycle()
        self._queue = queue = EventQueue(self.QUEUE_MAXLEN if maxsize is None else maxsize)
        self._doorbell = doorbell = Doorbell(queue)
        life.on_change(doorbell.ring)  # the loop looks again at every step of the lifecycle
        self._router = router = Router(multiple=multiple)
        self._requests = requests = Requests()
        self._scheduler = scheduler = Scheduler()
        journal = None if journal is None else as_journal(journal)
        store = held_store(journal)
        self._outcomes = outcomes = Outcomes(router, life, store.keep, fail_fast=fail_fast)
        self._keeper = keeper = None if journal is None else Keeper(journal, outcomes.notify)
        self._admission = admission = Admission(
            queue, life, doorbell, requests, router, scheduler, keeper, max_chain=max_chain
        )
        self._dead_letters = DeadLetters(store, admission, None if keeper is None else keeper.durable)
        self._dispatcher = dispatcher = Dispatcher(
            queue, doorbell, router, requests, admission, outcomes, life, scheduler
        )
        self._feeds = feeds = Feeds(self, admission, outcomes, life)
        self._registrations = Registrations(router, dispatcher, scheduler, feeds, life, keeper)
        self._asking = RequestReply(requests, admission, dispatcher)
        self._watchdog = Watchdog(slow_callback_warning)
        self.yield_every = yield_every
        self._drain_timeout = drain_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        if keeper is not None:
            keeper.replay(admission.place)

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> NexusState:
        """Where the nexus is in its lifecycle."""
        return self._life.state

    @property
    def drain_timeout(self) -> float:
        """Seconds a graceful :meth:`stop` keeps dispatching what is queued; settable."""
        return self._drain_timeout

    @drain_timeout.setter
    def drain_timeout(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise BadValue(f"drain_timeout must be a number of seconds >= 0, got {seconds!r}")
        self._drain_timeout = float(seconds)

    @property
    def yield_every(self) -> float:
        """Seconds of dispatching after which the loop yields to the rest of the program; settable.

        While a backlog drains, the loop lets the event loop run its other callbacks (timers,
        sources, transports, the journal's commits, the program's other tasks) at least this
        often; 10 ms by default. Smaller: those wait less, dispatching costs a little more.
        A handler that holds the loop longer than this still holds it that long.
        """
        return self._dispatcher.yield_every

    @yield_every.setter
    def yield_every(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
            raise BadValue(f"yield_every must be a number of seconds > 0, got {seconds!r}")
        self._dispatcher.yield_after(float(seconds))

    @property
    def fail_fast(self) -> bool:
        """Whether the first failure stops the loop and is raised by :meth:`loop_forever`; settable."""
        return self._outcomes.fail_fast

    @fail_fast.setter
    def fail_fast(self, value: bool) -> None:
        self._outcomes.set_fail_fast(bool(value))

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task running the loop, once :meth:`start` or :meth:`loop_forever` began it."""
        return self._task

    @property
    def loop_task(self) -> asyncio.Task[None] | None:
        """Compatibility alias of :attr:`task`, kept from async-nexus 1.0."""
        return self._task

    @property
    def multiple(self) -> bool:
        """Whether several handlers may be registered for one type."""
        return self._router.multiple

    @property
    def queue(self) -> asyncio.Queue[Any]:
        """The queue as handlers see it: ``put``/``put_nowait`` add secondary events."""
        return self._dispatcher.handler_queue

    # -- events in ------------------------------------------------------------------

    async def ingest(self, event: Event) -> None:
        """Queue ``event`` for dispatch, waiting while the queue is full.

        It does not switch tasks while there is room, except once when the woken dispatch
        loop has not run yet and 512 events wait for it: a producer that never awaits
        anything else still lets the loop keep up.

        :raises LoopStopped: the nexus was stopped; the event was not accepted.
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        """
        admission = self._admission
        if admission.fast and isinstance(event, Event):
            # The admission's most common case, written out because it runs for every event:
            # with no journal and no tracer, steps 3 to 6 have nothing to do, and a FIFO that
            # holds events of this priority already, below the queue's mark, needs only the
            # append (see EventQueue). Everything else is admission.admit()'s.
            queue = self._queue
            size = queue.size
            bucket = queue.buckets.get(event.priority)
            if bucket and size < queue.mark:
                bucket.append(event)
                queue.size = size + 1
                return
        waiting = admission.admit(event, _INGEST)
        if waiting is not None:
            await waiting

    def ingest_nowait(self, event: Event) -> None:
        """Queue ``event`` now, or raise :class:`~async_nexus.errors.QueueFull`.

        With a journal, the event is durable at the next group commit, not yet on return.
        """
        self._admission.admit(event, Door.INGEST_NOWAIT)

    def ingest_later(self, delay: float, event: Event) -> ScheduledEvent:
        """Queue ``event`` in ``delay`` seconds, on the event loop's clock; returns at once.

        The returned :class:`~async_nexus.ScheduledEvent` can :meth:`~async_nexus.ScheduledEvent.cancel`
        it until then. When it is due, the event is queued past the queue's bound (it was
        accepted already) and dispatched as any other. ``stats()["scheduled"]`` counts
        events not due yet; a graceful stop does not wait for them, and logs how many there were.

        :raises LoopStopped: the nexus was stopped.
        :raises BadCall: ``delay`` is not a number >= 0 (:class:`~async_nexus.errors.BadValue`),
            or no event loop runs (call it from a coroutine or a handler).
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        """
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not delay >= 0:
            raise BadValue(f"ingest_later() takes a delay in seconds >= 0, got {delay!r}")
        return self._admission.admit_later(delay, event, Door.LATER)

    def ingest_at(self, when: dt.datetime, event: Event) -> ScheduledEvent:
        """Queue ``event`` at ``when``, an aware :class:`~datetime.datetime`; as :meth:`ingest_later`.

        A time in the past queues it at once. The wait is measured on the event loop's
        clock from now, so a change of the system clock afterwards does not move it.

        :raises BadCall: ``when`` is not an aware ``datetime`` (give it a ``tzinfo``:
            ``datetime.now(timezone.utc) + timedelta(...)``), or no event loop runs.
        """
        if not isinstance(when, dt.datetime) or when.utcoffset() is None:
            raise BadValue(
                f"ingest_at() takes an aware datetime (with a tzinfo, such as "
                f"datetime.now(timezone.utc) + timedelta(minutes=5)), got {when!r}"
            )
        delay = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
        return self._admission.admit_later(max(0.0, delay), event, Door.AT)

    async def request(self, event: Event, *, timeout: float = 10.0) -> Event:
        """Dispatch ``event`` as a request and return the answer.

        The answer is the event that a handler of the request returns (or passes to
        :meth:`reply`), here or in another domain: across a boundary or a transport, the
        request carries a ``correlation-id`` header and the answer comes back with it in
        ``in-reply-to``. ``event`` itself is not changed; a copy with the header is sent.

        From a concurrent handler (``concurrency=N``) the request goes ahead of every
        queued event and is taken even by a full registration: the caller never waits for
        room it holds. From a handler that runs in the loop it raises :class:`BadCall`.

        >>> async def main():
        ...     async with AsyncEventNexus() as nexus:
        ...         nexus.add_handler("sum?", lambda e, q: Event(0, "sum", 0, sum(e.payload)))
        ...         answer = await nexus.request(Event(1, "sum?", 0, [1, 2, 3]))
        ...         print(answer.payload)
        >>> asyncio.run(main())
        6

        :raises RequestTimeout: no answer came within ``timeout`` seconds; nothing waits
            for it any more, and a late answer is dispatched like any other event.
        :raises BadCall: called from a handler or filter that runs in the loop.
        :raises Exception: whatever a handler of the request in this nexus raised, or
            :class:`~async_nexus.errors.UnhandledEvent` if no handler took it here (the
            error hook sees it too).
        """
        return await self._asking.request(event, timeout)

    def reply(self, request: Event, answer: Event) -> None:
        """Answer ``request`` while handling it, instead of (or besides) returning ``answer``.

        :raises BadCall: ``request`` is not a request that this nexus is dispatching now.
        """
        self._asking.reply(request, answer)

    # -- registrations --------------------------------------------------------------

    def add_handler(
        self,
        event_type: TypeSpec,
        handler: HandlerLike,
        *,
        concurrency: int = 1,
        key: Callable[[Event], Hashable] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> None:
        """Route events of ``event_type`` to ``handler``.

        ``event_type`` is an int or str for one type, ``-1`` for the default handler, an
        inclusive ``(start, end)`` int range, a shell pattern such as ``"sensor.*"``, or a
        :class:`~async_nexus.NamedEvent` subclass. ``handler`` is ``async def h(event,
        queue)``, ``def h(event, queue)`` or an :class:`~async_nexus.EventConsumer`.

        :param concurrency: how many events of this registration are handled at once. With
            1, the default, the loop runs the handler itself, one event at a time. With N >
            1 the handler runs beside the loop, in a task per event, and the loop waits only
            for room: at most N events are held, running or waiting behind a busy key.
        :param key: ``key(event) -> hashable``, with ``concurrency`` > 1: events of equal key
            are handled one at a time, in the order the loop dispatched them; different
            keys side by side.
        :param timeout: seconds an ``async`` handler may take per event (per attempt, under
            ``retry=``); one that runs longer is cancelled and fails with
            :class:`~async_nexus.errors.HandlerTimeout`, which ``retry=`` retries like any failure.
        :param retry: call the handler again when it fails, after a backoff (see
            :class:`~async_nexus.Retry`); the wait holds neither the loop nor other events,
            except later events of the same ``key``, which keep their order. Only the final
            failure reaches the error hook and makes the event a dead letter.
        :raises AlreadyRegistered: (a :class:`LookupError`) a handler is already registered
            for that type and the nexus was not created with ``multiple=True``.
        :raises MisconfiguredEventConsumer: (a :class:`TypeError`) ``handler`` cannot be
            called as ``handler(event, queue)``.
        :raises BadCall: ``concurrency`` is not an int >= 1, ``key`` is not callable, or
            ``timeout`` is not a positive number for an ``async`` handler, or ``retry``
            is not a :class:`~async_nexus.Retry`.
        """
        self._registrations.add_handler(
            event_type, handler, concurrency=concurrency, key=key, timeout=timeout, retry=retry
        )

    def remove_handler(self, event_type: TypeSpec, handler: HandlerLike) -> None:
        """Undo :meth:`add_handler`; concurrent handlers in flight finish their events.

        :raises NotRegistered: (a :class:`LookupError`) ``handler`` is not registered for
            ``event_type``.
        """
        self._registrations.remove_handler(event_type, handler)

    def add_filter(self, filter: HandlerLike) -> None:
        """Run ``filter(event, queue)`` on every event, in registration order, before routing.

        A true result consumes the event: nothing after it sees the event. Filters run in
        the loop, one at a time, before any handler.
        """
        self._registrations.add_filter(filter)

    def remove_filter(self, filter: HandlerLike) -> None:
        """Undo :meth:`add_filter`.

        :raises NotRegistered: (a :class:`LookupError`) ``filter`` is not registered.
        """
        self._registrations.remove_filter(filter)

    def on(
        self,
        event_type: TypeSpec,
        *,
        concurrency: int = 1,
        key: Callable[[Event], Hashable] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_handler`; returns the function unchanged.

        >>> from async_nexus import AsyncEventNexus
        >>> nexus = AsyncEventNexus()
        >>> @nexus.on(99)
        ... async def teapot(event, queue):
        ...     print("teapot", event.id)
        """
        self._registrations.check_options(concurrency, key, retry)

        def register(handler: F) -> F:
            self.add_handler(
                event_type, handler, concurrency=concurrency, key=key, timeout=timeout, retry=retry
            )
            return handler

        return register

    def filter(self, filter: F) -> F:
        """Decorator form of :meth:`add_filter`; returns the function unchanged."""
        self.add_filter(filter)
        return filter

    def on_error(self, callback: F) -> F:
        """Send every failure inside the nexus to ``callback(exception, event_or_source)``.

        It replaces the default, which logs to the ``async_nexus`` logger. The callback may be
        sync or async; usable as a decorator.
        """
        as_callable(callback, "error hook", called_as="hook(exception, subject)")
        self._outcomes.set_error_hook(callback)
        return callback

    def on_dead_letter(self, callback: F) -> F:
        """Call ``callback(event, exception)`` for each event whose handling finally failed.

        An event is a *dead letter* when a handler failed on it for the last time (after
        its retries, if it has ``retry=``; at once without) or when no handler took it
        (:class:`~async_nexus.errors.UnhandledEvent`). The callback may be sync or async
        and runs after the error hook; usable as a decorator. A filter that raises does not
        make a dead letter: the event goes on to the handlers. With ``multiple=True``, each
        registration that finally fails on an event makes one call. The nexus keeps each
        dead letter as well, whatever the callback does: see :meth:`dead_letters`.
        """
        as_callable(callback, "dead-letter hook", called_as="hook(event, exception)")
        self._outcomes.set_dead_letter_hook(callback)
        return callback

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(
        self, *, limit: int = 100, event_type: int | str | None = None
    ) -> list[DeadLetter]:
        """The dead letters kept, newest first: at most ``limit``, only of ``event_type`` if given.

        Each event whose handling finally failed (see :meth:`on_dead_letter`) is kept as a
        :class:`~async_nexus.DeadLetter`: with a journal, in the journal file (written in the
        transaction that removes the event, kept across restarts, at most
        ``SqliteJournal(..., dead_letters_max=)``, 10,000 by default, the oldest going
        first); without one, the last 1,000 in memory, lost when the process ends. With
        ``multiple=True``, each registration that finally fails on an event makes one. An
        event from a transport with a dead-letter place of its own (Redis's
        ``<stream>:dead``) is kept there instead, not twice.

        >>> async def main():
        ...     async with AsyncEventNexus() as nexus:
        ...         nexus.on_error(lambda exc, subject: None)  # no log line here
        ...         await nexus.ingest(Event(7, "nobody.handles.this"))
        ...         await nexus.join()
        ...         [letter] = await nexus.dead_letters()
        ...         print(letter.event.id, letter.reason, letter.exception)
        >>> asyncio.run(main())
        7 unhandled UnhandledEvent

        :raises BadCall: ``limit`` is not an int >= 0, or ``event_type`` not an int or str;
            with a journal, also once the nexus has stopped (its journal is closed).
        :raises JournalError: what the journal had staged could not be written.
        """
        return await self._dead_letters.list(limit, event_type)

    async def replay_dead_letters(self, ids: Iterable[int] | None = None, *, all: bool = False) -> int:
        """Send the dead letters ``ids`` (or ``all=True``: every one) back into the queue.

        Each goes back as the same event (id, type, priority, payload, headers) with the
        header :data:`~async_nexus.dead_letters.REPLAYED` (``"replayed"``) set to how many
        times it has been replayed: ``"1"`` the first time. It enters like an ``ingest()``
        (open until :meth:`stop`), past the queue's bound, and its dead letter is removed in
        the same step; with a journal, the event's new row and that removal are written in
        one transaction, and this returns once they are durable. An event that fails again
        becomes a dead letter again. Ids that name no dead letter are skipped.

        :returns: how many went back into the queue.
        :raises BadCall: neither ``ids`` nor ``all=True`` was passed, or both.
        :raises LoopStopped: the nexus was stopped; nothing was replayed.
        """
        return await self._dead_letters.replay(ids, all)

    async def delete_dead_letters(self, ids: Iterable[int] | None = None, *, all: bool = False) -> int:
        """Forget the dead letters ``ids`` (or ``all=True``: every one); unknown ids are skipped.

        :returns: how many were removed.
        :raises BadCall: neither ``ids`` nor ``all=True`` was passed, or both.
        """
        return await self._dead_letters.delete(ids, all)

    def add_converter(self, converter: SimpleEventConverter) -> None:
        """Pull events from ``converter`` with a pump task of its own while the loop runs."""
        self._registrations.add_converter(converter)

    def add_producer(self, producer: EventProducer) -> None:
        """Register ``producer``: its :meth:`~EventProducer.start` runs when the loop starts.

        The producer gets this nexus's :class:`~async_nexus.sources.SourcePort`, which is
        how it delivers events here.
        """
        self._registrations.add_producer(producer)

    def register(self, source: EventSource) -> None:
        """Add a converter or a producer, whichever ``source`` is."""
        self._registrations.register(source)

    def trace_with(self, tracer: DispatchTracer | None) -> None:
        """Trace every dispatch with ``tracer`` from now on; ``None`` stops tracing.

        The extension point of tracing integrations: :func:`async_nexus.tracing.instrument`
        plugs OpenTelemetry in through it. Events being dispatched finish their spans.
        """
        self._admission.trace_with(tracer)
        self._dispatcher.trace_with(tracer)

    # -- the loop -------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`loop_forever` in a task and return it; events are accepted at once.

        :raises LoopAlreadyStarted: the loop is already running.
        :raises LoopStopped: the nexus has stopped; nexuses do not restart.
        :raises BadCall: no event loop runs here.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise BadCall(
                "start() needs a running event loop; call it from async code, or use nexus.run()"
            ) from None
        self._life.start()
        self._task = asyncio.create_task(self._run(), name="async_nexus loop")
        self._task.add_done_callback(self._loop_ended)
        return self._task

    async def loop_forever(self) -> None:
        """Run the loop until :meth:`stop` (graceful) or cancellation (hard stop).

        :raises LoopAlreadyStarted: the loop is already running.
        :raises LoopStopped: the nexus has stopped; nexuses do not restart.
        """
        self._life.start()
        self._task = asyncio.current_task()
        await self._run()

    def stop(self) -> None:
        """Stop gracefully: sources stop, what is queued is dispatched, sources close.

        Safe to call at any time, also before the loop task has had its first turn, and
        more than once. ``ingest()`` is refused from now on. Concurrent handlers in flight
        finish within ``drain_timeout``. Cancel the loop task for a hard stop.
        """
        self._life.stop()

    async def join(self) -> None:
        """Wait until nothing is queued and no handler is running, concurrent ones included.

        Do not await it inside a handler: the handler would wait for itself.

        :raises BadCall: the nexus was never started and events wait in its queue, which
            nothing would ever dispatch.
        """
        life, dispatcher = self._life, self._dispatcher
        if life.stopped:
            return
        quiet = not len(self._queue) and not dispatcher.busy
        if life.state is NexusState.READY:
            if quiet:
                return
            raise BadCall(
                f"join() on a nexus that was never started would wait for ever: {len(self._queue)} "
                "events are queued and no loop dispatches them. Call nexus.start() first"
            )
        if quiet and (dispatcher.waiting or not life.looping):
            return
        await dispatcher.wait_until_quiet()

    async def _run(self) -> None:
        """The one run of the loop: start the sources, dispatch until drained or halted, close."""
        life, dispatcher = self._life, self._dispatcher
        self._started_at = time.monotonic()
        stopper: asyncio.Task[None] | None = None
        try:
            if self._keeper is not None:
                loop = asyncio.get_running_loop()
                for seq, event, due in self._keeper.take_later():  # replayed: keep their due time
                    self._admission.schedule_kept(seq, event, loop.time() + max(0.0, due - time.time()))
            self._watchdog.start()
            if life.begin():
                self._feeds.start_all()
            stopper = asyncio.create_task(self._stop_sources(), name="async_nexus stop")
            await dispatcher.run()
            life.close()
            await self._close(stopper)
        except asyncio.CancelledError:
            life.halt("its loop task was cancelled (a hard stop)")
            await self._close_now(stopper)
            raise
        finally:
            self._watchdog.stop()
            if self._deadline is not None:
                self._deadline.cancel()
            life.end()
            self._stopped_at = time.monotonic()
            dispatcher.wake_joiners()
        if self._outcomes.failure is not None:
            raise self._outcomes.failure

    async def _stop_sources(self) -> None:
        """Once a stop is asked for: start the drain's clock, stop the sources, then drain."""
        await self._life.wait_for_stop()
        self._deadline = asyncio.get_running_loop().call_later(
            self._drain_timeout, self._life.halt, f"its drain timeout of {self._drain_timeout:g}s expired"
        )
        await self._feeds.stop_all()
        self._life.sources_stopped()

    async def _close(self, stopper: asyncio.Task[None]) -> None:
        """The loop left, drained or halted: close what it ran, saying what it did not dispatch."""
        loop = asyncio.get_running_loop()
        if not stopper.done():  # halted before the sources were stopped
            stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
        await self._feeds.cancel_tasks()
        left = len(self._queue)
        later, retries = self._scheduler.cancel_all()
        cut = await self._dispatcher.cancel_lanes()
        # Consumers holding buffers (a sender's) write them out, in what is left of the time.
        deadline = self._deadline
        remaining = self._drain_timeout if deadline is None else deadline.when() - loop.time()
        await close_consumers(self._registrations.consumers(), remaining, self._outcomes.notify)
        if (left or cut) and self._outcomes.failure is None:
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
        if self._keeper is not None:
            await self._keeper.close()

    async def _close_now(self, stopper: asyncio.Task[None] | None) -> None:
        """The loop task was cancelled: a hard stop, nothing waits for what is in flight."""
        if stopper is not None:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
        self._scheduler.cancel_all()
        await self._feeds.cancel_tasks()
        await self._dispatcher.cancel_lanes()
        await self._feeds.close_all()
        if self._keeper is not None:
            await self._keeper.close()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if self._life.stopped:
            return
        # Cancelled before its first turn: none of what _run does at its end has happened.
        self._life.end()
        self._dispatcher.wake_joiners()
        if self._keeper is not None:
            self._keeper.close_soon()

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
        ``"secondary"`` for handlers' events), ``dead_letters`` (how many
        :meth:`dead letters <dead_letters>` are kept now).

        Also: ``state`` (the :class:`NexusState`'s name), ``handled`` (in total and per
        type: dispatched events whose handling is over and that were not filtered,
        unhandled or failed; one waiting for a retry counts until its last attempt fails),
        ``registrations`` (one dict per handler, in registration
        order: its ``type``, ``handler`` name, ``concurrency``, ``in_flight`` — events its
        concurrent handler holds now, ``None`` for a handler the loop runs itself — and the
        name of its ``key`` function or ``None``), ``longest_loop_stall`` (the longest time
        the watchdog's heartbeat waited for the event loop, in seconds: a lower bound of the
        longest time some code held the loop; it looks every half ``slow_callback_warning``,
        so shorter holds may go unseen, and stays 0.0 without a watchdog) and, with a
        journal, ``journal``: :meth:`SqliteJournal.stats()
        <async_nexus.journal.SqliteJournal.stats>` and ``bytes``, the size of its file and
        its write-ahead log.

        >>> AsyncEventNexus().stats()["dispatched"]
        0
        """
        return snapshot(
            self._router,
            self._queue,
            self._admission,
            self._dispatcher,
            self._outcomes,
            self._scheduler,
            self._feeds,
            self._keeper,
            self._watchdog,
            self._dead_letters,
            state=self._life.state.name,
            uptime=self._uptime(),
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
        if self._life.running:
            raise InvalidLoopState(
                f"cleanup() while the loop is {self.state.name}; call stop() and await the loop task first"
            )
        self._registrations.clear()
        self._feeds.close_without_loop()
        if self._keeper is not None and self.state is NexusState.READY:
            self._keeper.close_without_loop()

    def __enter__(self) -> AsyncEventNexus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._life.running:
            self.stop()  # the loop closes the sources when it returns
        else:
            self.cleanup()

    async def __aenter__(self) -> AsyncEventNexus:
        self.start()
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, traceback: object) -> None:
        self.stop()
        task = self._task
        if task is not None:
            try:
                await task
            except Exception as failure:
                if exc is not None and failure.__context__ is None:
                    # Both failed: the loop's failure goes on, with the body's as its context,
                    # as Python chains an exception raised while another is handled.
                    failure.__context__ = exc
                raise
        self.cleanup()

    def run(self) -> None:
        """Run the loop until SIGINT or SIGTERM, then stop gracefully; a second signal stops hard.

        The blocking entry for a daemon's ``main()``. Off the main thread, where signals
        cannot be wired, a ``WARNING`` says so: call :meth:`stop` to stop it.
        """
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        task = self.start()
        with stop_on_signals(self.stop, task):
            await task
