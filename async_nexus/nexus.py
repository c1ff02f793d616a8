"""AsyncEventNexus: one queue, one dispatch loop, the sources that feed it.

Read :meth:`AsyncEventNexus._dispatch_until_stopped` for the heart of it: the loop drains
the queue without a task switch per event, resolves each type's route once, and awaits
only the handlers that are ``async``.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import inspect
import itertools
import logging
import secrets
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from heapq import heappop
from typing import Any, Protocol, TypeVar

from .consumers import as_callable
from .errors import (
    BadCall,
    DecodeError,
    InvalidLoopState,
    LoopAlreadyStarted,
    LoopStopped,
    MultipleStart,
    NoMoreEvents,
    NotAnEvent,
    RequestTimeout,
    RunawayChain,
    UnhandledEvent,
)
from .events import CORRELATION_ID, IN_REPLY_TO, Event, EventFactory
from .queue import EventQueue
from .routing import Handlers, Router
from .sources import EventProducer, EventSource, SimpleEventConverter

__all__ = ["AsyncEventNexus", "DispatchTracer", "ErrorHook", "NexusState", "ReplyRoute"]

logger = logging.getLogger("async_nexus")

F = TypeVar("F", bound=Callable[..., Any])
#: ``callback(exception, event_or_source)``, sync or async.
ErrorHook = Callable[[BaseException, Any], Any]


# How far secondary events may overflow a bounded queue (at least): room for bursts, not
# for a runaway.
_OVERFLOW = 65536


class NexusState(enum.Enum):
    """The lifecycle of a nexus: READY → STARTING → LOOPING → STOPPING → STOPPED."""

    READY = "ready"
    STARTING = "starting"
    LOOPING = "looping"
    STOPPING = "stopping"
    STOPPED = "stopped"


#: Where the answers to a request go: ``route(answer)``.
ReplyRoute = Callable[[Event], object]


class DispatchTracer(Protocol):
    """What tracing (:mod:`async_nexus.tracing`) plugs into the loop; nothing else is traced."""

    def start(self, event: Event) -> Any:
        """Begin the dispatch of ``event``; returns the span."""

    def filtered(self, span: Any) -> None:
        """A filter consumed the event."""

    def failed(self, span: Any, exc: BaseException) -> None:
        """A failure was reported while the event was being dispatched."""

    def end(self, span: Any) -> None:
        """The dispatch is over."""

    def inject(self, event: Event) -> None:
        """Put the current trace context into ``event.headers`` (it is being queued)."""


class _Item:
    """An event in the queue with more to it than the event: most events go in bare.

    ``depth``: how many handlers led to a secondary event. ``reply``: where answers go if
    it is a request. ``done``: called once it is dispatched (transports acknowledge then).
    ``waiter``: the future of this nexus's own request, failed if handling it fails here.
    """

    __slots__ = ("event", "depth", "reply", "done", "waiter")

    def __init__(
        self,
        event: Event,
        depth: int = 0,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        waiter: asyncio.Future[Event] | None = None,
    ) -> None:
        self.event, self.depth, self.reply, self.done, self.waiter = event, depth, reply, done, waiter


class _HandlerQueue(asyncio.Queue):  # type: ignore[type-arg]
    """The nexus queue as a handler sees it: what it puts there is a secondary event."""

    def __init__(self, nexus: AsyncEventNexus) -> None:
        super().__init__()
        self._nexus = nexus

    def put_nowait(self, item: Any) -> None:
        self._nexus._emit(item)

    def _reply_route(self, event: Event) -> ReplyRoute | None:
        """Where answers to ``event`` go, if it is a request being dispatched (for boundaries)."""
        current = self._nexus._current
        if current is not None and current.event is event:
            return current.reply
        return None

    async def put(self, item: Any) -> None:
        self._nexus._emit(item)

    def qsize(self) -> int:
        return len(self._nexus._queue)

    def empty(self) -> bool:
        return not len(self._nexus._queue)

    def full(self) -> bool:
        return False

    def get_nowait(self) -> Any:
        raise BadCall("handlers cannot take events from the nexus queue; only the dispatch loop does")

    async def get(self) -> Any:
        self.get_nowait()

    async def join(self) -> None:
        raise BadCall(
            "a handler awaiting the nexus queue would wait for itself; use nexus.join() outside handlers"
        )

    def task_done(self) -> None:
        raise BadCall("task_done() is not used with the nexus queue")


class AsyncEventNexus(EventFactory):
    """The hub: sources feed it events, its loop routes each one to filters and handlers.

    :param multiple: allow several handlers per type (they all run, in registration
        order); without it a second handler for a type raises :class:`LookupError`.
    :param maxsize: bound of the queue (``0``: unbounded). ``await ingest()`` waits while
        it is full, ``ingest_nowait()`` raises :class:`~async_nexus.errors.QueueFull`.
    :param fail_fast: stop at the first failure and make :meth:`loop_forever` raise it.
    :param drain_timeout: how long a graceful :meth:`stop` keeps dispatching what is queued.
    :param max_chain: how many secondary events may descend from one event before
        the next one is refused with :class:`~async_nexus.errors.RunawayChain`.
    """

    # Slots: the loop reads these attributes for every event.
    __slots__ = (
        "_queue",
        "_router",
        "_handler_queue",
        "_state",
        "_fail_fast",
        "_drain_timeout",
        "_max_chain",
        "_error_hook",
        "_failure",
        "_converters",
        "_producers",
        "_source_tasks",
        "_task",
        "_accepting",
        "_sources_open",
        "_stop_requested",
        "_halted",
        "_interrupt",
        "_waiting",
        "_current",
        "_requests",
        "_request_ids",
        "_joiners",
        "_counts",
        "_by_source",
        "_started_at",
        "_stopped_at",
        "_tracer",
        "_span",
    )

    READY = NexusState.READY
    STARTING = NexusState.STARTING
    LOOPING = NexusState.LOOPING
    STOPPING = NexusState.STOPPING
    STOPPED = NexusState.STOPPED

    #: The queue bound a nexus gets when ``maxsize`` is not given.
    DEFAULT_MAXSIZE = 4096

    def __init__(
        self,
        multiple: bool = False,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        fail_fast: bool = False,
        drain_timeout: float = 10.0,
        max_chain: int = 1000,
    ) -> None:
        super().__init__()
        self._queue = EventQueue(maxsize)
        self._router = Router(multiple=multiple)
        self._handler_queue = _HandlerQueue(self)
        self._state = NexusState.READY
        self._fail_fast = fail_fast
        self._drain_timeout = drain_timeout
        self._max_chain = max_chain
        self._error_hook: ErrorHook = self._log_error
        self._failure: BaseException | None = None
        self._converters: list[SimpleEventConverter] = []
        self._producers: list[EventProducer] = []
        self._source_tasks: dict[asyncio.Task[Any], EventSource] = {}
        self._task: asyncio.Task[None] | None = None
        self._accepting = True  # external ingest
        self._sources_open = True  # sources may still deliver
        self._stop_requested = False
        self._halted = False  # drain timeout or fail_fast: dispatch nothing more
        self._interrupt = False  # leave the dispatch loop at the next event
        self._waiting = False
        self._current: _Item | None = None  # the item being dispatched, if it is not bare
        self._requests: dict[str, asyncio.Future[Event]] = {}
        self._request_ids = (f"{secrets.token_hex(6)}-{n}" for n in itertools.count(1))
        self._joiners: list[asyncio.Future[None]] = []
        self._counts = {"secondary": 0, "errors": 0}
        # Per-type counts live on the router's routes; totals are summed in stats().
        self._by_source: defaultdict[EventSource, int] = defaultdict(int)
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._tracer: DispatchTracer | None = None
        self._span: Any = None

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
        return self._fail_fast

    @fail_fast.setter
    def fail_fast(self, value: bool) -> None:
        self._fail_fast = bool(value)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task running the loop, once :meth:`start` or :meth:`loop_forever` began it."""
        return self._task

    @property
    def multiple(self) -> bool:
        """Whether several handlers may be registered for one type."""
        return self._router.multiple

    @property
    def queue(self) -> asyncio.Queue[Any]:
        """The queue as handlers see it: ``put``/``put_nowait`` add secondary events."""
        return self._handler_queue

    def _refusal(self, what: str) -> BadCall:
        return LoopStopped(
            f"{what}: the nexus is {self._state.name} (stop() was called); it accepts no "
            "more events. Create a new AsyncEventNexus to go on"
        )

    # -- registration ---------------------------------------------------------------

    def add_handler(self, event_type: Any, handler: Any) -> None:
        """Route events of ``event_type`` to ``handler``.

        ``event_type`` is an int or str for one type, ``-1`` for the default handler, an
        inclusive ``(start, end)`` int range, a shell pattern such as ``"sensor.*"``, or a
        :class:`~async_nexus.NamedEvent` subclass. ``handler`` is ``async def h(event,
        queue)``, ``def h(event, queue)`` or an :class:`~async_nexus.EventConsumer`.

        :raises LookupError: a handler is already registered for that type and the nexus
            was not created with ``multiple=True``.
        :raises MisconfiguredEventConsumer: (a :class:`TypeError`) ``handler`` cannot be
            called as ``handler(event, queue)``.
        """
        self._router.add_handler(event_type, handler)

    def remove_handler(self, event_type: Any, handler: Any) -> None:
        """Undo :meth:`add_handler`."""
        self._router.remove_handler(event_type, handler)

    def add_filter(self, filter: Any) -> None:
        """Run ``filter(event, queue)`` on every event, in registration order, before routing.

        A true result consumes the event: nothing after it sees the event.
        """
        self._router.add_filter(filter)

    def remove_filter(self, filter: Any) -> None:
        """Undo :meth:`add_filter`."""
        self._router.remove_filter(filter)

    def on(self, event_type: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`add_handler`; returns the function unchanged.

        >>> nexus = AsyncEventNexus()
        >>> @nexus.on(99)
        ... async def teapot(event, queue):
        ...     print("teapot", event.id)
        """

        def register(handler: F) -> F:
            self.add_handler(event_type, handler)
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
        as_callable(callback, "error hook")
        self._error_hook = callback
        return callback

    def add_converter(self, converter: SimpleEventConverter) -> None:
        """Pull events from ``converter`` with a pump task of its own while the loop runs."""
        if not isinstance(converter, SimpleEventConverter):
            raise BadCall(
                f"add_converter() takes a SimpleEventConverter or EventConverter, got "
                f"{type(converter).__qualname__}; producers go to add_producer()"
            )
        self._check_new_source(converter)
        self._converters.append(converter)
        if self._state is NexusState.LOOPING:
            self._spawn_source(self._pump(converter), converter)

    def add_producer(self, producer: EventProducer) -> None:
        """Register ``producer``: its :meth:`~EventProducer.start` runs when the loop starts."""
        if not isinstance(producer, EventProducer):
            raise BadCall(
                f"add_producer() takes an EventProducer (or Timer), got {type(producer).__qualname__}; "
                "converters go to add_converter()"
            )
        self._check_new_source(producer)
        producer.register_nexus(self)
        self._producers.append(producer)
        if self._state is NexusState.LOOPING:
            self._spawn_source(self._run_producer(producer), producer)

    def register(self, source: EventSource) -> None:
        """Add a converter or a producer, whichever ``source`` is."""
        if isinstance(source, SimpleEventConverter):
            self.add_converter(source)
        elif isinstance(source, EventProducer):
            self.add_producer(source)
        else:
            raise BadCall(
                f"register() takes an EventConverter, SimpleEventConverter or EventProducer, "
                f"got {type(source).__qualname__}"
            )

    def _check_new_source(self, source: EventSource) -> None:
        if self._state in (NexusState.STOPPING, NexusState.STOPPED):
            raise self._refusal(f"cannot add {source!r}")
        if any(s is source for s in (*self._converters, *self._producers)):
            raise MultipleStart(
                f"{source!r} is already registered with this nexus; it would be started twice"
            )

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
            _require_event(event, "ingest() takes")
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
        _require_event(event, "ingest_nowait() takes")
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
        _require_event(event, "a source must produce")
        item = event if reply is None and done is None else _Item(event, 0, reply, done)
        try:
            await self._queue.put(item, event.priority)
        except asyncio.CancelledError:
            # A graceful stop cancels sources waiting for room: keep the event they hold.
            if self._sources_open and self._stop_requested:
                self._queue.put_forced(item, event.priority)
            raise
        if source is not None:
            self._by_source[source] += 1

    def _accept_forced(
        self, event: Event, reply: ReplyRoute | None = None, source: EventSource | None = None
    ) -> None:
        """Queue past the bound; for boundaries flushing what they already took."""
        if not self._sources_open:
            raise self._refusal("event refused")
        self._queue.put_forced(event if reply is None else _Item(event, 0, reply), event.priority)
        if source is not None:
            self._by_source[source] += 1

    def _emit(self, event: Any) -> None:
        """Queue a secondary event from a handler: past the bound, but not without limit."""
        _require_event(event, "a handler can only queue")
        if self._state is NexusState.STOPPED:
            raise self._refusal("secondary event refused")
        current = self._current
        depth = 1 if current is None else current.depth + 1
        if depth > self._max_chain:
            raise RunawayChain(
                f"event {event.id!r} of type {event.type!r} would be the {depth}th secondary event "
                f"in one chain (max_chain={self._max_chain}); a handler keeps emitting events that "
                "lead back to itself"
            )
        queue = self._queue
        if queue.maxsize and len(queue) >= queue.maxsize + max(queue.maxsize, _OVERFLOW):
            raise RunawayChain(
                f"secondary events overflow the queue ({len(queue)} queued, maxsize={queue.maxsize}); "
                "handlers emit events much faster than they are dispatched"
            )
        if self._tracer is not None:
            self._tracer.inject(event)
        queue.put_forced(_Item(event, depth), event.priority)
        self._counts["secondary"] += 1

    async def _emit_result(self, result: Any) -> None:
        if inspect.isawaitable(result):
            # A plain function that returned a coroutine: run it, as the user meant.
            result = await result
            if result is None:
                return
        if isinstance(result, Event):
            events: Any = (result,)
        elif isinstance(result, (list, tuple)):
            events = result
        else:
            return
        current = self._current
        if current is not None and current.reply is not None:
            # What the handler of a request returns is its answer, not a secondary event.
            for answer in events:
                _require_event(answer, "the handler of a request can only answer with")
                current.reply(_answer_to(current.event, answer))
            return
        for event in events:
            self._emit(event)

    # -- request/reply --------------------------------------------------------------

    async def request(self, event: Event, *, timeout: float = 10.0) -> Event:
        """Dispatch ``event`` as a request and return the answer.

        The answer is the event that a handler of the request returns (or passes to
        :meth:`reply`), here or in another domain: across a boundary or a transport, the
        request carries a ``correlation-id`` header and the answer comes back with it in
        ``in-reply-to``. ``event`` itself is not changed; a copy with the header is sent.

        >>> async def main():
        ...     async with AsyncEventNexus() as nexus:
        ...         nexus.add_handler("sum?", lambda e, q: Event(0, "sum", 0, sum(e.payload)))
        ...         answer = await nexus.request(Event(1, "sum?", 0, [1, 2, 3]))
        ...         print(answer.payload)
        >>> asyncio.run(main())
        6

        :raises RequestTimeout: no answer came within ``timeout`` seconds; nothing waits
            for it any more, and a late answer is dispatched like any other event.
        :raises Exception: whatever a handler of the request in this nexus raised, or
            :class:`~async_nexus.errors.UnhandledEvent` if no handler took it here (the
            error hook sees it too).
        """
        if not self._accepting:
            raise self._refusal("request() refused")
        _require_event(event, "request() takes")
        correlation = next(self._request_ids)
        request = copy.copy(event)
        request.headers = {**(event.headers or {}), CORRELATION_ID: correlation}
        waiter: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._requests[correlation] = waiter

        async def send_and_wait() -> Event:
            await self._queue.put(_Item(request, 0, self._take_answer, None, waiter), request.priority)
            return await waiter

        try:
            return await asyncio.wait_for(send_and_wait(), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"no answer to request {event.id!r} of type {event.type!r} within {timeout} s; "
                "a handler of that type (here or across a boundary) must return an Event, "
                "or call nexus.reply(request, answer)"
            ) from None
        finally:
            del self._requests[correlation]

    def reply(self, request: Event, answer: Event) -> None:
        """Answer ``request`` while handling it, instead of (or besides) returning ``answer``.

        :raises BadCall: ``request`` is not a request that this nexus is dispatching now.
        """
        _require_event(answer, "reply() answers with")
        current = self._current
        if current is None or current.event is not request or current.reply is None:
            raise BadCall(
                f"reply() to event {request.id!r} of type {request.type!r}, which is not a request "
                "being handled now; call reply() from the handler of a request, before it returns"
            )
        current.reply(_answer_to(request, answer))

    def _take_answer(self, answer: Event) -> None:
        """The reply route of this nexus's own requests."""
        if not self._answers_request(answer):
            # Too late, or a second answer: dispatched like any event, so it is not lost.
            self._accept_forced(answer)

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
        return self._task

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
        self._started_at = time.monotonic()
        try:
            if not self._stop_requested:
                self._state = NexusState.LOOPING
                for converter in list(self._converters):
                    self._spawn_source(self._pump(converter), converter)
                for producer in list(self._producers):
                    self._spawn_source(self._run_producer(producer), producer)
            else:
                self._state = NexusState.STOPPING
            await self._dispatch_until_stopped()
            await self._shut_down()
        except asyncio.CancelledError:
            self._halted = self._interrupt = True
            await self._stop_sources()
            await self._close_sources()
            raise
        finally:
            self._state = NexusState.STOPPED
            self._stopped_at = time.monotonic()
            self._accepting = self._sources_open = False
            self._wake_joiners()
        if self._failure is not None:
            raise self._failure

    async def _dispatch_until_stopped(self) -> None:
        queue = self._queue
        buckets, priorities, putters = queue.buckets, queue.priorities, queue.putters
        router = self._router
        routes = router.routes
        handler_queue = self._handler_queue
        report = self._report
        requests = self._requests
        tracer = self._tracer
        span = None
        current: _Item | None = None
        while True:
            if not queue.size:
                if self._stop_requested or self._halted:
                    if queue.blocked_putters and not self._halted:
                        await asyncio.sleep(0)  # let woken ingests land before we leave
                        continue
                    return
                if self._joiners:
                    self._wake_joiners()
                self._waiting = True
                try:
                    await queue.wait_not_empty()
                finally:
                    self._waiting = False
                tracer = self._tracer
                continue
            if self._interrupt:
                return
            # Take the most urgent item, as EventQueue lays them out: one FIFO per
            # priority, a heap of the priorities in use. Written out, not called: this
            # runs for every event.
            bucket = buckets[priorities[0]]
            event = bucket.popleft()
            if not bucket:
                heappop(priorities)
            queue.size -= 1
            if putters and queue.size < queue.maxsize:
                queue.wake_putter()
            if event.__class__ is _Item:  # an event with more to it than the event
                self._current = current = event
                event = current.event
            event_type = event.type
            try:
                route = routes[event_type]
            except KeyError:
                route = router.route(event_type)
            route.dispatched += 1
            if requests and event.headers and self._answers_request(event):
                if current is not None:
                    await self._finish(current)
                    current = None
                continue
            if tracer is not None:
                self._span = span = tracer.start(event)
            for function, is_async in router.filters:
                try:
                    consumed = function(event, handler_queue)
                    if is_async:
                        consumed = await consumed
                except Exception as exc:
                    await report(exc, event)
                    continue
                if consumed:
                    route.filtered += 1
                    if span is not None:
                        tracer.filtered(span)  # type: ignore[union-attr]
                    break
            else:
                only = route.only
                if only is not None:  # _run_each for the one handler most types have, written out
                    function, is_async = only
                    try:
                        result = function(event, handler_queue)
                        if is_async:
                            result = await result
                        if result is not None:
                            await self._emit_result(result)
                    except Exception as exc:
                        await report(exc, event)
                elif route.handlers:
                    await self._run_each(route.handlers, event)
                else:
                    route.unhandled += 1
                    await report(
                        UnhandledEvent(
                            f"no handler for event type {event.type!r} (event id {event.id!r}) and "
                            f"no default handler; register one with add_handler({event.type!r}, h) "
                            "or add_handler(-1, h)",
                            event,
                        ),
                        event,
                    )
            if span is not None:
                self._span = None
                tracer.end(span)  # type: ignore[union-attr]
                span = None
            if current is not None:
                await self._finish(current)
                current = None

    async def _run_each(self, handlers: Handlers, event: Event) -> None:
        """Run the handlers of ``event`` in order; one that fails does not keep the others from it."""
        for function, is_async in handlers:
            try:
                result = function(event, self._handler_queue)
                if is_async:
                    result = await result
                if result is not None:
                    await self._emit_result(result)
            except Exception as exc:
                await self._report(exc, event)

    async def _finish(self, item: _Item) -> None:
        """The dispatch of ``item`` is over: tell whoever waits for that (a transport's ack)."""
        self._current = None
        if item.done is not None:
            try:
                item.done(item.event)
            except Exception as exc:
                await self._report(exc, item.done)

    def _answers_request(self, event: Event) -> bool:
        """Hand ``event`` to the request() waiting for it, if it is an answer someone awaits."""
        headers = event.headers or {}
        waiter = self._requests.get(headers.get(IN_REPLY_TO, ""))
        if waiter is None or waiter.done():
            return False
        waiter.set_result(event)
        return True

    def _wake_joiners(self) -> None:
        joiners, self._joiners = self._joiners, []
        for joiner in joiners:
            if not joiner.done():
                joiner.set_result(None)

    async def join(self) -> None:
        """Wait until the queue is empty and nothing is being dispatched.

        Do not await it inside a handler: the handler would wait for itself.
        """
        if self._state is NexusState.STOPPED:
            return
        if not len(self._queue) and (self._waiting or self._state is not NexusState.LOOPING):
            return
        joiner = asyncio.get_running_loop().create_future()
        self._joiners.append(joiner)
        await joiner

    def stop(self) -> None:
        """Stop gracefully: sources stop, what is queued is dispatched, sources close.

        Safe to call at any time, also before the loop task has had its first turn, and
        more than once. ``ingest()`` is refused from now on. Cancel the loop task for a
        hard stop.
        """
        if self._state is NexusState.STOPPED or self._stop_requested:
            return
        self._stop_requested = True
        self._interrupt = True
        self._accepting = False
        if self._state in (NexusState.STARTING, NexusState.LOOPING):
            self._state = NexusState.STOPPING
        self._queue.wake()

    async def _shut_down(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self._drain_timeout, self._drain_expired)
        try:
            await self._stop_sources()
            for producer in list(self._producers):
                producer._on_stop()
            self._interrupt = self._halted
            await self._dispatch_until_stopped()
        finally:
            deadline.cancel()
        self._sources_open = False
        left = len(self._queue)
        if left and not self._failure:
            logger.warning(
                "async_nexus: drain timeout of %ss expired; %d queued events were not dispatched",
                self._drain_timeout,
                left,
            )
        await self._close_sources()

    def _drain_expired(self) -> None:
        self._halted = self._interrupt = True
        self._queue.wake()

    # -- sources --------------------------------------------------------------------

    def _spawn_source(self, coroutine: Any, source: EventSource) -> None:
        task = asyncio.create_task(coroutine, name=f"async_nexus source {source!r}")
        self._source_tasks[task] = source
        task.add_done_callback(self._source_tasks.pop)

    async def _stop_sources(self) -> None:
        tasks = list(self._source_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, converter: SimpleEventConverter) -> None:
        try:
            await converter.start()
            while True:
                try:
                    event = await converter.obtain_event()
                except DecodeError as exc:
                    # Bad input, not a broken source: report it and go on pumping.
                    await self._report(exc, converter)
                    continue
                await self._ingest_from_source(event, source=converter)
        except NoMoreEvents:
            pass
        except LoopStopped:
            return
        except Exception as exc:
            await self._report(exc, converter)
        # Retired: it gave its last event or failed. Close it now, not at shutdown.
        if converter in self._converters:
            self._converters.remove(converter)
        await self._close_source(converter)

    async def _run_producer(self, producer: EventProducer) -> None:
        # A producer shared by several nexuses is started once, by the first to start;
        # it may start again once it has been closed.
        if producer._running:
            return
        producer._running = True
        try:
            await producer.start()
        except asyncio.CancelledError:
            producer._running = False  # stopped with this nexus: another may take it over
            raise
        except LoopStopped:
            pass
        except Exception as exc:
            await self._report(exc, producer)

    async def _close_source(self, source: EventSource) -> None:
        try:
            result = source.close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            await self._report(exc, source)

    def _take_sources(self) -> list[EventSource]:
        sources: list[EventSource] = [*self._converters, *self._producers]
        self._converters.clear()
        self._producers.clear()
        return sources

    async def _close_sources(self) -> None:
        for source in self._take_sources():
            if isinstance(source, EventProducer):
                source.deregister_nexus(self)
                if self._hand_on(source):
                    continue
                source._running = False
            await self._close_source(source)

    @staticmethod
    def _hand_on(producer: EventProducer) -> bool:
        """Leave a shared producer to the nexuses still using it; True if any is."""
        others = producer.nexuses()
        if not producer._running:
            for other in others:
                if other._state is NexusState.LOOPING:
                    other._spawn_source(other._run_producer(producer), producer)
                    break
        return bool(others)

    # -- errors ---------------------------------------------------------------------

    async def _report(self, exc: BaseException, subject: Any) -> None:
        counts = self._counts
        counts["errors"] += 1
        if isinstance(subject, Event) and not isinstance(exc, UnhandledEvent):
            self._router.route(subject.type).failed += 1
        if self._span is not None:
            self._tracer.failed(self._span, exc)  # type: ignore[union-attr]
        current = self._current
        if current is not None and current.waiter is not None and subject is current.event:
            if not current.waiter.done():
                current.waiter.set_exception(exc)  # request() raises it at once
        if self._fail_fast:
            if self._failure is None:
                self._failure = exc
            self._halted = self._interrupt = self._stop_requested = True
            self._accepting = False
            self._queue.wake()
        try:
            result = self._error_hook(exc, subject)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("async_nexus: the error hook raised while reporting %r", exc)

    @staticmethod
    def _log_error(exc: BaseException, subject: Any) -> None:
        if isinstance(exc, UnhandledEvent):
            logger.error("async_nexus: %s", exc)
        elif isinstance(subject, Event):
            logger.error("async_nexus: handling %r failed", subject, exc_info=exc)
        else:
            logger.error("async_nexus: source %r failed", subject, exc_info=exc)

    # -- whole-program helpers ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot of what the nexus has done, cheap enough to take every second.

        ``ingested`` (accepted into the queue, secondary events included), ``dispatched``,
        ``filtered``, ``unhandled``, ``failed`` (events whose handling raised), ``errors``
        (every report to the error hook, sources' included), ``queued`` and its
        ``high_water`` mark, ``uptime`` (seconds the loop has run), ``by_type`` (the
        per-event counts for each type) and ``by_source`` (events accepted from each
        source; ``"ingest()"`` for direct calls, ``"secondary"`` for handlers' events).

        >>> AsyncEventNexus().stats()["dispatched"]
        0
        """
        routes = list(self._router.routes.items())
        if self._router.overflow.dispatched:
            routes.append(("(other types)", self._router.overflow))
        by_type = {event_type: route.counts() for event_type, route in routes}
        totals = dict.fromkeys(("dispatched", "filtered", "unhandled", "failed"), 0)
        for counts in by_type.values():
            for name, count in counts.items():
                totals[name] += count
        # Everything accepted is either dispatched or still queued: no counter on ingest.
        ingested = totals["dispatched"] + len(self._queue)
        secondary = self._counts["secondary"]
        by_source = {repr(source): count for source, count in list(self._by_source.items())}
        by_source["secondary"] = secondary
        by_source["ingest()"] = ingested - sum(by_source.values())
        started, stopped = self._started_at, self._stopped_at
        uptime = 0.0 if started is None else (stopped or time.monotonic()) - started
        return {
            "ingested": ingested,
            **totals,
            "errors": self._counts["errors"],
            "queued": len(self._queue),
            "high_water": self._queue.high_water,
            "uptime": uptime,
            "by_type": by_type,
            "by_source": by_source,
        }

    def cleanup(self) -> None:
        """Close every source and forget every registration.

        :raises InvalidLoopState: the loop is running; stop it and await its task first.
        """
        if self._state in (NexusState.STARTING, NexusState.LOOPING, NexusState.STOPPING):
            raise InvalidLoopState(
                f"cleanup() while the loop is {self._state.name}; call stop() and await the loop task first"
            )
        self._router.clear()
        for source in self._take_sources():
            result = source.close()
            if inspect.isawaitable(result):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    asyncio.run(_await(result))
                else:
                    loop.create_task(_await(result))
            if isinstance(source, EventProducer):
                source.deregister_nexus(self)

    def __enter__(self) -> AsyncEventNexus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._state in (NexusState.STARTING, NexusState.LOOPING, NexusState.STOPPING):
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
        loop = asyncio.get_running_loop()
        task = self.start()

        def on_signal() -> None:
            if self._stop_requested:
                task.cancel()
            else:
                self.stop()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await task
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)


def _answer_to(request: Event, answer: Event) -> Event:
    """A copy of ``answer`` that says which request it answers."""
    correlation = (request.headers or {}).get(CORRELATION_ID)
    if correlation is None:
        return answer
    answer = copy.copy(answer)
    answer.headers = {**(answer.headers or {}), IN_REPLY_TO: correlation}
    return answer


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


def _require_event(item: object, what: str) -> None:
    if not isinstance(item, Event):
        raise NotAnEvent(f"{what} an Event, got {type(item).__qualname__}: {item!r:.80}")
