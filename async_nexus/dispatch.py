"""The dispatch loop: one task takes each event from the queue and routes it.

Read :meth:`Dispatcher.run` top to bottom. It drains the queue without a task switch per
event, resolves each type's route once, runs filters and then the handlers registered
one at a time, awaiting only those that are ``async``. A handler registered with
``concurrency=N`` runs in a :class:`~async_nexus.lanes.Lane` instead: the loop hands it
the event and goes on, and waits only for room in that lane, never for the handler.

"After dispatch" (a transport's acknowledgement, a span's end) comes when the loop and
every lane that took the event are done with it: an :class:`Item` counts who still
holds its event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from heapq import heappop
from typing import Any

from ._tasks import cancel_and_wait
from .errors import UnhandledEvent
from .events import Event
from .items import ATTEMPT, HANDLING, DispatchTracer, ErrorHook, HandlerQueue, Item, log_error
from .keeper import Keeper
from .outcomes import Outcomes
from .queue import EventQueue
from .requests import Requests
from .routing import Route, Router
from .schedule import Scheduler
from .secondary import emit, emit_result

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []

logger = logging.getLogger("async_nexus")

class Dispatcher(Outcomes):
    """The loop of one nexus, and what handlers reach while it runs them."""

    # Slots: the loop reads these attributes for every event.
    __slots__ = (
        "queue",
        "router",
        "requests",
        "handler_queue",
        "max_chain",
        "refusing",
        "waiting",
        "current",
        "span",
        "tracer",
        "joiners",
        "tasks",
        "busy",
        "scheduler",
        "keeper",
        "_nudge",
    )

    def __init__(
        self,
        queue: EventQueue,
        router: Router,
        requests: Requests,
        *,
        fail_fast: bool,
        max_chain: int,
        on_halt: Callable[[], None],
    ) -> None:
        self.queue, self.router, self.requests = queue, router, requests
        self.handler_queue = HandlerQueue(queue, self.emit, self.handling)
        self.error_hook: ErrorHook = log_error
        self.fail_fast = fail_fast
        self.failure: BaseException | None = None
        self.max_chain = max_chain
        self.on_halt = on_halt  # fail_fast: the nexus refuses ingest from now on
        self.stop_requested = False
        self.halted = False  # drain timeout or fail_fast: dispatch nothing more
        self.interrupt = False  # leave the loop at the next event
        self.refusing = False  # the nexus has stopped: no secondary events either
        self.waiting = False  # the loop waits for the queue
        self.current: Item | None = None  # the item the loop is dispatching, if it is not bare
        self.span: Any = None
        self.tracer: DispatchTracer | None = None
        self.joiners: list[asyncio.Future[None]] = []
        self.counts = {"secondary": 0, "errors": 0, "retries queued": 0}
        #: The tasks of concurrent handlers, and how many of them still hold an event.
        self.tasks: set[asyncio.Task[None]] = set()
        self.busy = 0
        self.scheduler = Scheduler()
        self.keeper: Keeper | None = None  # the journal, if the nexus has one
        self.dead_letter: Callable[[Event, BaseException], Any] | None = None
        self._nudge: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """Dispatch until stopped: see the module's description."""
        queue = self.queue
        buckets, priorities, putters = queue.buckets, queue.priorities, queue.putters
        router = self.router
        routes = router.routes
        handler_queue = self.handler_queue
        report, fail = self.report, self.fail
        requests = self.requests.waiters
        tracer = self.tracer
        span = None
        current: Item | None = None
        while True:
            if not queue.size:
                if self.stop_requested or self.halted:
                    if self.interrupt:
                        return
                    if queue.blocked_putters and not self.halted:
                        await asyncio.sleep(0)  # let woken ingests land before we leave
                        continue
                    if self.busy and not self.halted:
                        await self._wait()  # handlers in flight may still emit events
                        continue
                    return
                if self.joiners and not self.busy:
                    self.wake_joiners()
                self.waiting = True
                try:
                    await queue.wait_not_empty()
                finally:
                    self.waiting = False
                tracer = self.tracer
                continue
            if self.interrupt:
                return
            # Take the most urgent item, as EventQueue lays them out: one FIFO per
            # priority, a heap of the priorities in use. Written out, not called: this
            # runs for every event.
            bucket = buckets[priorities[0]]
            event = bucket.popleft()
            if not bucket:
                heappop(priorities)
            queue.size -= 1
            if event.__class__ is Item:  # an event with more to it than the event
                self.current = current = event
                event = current.event
                if current.target is not None:  # a retry, for one registration only
                    await self._retry(current)
                    current = None
                    continue
            event_type = event.type
            try:
                route = routes[event_type]
            except KeyError:
                route = router.route(event_type)
            if route.lanes and not (current is not None and current.urgent) and route.lanes_full():
                # Put it back and wait for room; a request from a handler may jump ahead.
                queue.put_back(event if current is None else current, event.priority)
                self.current = current = None
                await self._wait()
                continue
            if putters and queue.size < queue.maxsize:
                queue.wake_putter()
            route.dispatched += 1
            if requests and event.headers and self.requests.answer(event):
                if current is not None:
                    await self.release(current)
                    current = None
                continue
            if tracer is not None:
                self.span = span = tracer.start(event)
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
                            await emit_result(self, result, current)
                    except Exception as exc:
                        await fail(exc, event)
                elif route.handlers:
                    current = await self._run_each(route, event, current)
                else:
                    route.unhandled += 1
                    await fail(
                        UnhandledEvent(
                            f"no handler for event type {event.type!r} (event id {event.id!r}) and "
                            f"no default handler; register one with add_handler({event.type!r}, h) "
                            "or add_handler(-1, h)",
                            event,
                        ),
                        event,
                    )
            if span is not None:
                self.span = None
                if current is not None and current.holders > 1:
                    tracer.release(span)  # type: ignore[union-attr]
                else:
                    tracer.end(span)  # type: ignore[union-attr]
                span = None
            if current is not None:
                await self.release(current)
                current = None

    async def _run_each(self, route: Route, event: Event, item: Item | None) -> Item | None:
        """Run or hand on the handlers of ``event`` in order; one failing keeps no other from it."""
        handler_queue = self.handler_queue
        for function, is_async in route.handlers:
            try:
                if is_async is None:  # a lane: it takes the event and the loop goes on
                    if self.span is not None and self.tracer is not None:
                        if item is None:  # the span ends when the last holder is done
                            self.current = item = Item(event)
                        item.span = (self.tracer, self.span)
                    function(event, item, route)
                    continue
                result = function(event, handler_queue)
                if is_async:
                    result = await result
                if result is not None:
                    await emit_result(self, result, item)
            except Exception as exc:
                await self.fail(exc, event)
        return item

    async def _retry(self, item: Item) -> None:
        """Run the retry ``item`` through the one registration it is for."""
        function: Any
        function, is_async = item.target  # type: ignore[misc]
        event = item.event
        if is_async is None and function.held >= function.limit:  # a full lane: as in run()
            self.queue.put_back(item, event.priority)
            self.current = None
            await self._wait()
            return
        self.counts["retries queued"] -= 1
        token = ATTEMPT.set(item.attempt)  # the lane's task copies it, with the context
        if item.span is not None:
            self.span = item.span[1]
        try:
            if is_async is None:
                function(event, item, self.router.route(event.type))
            else:
                result = function(event, self.handler_queue)
                if is_async:
                    result = await result
                if result is not None:
                    await emit_result(self, result, item)
        except Exception as exc:
            await self.fail(exc, event)
        finally:
            ATTEMPT.reset(token)
            self.span = None
        await self.release(item)

    def retry_later(self, event: Event, target: tuple[Callable[..., Any], bool | None], delay: float) -> None:
        """Give ``event`` to ``target`` again in ``delay`` seconds, as its next attempt.

        The item handled now (if any) stays held until the retry is over, so what follows
        its dispatch (an acknowledgement, an answer) follows the retry's outcome.
        """
        origin = self.handling()
        retry = Item(event)
        if origin is not None:
            origin.holders += 1
            retry.depth, retry.reply, retry.waiter = origin.depth, origin.reply, origin.waiter
            if origin is self.current and origin.span is None and self.span is not None:
                origin.span = (self.tracer, self.span)  # type: ignore[assignment]  # ends with the retry
            retry.span = origin.span  # its failure marks the span; the item it retries ends it
        retry.target, retry.attempt, retry.origin = target, ATTEMPT.get() + 1, origin
        self.busy += 1  # join() and a graceful stop wait for it

        def due() -> None:
            self.busy -= 1
            self.counts["retries queued"] += 1  # not a new event: stats() leaves it out of ingested
            self.queue.put_forced(retry, event.priority)
            self.nudge()

        self.scheduler.retry_later(delay, due)

    async def release(self, item: Item) -> None:
        """One holder (the loop or a lane) is done with ``item``; the last one finishes it."""
        if item is self.current:
            self.current = None
        item.holders -= 1
        if item.holders:
            return
        origin, failure = item.origin, item.failure
        if origin is not None:  # a retry is over: so is its hold on the item it retried
            if failure is not None and origin.failure is None:
                origin.failure = failure
            await self.release(origin)
            return
        if item.span is not None:
            tracer, span = item.span
            tracer.end(span)
        if item.done is not None:
            try:
                if failure is not None and item.dead is not None:
                    item.dead(item.event, *failure)
                else:
                    item.done(item.event)
            except Exception as exc:
                await self.notify(exc, item.done)

    async def _wait(self) -> None:
        """Wait for room in a lane, a handler to finish, a request from a handler, or a stop."""
        self._nudge = nudge = asyncio.get_running_loop().create_future()
        try:
            await nudge
        finally:
            self._nudge = None

    def nudge(self) -> None:
        """Wake the loop wherever it waits, so it looks again."""
        nudge = self._nudge
        if nudge is not None and not nudge.done():
            nudge.set_result(None)
        self.queue.wake()

    def lane_finished(self) -> None:
        """A concurrent handler is done with its event: there is room, maybe quiet."""
        self.busy -= 1
        nudge = self._nudge
        if nudge is not None and not nudge.done():
            nudge.set_result(None)
        if not self.busy and not self.queue.size:
            if self.waiting:
                self.wake_joiners()
            if self.stop_requested:
                self.queue.wake()

    def wake_joiners(self) -> None:
        """Release every :meth:`~async_nexus.AsyncEventNexus.join` waiting for quiet."""
        joiners, self.joiners = self.joiners, []
        for joiner in joiners:
            if not joiner.done():
                joiner.set_result(None)

    async def cancel_lanes(self) -> int:
        """Cancel the concurrent handlers still running (a hard stop); how many there were."""
        return await cancel_and_wait(self.tasks)

    # -- what handlers reach ------------------------------------------------------

    def handling(self) -> Item | None:
        """The item being handled by the code that calls this: a concurrent handler's, or the loop's."""
        lane = HANDLING.get()
        if lane is not None and lane[0] is self:
            return lane[1]
        return self.current

    def emit(self, event: Any) -> None:
        """Queue a secondary event from a handler (see :func:`~async_nexus.secondary.emit`)."""
        emit(self, event)
