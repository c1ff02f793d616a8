"""AsyncEventNexus: one queue, one dispatch loop, the sources that feed it.

Read :meth:`AsyncEventNexus._dispatch_until_stopped` for the heart of it: the loop drains
the queue without a task switch per event, resolves each type's route once, and awaits
only the handlers that are ``async``.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .consumers import as_callable
from .errors import (
    BadCall,
    InvalidLoopState,
    LoopAlreadyStarted,
    LoopStopped,
    MultipleStart,
    NoMoreEvents,
    NotAnEvent,
    RunawayChain,
    UnhandledEvent,
)
from .events import Event, EventFactory
from .queue import EventQueue
from .routing import Router
from .sources import EventProducer, EventSource, SimpleEventConverter

__all__ = ["AsyncEventNexus", "NexusState", "ErrorHook"]

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


class _Chained:
    """A secondary event in the queue, with how many handlers led to it."""

    __slots__ = ("event", "depth")

    def __init__(self, event: Event, depth: int) -> None:
        self.event, self.depth = event, depth


class _HandlerQueue(asyncio.Queue):  # type: ignore[type-arg]
    """The nexus queue as a handler sees it: what it puts there is a secondary event."""

    def __init__(self, nexus: AsyncEventNexus) -> None:
        super().__init__()
        self._nexus = nexus

    def put_nowait(self, item: Any) -> None:
        self._nexus._emit(item)

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

    READY = NexusState.READY
    STARTING = NexusState.STARTING
    LOOPING = NexusState.LOOPING
    STOPPING = NexusState.STOPPING
    STOPPED = NexusState.STOPPED

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
        self._depth = 0
        self._joiners: list[asyncio.Future[None]] = []
        self._counts = {"ingested": 0, "dispatched": 0, "filtered": 0, "unhandled": 0, "errors": 0}

    # -- state ----------------------------------------------------------------------

    @property
    def state(self) -> NexusState:
        """Where the nexus is in its lifecycle."""
        return self._state

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

        :raises LoopStopped: the nexus was stopped; the event was not accepted.
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        """
        if not self._accepting:
            raise self._refusal("ingest() refused")
        _require_event(event, "ingest() takes")
        await self._put(event)

    def ingest_nowait(self, event: Event) -> None:
        """Queue ``event`` now, or raise :class:`~async_nexus.errors.QueueFull`."""
        if not self._accepting:
            raise self._refusal("ingest_nowait() refused")
        _require_event(event, "ingest_nowait() takes")
        self._queue.put_nowait(event, event.priority)
        self._counts["ingested"] += 1

    async def _ingest_from_source(self, event: Event) -> None:
        # Sources may deliver until they are closed, even after stop(): what they obtained
        # before they were stopped is dispatched, not dropped.
        if not self._sources_open:
            raise self._refusal("event from a source refused")
        _require_event(event, "a source must produce")
        await self._put(event)

    async def _put(self, event: Event) -> None:
        queue = self._queue
        try:
            await queue.put(event, event.priority)
        except asyncio.CancelledError:
            # A graceful stop cancels sources waiting for room: keep the event they hold.
            if self._sources_open and self._stop_requested:
                queue.put_forced(event, event.priority)
                self._counts["ingested"] += 1
            raise
        self._counts["ingested"] += 1

    def _accept_forced(self, event: Event) -> None:
        """Queue past the bound; for boundaries flushing what they already took."""
        if not self._sources_open:
            raise self._refusal("event refused")
        self._queue.put_forced(event, event.priority)
        self._counts["ingested"] += 1

    def _emit(self, event: Any) -> None:
        """Queue a secondary event from a handler: past the bound, but not without limit."""
        _require_event(event, "a handler can only queue")
        if self._state is NexusState.STOPPED:
            raise self._refusal("secondary event refused")
        depth = self._depth + 1
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
        queue.put_forced(_Chained(event, depth), event.priority)
        self._counts["ingested"] += 1

    async def _emit_result(self, result: Any) -> None:
        if isinstance(result, Event):
            self._emit(result)
        elif isinstance(result, (list, tuple)):
            for item in result:
                self._emit(item)
        elif inspect.isawaitable(result):
            # A plain function that returned a coroutine: run it, as the user meant.
            result = await result
            if result is not None:
                await self._emit_result(result)

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
            self._accepting = self._sources_open = False
            self._wake_joiners()
        if self._failure is not None:
            raise self._failure

    async def _dispatch_until_stopped(self) -> None:
        queue = self._queue
        get = queue.get_nowait
        router = self._router
        handler_queue = self._handler_queue
        counts = self._counts
        report = self._report
        while True:
            if not len(queue):
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
                continue
            if self._interrupt:
                return
            item = get()
            if item.__class__ is _Chained:
                self._depth = item.depth
                event = item.event
            else:
                self._depth = 0
                event = item
            counts["dispatched"] += 1
            for function, is_async in router.filters:
                try:
                    consumed = function(event, handler_queue)
                    if is_async:
                        consumed = await consumed
                except Exception as exc:
                    await report(exc, event)
                    continue
                if consumed:
                    counts["filtered"] += 1
                    break
            else:
                route = router.route(event.type)
                if not route:
                    counts["unhandled"] += 1
                    await report(
                        UnhandledEvent(
                            f"no handler for event type {event.type!r} (event id {event.id!r}) and "
                            f"no default handler; register one with add_handler({event.type!r}, h) "
                            "or add_handler(-1, h)",
                            event,
                        ),
                        event,
                    )
                for function, is_async in route:
                    try:
                        result = function(event, handler_queue)
                        if is_async:
                            result = await result
                        if result is not None:
                            await self._emit_result(result)
                    except Exception as exc:
                        await report(exc, event)

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
            while True:
                event = await converter.obtain_event()
                await self._ingest_from_source(event)
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

    def stats(self) -> dict[str, int]:
        """Counts since creation: ingested, dispatched, filtered, unhandled, errors; queue depth."""
        return {**self._counts, "queued": len(self._queue), "high_water": self._queue.high_water}

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


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


def _require_event(item: object, what: str) -> None:
    if not isinstance(item, Event):
        raise NotAnEvent(f"{what} an Event, got {type(item).__qualname__}: {item!r:.80}")
