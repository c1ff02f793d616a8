"""What goes into a nexus: its state and its events.

:class:`NexusIntake` is the base of :class:`~async_nexus.AsyncEventNexus`: it takes events
in, now or later; :class:`~async_nexus.registry.NexusRegistry` adds registrations, and the
nexus request/reply and the lifecycle. It owns the parts that do the work: the queue
(:mod:`~async_nexus.queue`), the routing table (:mod:`~async_nexus.routing`), the dispatch
loop (:mod:`~async_nexus.dispatch`), the open requests (:mod:`~async_nexus.requests`), the
events scheduled for later (:mod:`~async_nexus.schedule`) and the sources' tasks
(:mod:`~async_nexus.feeds`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os
from collections.abc import Callable
from typing import Any

from .dispatch import Dispatcher
from .errors import BadCall, LoopStopped
from .events import Event, EventFactory
from .feeds import Feeds
from .items import DeadLetterRoute, DispatchTracer, Item, ReplyRoute, require_event
from .journal import SqliteJournal
from .keeper import Keeper, as_journal
from .queue import EventQueue
from .requests import Requests
from .routing import Router
from .schedule import ScheduledEvent
from .sources import EventProducer, EventSource
from .watchdog import Watchdog

__all__ = ["NexusState"]

class NexusState(enum.Enum):
    """The lifecycle of a nexus: READY → STARTING → LOOPING → STOPPING → STOPPED."""

    READY = "ready"
    STARTING = "starting"
    LOOPING = "looping"
    STOPPING = "stopping"
    STOPPED = "stopped"


class NexusIntake(EventFactory):
    """The state, registrations and ingest of :class:`~async_nexus.AsyncEventNexus`.

    Its parameters are :class:`~async_nexus.AsyncEventNexus`'s, documented there.
    """

    # Slots: ingest() reads these attributes for every event.
    __slots__ = (
        "_queue", "_router", "_requests", "_dispatcher", "_feeds", "_state", "_drain_timeout",
        "_task", "_accepting", "_sources_open", "_tracer", "_started_at", "_stopped_at", "_watchdog",
        "_keeper", "_extras",
    )  # fmt: skip

    READY = NexusState.READY
    STARTING = NexusState.STARTING
    LOOPING = NexusState.LOOPING
    STOPPING = NexusState.STOPPING
    STOPPED = NexusState.STOPPED

    #: The queue bound a nexus gets when ``maxsize`` is not given.
    DEFAULT_MAXSIZE = 4096
    #: The bound used when ``maxsize`` is not given; a subclass may set its own, as in 1.0.
    #: A compatibility alias kept from async-nexus 1.0 (where it was 50).
    QUEUE_MAXLEN = DEFAULT_MAXSIZE

    def __init__(
        self,
        multiple: bool = False,
        *,
        maxsize: int | None = None,
        fail_fast: bool = False,
        drain_timeout: float = 10.0,
        max_chain: int = 1000,
        slow_callback_warning: float | None = 0.1,
        journal: str | os.PathLike[str] | SqliteJournal | None = None,
    ) -> None:
        super().__init__()
        self._queue = EventQueue(self.QUEUE_MAXLEN if maxsize is None else maxsize)
        self._router = Router(multiple=multiple)
        self._requests = Requests()
        self._dispatcher = Dispatcher(
            self._queue, self._router, self._requests, fail_fast=fail_fast, max_chain=max_chain,
            on_halt=self._refuse_ingest,
        )  # fmt: skip
        self._feeds = Feeds(self, self._dispatcher.report)
        self._state = NexusState.READY
        self._drain_timeout = drain_timeout
        self._task: asyncio.Task[None] | None = None
        self._accepting = True  # external ingest
        self._sources_open = True  # sources may still deliver
        self._tracer: DispatchTracer | None = None
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._watchdog = Watchdog(slow_callback_warning)
        self._keeper: Keeper | None = None
        #: Tracing or a journal: ingest takes the longer way (one test for both on the hot path).
        self._extras = False
        if journal is not None:
            self._keeper = self._dispatcher.keeper = Keeper(as_journal(journal), self._dispatcher.notify)
            self._extras = True
            self._keeper.replay(self._queue.put_forced)

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> NexusState:
        """Where the nexus is in its lifecycle."""
        return self._state

    @property
    def drain_timeout(self) -> float:
        """Seconds a graceful :meth:`stop` keeps dispatching what is queued; settable."""
        return self._drain_timeout

    @drain_timeout.setter
    def drain_timeout(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise BadCall(f"drain_timeout must be a number of seconds >= 0, got {seconds!r}")
        self._drain_timeout = float(seconds)

    @property
    def fail_fast(self) -> bool:
        """Whether the first failure stops the loop and is raised by :meth:`loop_forever`; settable."""
        return self._dispatcher.fail_fast

    @fail_fast.setter
    def fail_fast(self, value: bool) -> None:
        self._dispatcher.fail_fast = bool(value)

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

    def _refusal(self, what: str) -> BadCall:
        return LoopStopped(
            f"{what}: the nexus is {self._state.name} (stop() was called); it accepts no "
            "more events. Create a new AsyncEventNexus to go on"
        )

    def _refuse_ingest(self) -> None:
        self._accepting = False

    def _set_tracer(self, tracer: DispatchTracer | None) -> None:
        """Trace dispatches with ``tracer`` (``None``: stop); see :mod:`async_nexus.tracing`."""
        self._tracer = self._dispatcher.tracer = tracer
        self._extras = tracer is not None or self._keeper is not None

    # -- ingest ---------------------------------------------------------------------

    async def ingest(self, event: Event) -> None:
        """Queue ``event`` for dispatch, waiting while the queue is full.

        It does not switch tasks while there is room, except once when the woken dispatch
        loop has not run yet and :data:`~async_nexus.queue.HANDOFF` events wait for it: a
        producer that never awaits anything else still lets the loop keep up.

        :raises LoopStopped: the nexus was stopped; the event was not accepted.
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        """
        if not self._accepting:
            raise self._refusal("ingest() refused")
        if not isinstance(event, Event):
            require_event(event, "ingest() takes")
        if self._extras:
            return await self._ingest_traced_or_kept(event)
        # No task switch while the queue takes it. Below the mark, a FIFO that holds events
        # of this priority already needs nothing but the append: written out, not called.
        queue = self._queue
        size = queue.size
        bucket = queue.buckets.get(event.priority)
        if bucket and size < queue.mark:
            bucket.append(event)
            queue.size = size + 1
        elif not queue.try_put(event, event.priority):
            await queue.put(event, event.priority)

    async def _ingest_traced_or_kept(self, event: Event) -> None:
        if self._tracer is not None:
            self._tracer.inject(event)
        queue, keeper = self._queue, self._keeper
        if keeper is None:
            if not queue.try_put(event, event.priority):
                await queue.put(event, event.priority)
            return
        seq = keeper.keep(event)
        try:
            await keeper.durable()
            item = keeper.item(event, seq)
            if not queue.try_put(item, event.priority):
                await queue.put(item, event.priority)
        except BaseException:
            keeper.forget(seq)  # not accepted, so not kept: ingest() raises
            raise

    def ingest_nowait(self, event: Event) -> None:
        """Queue ``event`` now, or raise :class:`~async_nexus.errors.QueueFull`.

        With a journal, the event is durable at the next group commit, not yet on return.
        """
        if not self._accepting:
            raise self._refusal("ingest_nowait() refused")
        require_event(event, "ingest_nowait() takes")
        if self._tracer is not None:
            self._tracer.inject(event)
        keeper = self._keeper
        if keeper is None:
            self._queue.put_nowait(event, event.priority)
            return
        seq = keeper.keep(event)
        try:
            self._queue.put_nowait(keeper.item(event, seq), event.priority)
        except BaseException:
            keeper.forget(seq)
            raise

    def ingest_later(self, delay: float, event: Event) -> ScheduledEvent:
        """Queue ``event`` in ``delay`` seconds, on the event loop's clock; returns at once.

        The returned :class:`~async_nexus.ScheduledEvent` can :meth:`~async_nexus.ScheduledEvent.cancel`
        it until then. When it is due, the event is queued past the queue's bound (it was
        accepted already) and dispatched as any other. ``stats()["scheduled"]`` counts
        events not due yet; a graceful stop does not wait for them, and logs how many there were.

        :raises LoopStopped: the nexus was stopped.
        :raises BadCall: ``delay`` is not a number >= 0, or no event loop runs (call it from
            a coroutine or a handler).
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        """
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not delay >= 0:
            raise BadCall(f"ingest_later() takes a delay in seconds >= 0, got {delay!r}")
        return self._schedule(delay, event, "ingest_later()")

    def ingest_at(self, when: dt.datetime, event: Event) -> ScheduledEvent:
        """Queue ``event`` at ``when``, an aware :class:`~datetime.datetime`; as :meth:`ingest_later`.

        A time in the past queues it at once. The wait is measured on the event loop's
        clock from now, so a change of the system clock afterwards does not move it.

        :raises BadCall: ``when`` is not an aware ``datetime`` (give it a ``tzinfo``:
            ``datetime.now(timezone.utc) + timedelta(...)``), or no event loop runs.
        """
        if not isinstance(when, dt.datetime) or when.utcoffset() is None:
            raise BadCall(
                f"ingest_at() takes an aware datetime (with a tzinfo, such as "
                f"datetime.now(timezone.utc) + timedelta(minutes=5)), got {when!r}"
            )
        delay = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
        return self._schedule(max(0.0, delay), event, "ingest_at()")

    def _schedule(self, delay: float, event: Event, call: str) -> ScheduledEvent:
        if not self._accepting:
            raise self._refusal(f"{call} refused")
        require_event(event, f"{call} takes")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise BadCall(
                f"{call} needs a running event loop, whose clock it schedules on; call it from a "
                "coroutine, a handler or a source"
            ) from None
        if self._tracer is not None:
            self._tracer.inject(event)
        if self._keeper is None:
            return self._dispatcher.scheduler.event_at(loop.time() + delay, event, self._queue_due)
        return self._schedule_kept(self._keeper.keep(event, due_in=delay), event, delay)

    def _schedule_kept(self, seq: int, event: Event, delay: float) -> ScheduledEvent:
        keeper = self._keeper
        assert keeper is not None
        when = asyncio.get_running_loop().time() + delay
        due = lambda event: self._queue_due(event, keeper.item(event, seq))  # noqa: E731
        return self._dispatcher.scheduler.event_at(when, event, due, lambda: keeper.forget(seq))

    def _queue_due(self, event: Event, item: Item | None = None) -> None:
        self._queue.put_forced(event if item is None else item, event.priority)
        self._dispatcher.nudge()

    async def _ingest_from_source(
        self,
        event: Event,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        source: EventSource | None = None,
        dead: DeadLetterRoute | None = None,
    ) -> None:
        # Sources may deliver until they are closed, even after stop(): what they obtained
        # before they were stopped is dispatched, not dropped.
        if not self._sources_open:
            raise self._refusal("event from a source refused")
        require_event(event, "a source must produce")
        if self._requests.waiters and self._answered(event, done, source):
            return
        item: Event | Item = event
        keeper = self._keeper
        if keeper is not None:  # kept until handled; not awaited: a source's checkpoint joins its group
            item = keeper.item(event, keeper.keep(event), 0, reply, done, dead)
        elif reply is not None or done is not None:
            item = Item(event, 0, reply, done)
            item.dead = dead
        try:
            await self._queue.put(item, event.priority)
        except asyncio.CancelledError:
            # A graceful stop cancels sources waiting for room: keep the event they hold.
            if self._sources_open and self._dispatcher.stop_requested:
                self._queue.put_forced(item, event.priority)
            raise
        if source is not None:
            self._feeds.delivered[source] += 1

    def _answered(self, event: Event, done: Callable[[Event], object] | None, source: Any) -> bool:
        """An awaited answer goes to its request at once: it must not queue behind its asker."""
        if not self._requests.answer(event):
            return False
        self._router.route(event.type).dispatched += 1
        if source is not None:
            self._feeds.delivered[source] += 1
        if done is not None:
            done(event)
        return True

    def _accept_forced(
        self, event: Event, reply: ReplyRoute | None = None, source: EventSource | None = None
    ) -> None:
        """Queue past the bound; for boundaries flushing what they already took."""
        if not self._sources_open:
            raise self._refusal("event refused")
        keeper = self._keeper
        if keeper is not None:
            self._queue.put_forced(keeper.item(event, keeper.keep(event), 0, reply), event.priority)
        else:
            self._queue.put_forced(event if reply is None else Item(event, 0, reply), event.priority)
        if source is not None:
            self._feeds.delivered[source] += 1

    async def _report(self, exc: BaseException, subject: Any) -> None:
        await self._dispatcher.report(exc, subject)

    def _adopt(self, producer: EventProducer) -> bool:
        if self._state is not NexusState.LOOPING:
            return False
        self._feeds.run_producer(producer)
        return True
