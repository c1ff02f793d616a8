"""The dispatch loop: one task takes each event from the queue and routes it.

Read :meth:`Dispatcher.run` top to bottom. It drains the queue without a task switch per
event, resolves each type's route once, runs filters and then the handlers registered
one at a time, awaiting only those that are ``async``. A handler registered with
``concurrency=N`` runs in a :class:`~async_nexus._core.lanes.Lane` instead: the loop hands
it the event and goes on, and waits only for room in that lane, never for the handler.

The loop shares the event loop with the rest of the program: while a backlog drains it
yields at least every ``yield_every`` seconds of dispatching (10 ms by default), so
timers, sources, transports, journal commits and the program's other tasks keep running.
It reads the clock every few events: every event when events are slow, every 32nd when
they are fast.

"After dispatch" (a transport's acknowledgement, a span's end) comes when the loop and
every lane that took the event are done with it: an :class:`Item` counts who still
holds its event.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from heapq import heappop
from typing import Any

from .._tasks import cancel_and_wait
from ..errors import UnhandledEvent
from ..events import Event
from ..policy import ATTEMPT
from ..schedule import Scheduler
from .admission import Admission, Door
from .items import HANDLING, DispatchTracer, HandlerQueue, Item, require_event
from .lifecycle import Lifecycle
from .outcomes import Outcomes, Traced
from .queue import Doorbell, EventQueue
from .requests import Requests, answer_to
from .retries import Runner
from .routing import Route, Router

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []

#: Seconds of dispatching after which the loop lets the rest of the program run, by default.
YIELD_EVERY = 0.010
# The clock is read every `stride` events, between 1 and _MAX_STRIDE: halved when the
# events between two readings took over an eighth of the budget, doubled when they took
# under a sixty-fourth. Slow events are timed one by one, fast ones cost a reading per 32.
_MAX_STRIDE = 32
_TURNS = range(3)


class Dispatcher:
    """The loop of one nexus, and what handlers reach while it runs them."""

    # Slots: the loop reads these attributes for every event.
    __slots__ = (
        "queue", "router", "requests", "admission", "outcomes", "lifecycle", "doorbell",
        "scheduler", "handler_queue", "waiting", "current", "span", "tracer", "joiners",
        "tasks", "busy", "retries_queued", "yield_every", "_task",
    )  # fmt: skip

    def __init__(
        self,
        queue: EventQueue,
        doorbell: Doorbell,
        router: Router,
        requests: Requests,
        admission: Admission,
        outcomes: Outcomes,
        lifecycle: Lifecycle,
        scheduler: Scheduler,
    ) -> None:
        self.queue, self.doorbell, self.router, self.requests = queue, doorbell, router, requests
        self.admission, self.outcomes, self.lifecycle = admission, outcomes, lifecycle
        self.scheduler = scheduler
        self.handler_queue = HandlerQueue(queue, self.emit, self.handling)
        self.waiting = False  # the loop waits for the queue
        self.current: Item | None = None  # the item the loop is dispatching, if it is not bare
        self.span: Any = None
        self.tracer: DispatchTracer | None = None
        self.joiners: list[asyncio.Future[None]] = []
        #: The tasks of concurrent handlers, and how many events are held beside the loop
        #: (by those tasks, and by retries waiting for their time).
        self.tasks: set[asyncio.Task[None]] = set()
        self.busy = 0
        #: Retries queued and not taken yet: stats() leaves them out of ``ingested``.
        self.retries_queued = 0
        #: Seconds of dispatching after which the loop yields to the rest of the program.
        self.yield_every = YIELD_EVERY
        self._task: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        """Dispatch until the lifecycle says to leave: see the module's description."""
        queue = self.queue
        buckets, priorities, putters = queue.buckets, queue.priorities, queue.putters
        router = self.router
        routes = router.routes
        handler_queue = self.handler_queue
        fail = self.fail
        requests = self.requests.waiters
        life = self.lifecycle
        self._task = asyncio.current_task()
        clock = time.monotonic
        budget = self.yield_every
        slow, fast = budget / 8, budget / 64
        stride = countdown = 1
        looked = clock()
        deadline = looked + budget
        tracer = self.tracer
        span = None
        current: Item | None = None
        while True:
            if not queue.size:
                if life.halted:
                    return
                if life.draining:
                    if queue.blocked_putters:
                        await asyncio.sleep(0)  # let woken ingests land before we leave
                        continue
                    if self.busy:
                        await self.doorbell.wait()  # handlers in flight may still emit events
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
                looked = clock()
                deadline = looked + budget
                continue
            if life.halted:
                return
            countdown -= 1
            if not countdown:  # time to read the clock
                now = clock()
                if now - looked > slow:
                    stride = stride >> 1 or 1
                elif now - looked < fast and stride < _MAX_STRIDE:
                    stride <<= 1
                countdown, looked = stride, now
                if now >= deadline:
                    # The rest of the program's turn: three turns of the event loop. A timer
                    # or a socket wakes its task through a callback that runs in one turn and
                    # the task's step in the next; this task's step, queued before them,
                    # must come after both.
                    for _ in _TURNS:
                        await asyncio.sleep(0)
                    budget = self.yield_every
                    slow, fast = budget / 8, budget / 64
                    looked = clock()
                    deadline = looked + budget
                    tracer = self.tracer
                    continue  # look again: a stop or a more urgent event may have come
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
                await self.doorbell.wait()
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
            if not router.filters or not await self._filtered(event, route):
                only = route.only
                if only is not None:  # _run_each for the one handler most types have, written out
                    function, is_async = only
                    try:
                        result = function(event, handler_queue)
                        if is_async:
                            result = await result
                        if result is not None:
                            await self.emit_result(result, current)
                    except Exception as exc:
                        await fail(exc, event, function)
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

    async def _filtered(self, event: Event, route: Route) -> bool:
        """Run the filters on ``event`` in order; true if one consumed it."""
        handler_queue = self.handler_queue
        for function, is_async in self.router.filters:
            try:
                consumed = function(event, handler_queue)
                if is_async:
                    consumed = await consumed
            except Exception as exc:
                await self.report(exc, event)
                continue
            if consumed:
                route.filtered += 1
                if self.span is not None and self.tracer is not None:
                    self.tracer.filtered(self.span)
                return True
        return False

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
                    await self.emit_result(result, item)
            except Exception as exc:
                await self.fail(exc, event, function)
        return item

    async def _retry(self, item: Item) -> None:
        """Run the retry ``item`` through the one registration it is for."""
        function: Any
        function, is_async = item.target  # type: ignore[misc]
        event = item.event
        if is_async is None and function.held >= function.limit:  # a full lane: as in run()
            self.queue.put_back(item, event.priority)
            self.current = None
            await self.doorbell.wait()
            return
        self.retries_queued -= 1
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
                    await self.emit_result(result, item)
        except Exception as exc:
            await self.fail(exc, event, function)
        finally:
            ATTEMPT.reset(token)
            self.span = None
        await self.release(item)

    def retry_later(self, event: Event, target: Runner, delay: float) -> None:
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
            self.retries_queued += 1
            self.admission.place(retry, event.priority)

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
                await self.outcomes.notify(exc, item.done)

    # -- failures -------------------------------------------------------------------

    def _traced(self, item: Item | None) -> Traced | None:
        if item is not None and item.span is not None:
            return item.span
        if self.span is not None and self.tracer is not None:
            return (self.tracer, self.span)
        return None

    async def report(self, exc: BaseException, subject: Any) -> None:
        """Report a failure in the loop's dispatch of ``subject``."""
        await self.outcomes.report(exc, subject, self.current, self._traced(None))

    async def fail(self, exc: BaseException, event: Event, runner: object = None) -> None:
        """The loop's handling of ``event`` by ``runner`` (``None``: no handler took it)
        finally failed: it is a dead letter."""
        await self.outcomes.fail(exc, event, self.current, self._traced(None), runner)

    async def fail_in_lane(self, exc: BaseException, event: Event, item: Item | None, lane: object) -> None:
        """A concurrent handler's handling of ``event`` finally failed: it is a dead letter."""
        await self.outcomes.fail(exc, event, item, item.span if item is not None else None, lane)

    # -- lanes, joiners, the stop ---------------------------------------------------

    def lane_started(self, task: asyncio.Task[None]) -> None:
        """A concurrent handler took an event in ``task``."""
        self.busy += 1
        self.tasks.add(task)

    def lane_finished(self, task: asyncio.Task[None]) -> None:
        """A concurrent handler is done with its event: there is room, maybe quiet."""
        self.busy -= 1
        self.tasks.discard(task)
        self.doorbell.ring_if_waiting()
        if not self.busy and not self.queue.size and self.waiting:
            self.wake_joiners()

    async def wait_until_quiet(self) -> None:
        """Wait until the loop has nothing queued and nothing in flight."""
        joiner = asyncio.get_running_loop().create_future()
        self.joiners.append(joiner)
        await joiner

    def wake_joiners(self) -> None:
        """Release every :meth:`wait_until_quiet`."""
        joiners, self.joiners = self.joiners, []
        for joiner in joiners:
            if not joiner.done():
                joiner.set_result(None)

    async def cancel_lanes(self) -> int:
        """Cancel the concurrent handlers still running (a hard stop); how many there were."""
        return await cancel_and_wait(self.tasks)

    def runs_in_this_task(self) -> bool:
        """Whether the caller is the loop's own task: a handler or filter it runs."""
        return self._task is not None and asyncio.current_task() is self._task

    def yield_after(self, seconds: float) -> None:
        """Let the rest of the program run after ``seconds`` of dispatching, from the next yield."""
        self.yield_every = seconds

    def trace_with(self, tracer: DispatchTracer | None) -> None:
        """Start a span for every event dispatched from now on (``None``: no more)."""
        self.tracer = tracer

    # -- what handlers reach ------------------------------------------------------

    def handling(self) -> Item | None:
        """The item being handled by the code that calls this: a concurrent handler's, or the loop's."""
        lane = HANDLING.get()
        if lane is not None and lane[0] is self:
            return lane[1]
        return self.current

    def emit(self, event: Any) -> None:
        """Admit a secondary event from a handler: past the bound, within ``max_chain``."""
        current = self.handling()
        depth = 1 if current is None else current.depth + 1
        self.admission.admit(event, Door.SECONDARY, depth=depth)

    async def emit_result(self, result: Any, item: Item | None) -> None:
        """Admit what a handler of ``item`` returned; the answer, if ``item`` is a request."""
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
        if item is not None and item.reply is not None:
            # What the handler of a request returns is its answer, not a secondary event.
            for answer in events:
                require_event(answer, "the handler of a request can only answer with")
                item.reply(answer_to(item.event, answer))
            return
        for event in events:
            self.emit(event)
