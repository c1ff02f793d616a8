"""What goes into a nexus: its state, handlers, filters, sources and events.

:class:`NexusIntake` is the half of :class:`~async_nexus.AsyncEventNexus` that takes
things in; the nexus adds request/reply and the lifecycle. It owns the parts that do the
work: the queue (:mod:`~async_nexus.queue`), the routing table
(:mod:`~async_nexus.routing`), the dispatch loop (:mod:`~async_nexus.dispatch`), the lanes
of concurrent handlers (:mod:`~async_nexus.lanes`), the open requests
(:mod:`~async_nexus.requests`) and the sources' tasks (:mod:`~async_nexus.feeds`).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from .consumers import HandlerLike, as_callable
from .dispatch import Dispatcher
from .errors import BadCall, LoopStopped
from .events import Event, EventFactory
from .feeds import Feeds
from .items import DispatchTracer, Item, ReplyRoute, require_event
from .lanes import Lane, check_concurrency
from .policy import check_timeout, with_timeout
from .queue import EventQueue
from .requests import Requests
from .routing import Router, TypeSpec
from .sources import EventProducer, EventSource, SimpleEventConverter, wrong_source
from .watchdog import Watchdog

__all__ = ["NexusState"]

F = TypeVar("F", bound=Callable[..., Any])


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

    # -- registration ---------------------------------------------------------------

    def add_handler(
        self,
        event_type: TypeSpec,
        handler: HandlerLike,
        *,
        concurrency: int = 1,
        key: Callable[[Event], Hashable] | None = None,
        timeout: float | None = None,
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
        :raises LookupError: a handler is already registered for that type and the nexus
            was not created with ``multiple=True``.
        :raises MisconfiguredEventConsumer: (a :class:`TypeError`) ``handler`` cannot be
            called as ``handler(event, queue)``.
        :param timeout: seconds an ``async`` handler may take per event; one that runs
            longer is cancelled and fails with :class:`~async_nexus.errors.HandlerTimeout`.
        :raises BadCall: ``concurrency`` is not an int >= 1, ``key`` is not callable, or
            ``timeout`` is not a positive number for an ``async`` handler.
        """
        check_concurrency(concurrency, key)
        function, is_async = as_callable(handler, "handler")
        check_timeout(timeout, is_async, handler)
        if timeout is not None:
            function = with_timeout(function, timeout, handler)
        runner: tuple[Callable[..., Any], bool | None] = (function, is_async)
        if concurrency > 1:
            runner = (Lane(self._dispatcher, handler, function, is_async, limit=concurrency, key=key), None)
        self._router.add_handler(event_type, handler, runner)

    def remove_handler(self, event_type: TypeSpec, handler: HandlerLike) -> None:
        """Undo :meth:`add_handler`; concurrent handlers in flight finish their events."""
        self._router.remove_handler(event_type, handler)

    def add_filter(self, filter: HandlerLike) -> None:
        """Run ``filter(event, queue)`` on every event, in registration order, before routing.

        A true result consumes the event: nothing after it sees the event. Filters run in
        the loop, one at a time, before any handler.
        """
        self._router.add_filter(filter)

    def remove_filter(self, filter: HandlerLike) -> None:
        """Undo :meth:`add_filter`."""
        self._router.remove_filter(filter)

    def on(
        self,
        event_type: TypeSpec,
        *,
        concurrency: int = 1,
        key: Callable[[Event], Hashable] | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_handler`; returns the function unchanged.

        >>> from async_nexus import AsyncEventNexus
        >>> nexus = AsyncEventNexus()
        >>> @nexus.on(99)
        ... async def teapot(event, queue):
        ...     print("teapot", event.id)
        """
        check_concurrency(concurrency, key)

        def register(handler: F) -> F:
            self.add_handler(event_type, handler, concurrency=concurrency, key=key, timeout=timeout)
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
        self._dispatcher.error_hook = callback
        return callback

    def add_converter(self, converter: SimpleEventConverter) -> None:
        """Pull events from ``converter`` with a pump task of its own while the loop runs."""
        if not isinstance(converter, SimpleEventConverter):
            raise wrong_source(
                "add_converter() takes a SimpleEventConverter or EventConverter",
                SimpleEventConverter,
                converter,
                "producers go to add_producer()",
            )
        self._check_new_source(converter)
        self._feeds.add_converter(converter, start=self._state is NexusState.LOOPING)

    def add_producer(self, producer: EventProducer) -> None:
        """Register ``producer``: its :meth:`~EventProducer.start` runs when the loop starts."""
        if not isinstance(producer, EventProducer):
            raise wrong_source(
                "add_producer() takes an EventProducer (or Timer)",
                EventProducer,
                producer,
                "converters go to add_converter()",
            )
        self._check_new_source(producer)
        self._feeds.add_producer(producer, start=self._state is NexusState.LOOPING)

    def register(self, source: EventSource) -> None:
        """Add a converter or a producer, whichever ``source`` is."""
        if isinstance(source, SimpleEventConverter):
            self.add_converter(source)
        elif isinstance(source, EventProducer):
            self.add_producer(source)
        else:
            kinds = "an EventConverter, SimpleEventConverter or EventProducer"
            raise wrong_source(f"register() takes {kinds}", EventSource, source)

    def _check_new_source(self, source: EventSource) -> None:
        if self._state in (NexusState.STOPPING, NexusState.STOPPED):
            raise self._refusal(f"cannot add {source!r}")
        self._feeds.check_new(source)

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
        if self._tracer is not None:
            self._tracer.inject(event)
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

    def ingest_nowait(self, event: Event) -> None:
        """Queue ``event`` now, or raise :class:`~async_nexus.errors.QueueFull`."""
        if not self._accepting:
            raise self._refusal("ingest_nowait() refused")
        require_event(event, "ingest_nowait() takes")
        if self._tracer is not None:
            self._tracer.inject(event)
        self._queue.put_nowait(event, event.priority)

    async def _ingest_from_source(
        self,
        event: Event,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        source: EventSource | None = None,
    ) -> None:
        # Sources may deliver until they are closed, even after stop(): what they obtained
        # before they were stopped is dispatched, not dropped.
        if not self._sources_open:
            raise self._refusal("event from a source refused")
        require_event(event, "a source must produce")
        if self._requests.waiters and self._answered(event, done, source):
            return
        item = event if reply is None and done is None else Item(event, 0, reply, done)
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
