"""The one way in: every event that enters a nexus is admitted by :meth:`Admission.admit`.

Events come in through several *doors*: ``ingest()``, ``ingest_nowait()``,
``ingest_later()``/``ingest_at()``, ``request()``, a source, a boundary handing over what
it holds, a handler (secondary events), and a late answer. The same rules hold at every
door, in this order:

1. the lifecycle lets the door's callers in: ``ingest()`` and its kin until ``stop()``,
   sources until they have been stopped and drained, handlers until the nexus has stopped;
2. the event is an :class:`~async_nexus.Event`; a secondary event is within ``max_chain``
   and the queue's overflow allowance;
3. from a source, an answer that a request of this nexus is waiting for goes to it at
   once, instead of queueing behind the request's asker (other answers reach it when
   they are dispatched);
4. with a tracer, the current trace context is put into the event's headers;
5. with a journal, the event is kept (``ingest()`` waits until it is durable);
6. the event is wrapped in an :class:`~async_nexus._core.items.Item` if more goes with it
   than the event (a reply route, outcome callbacks, a chain depth);
7. it is queued as the door says: waiting for room, refused when the queue is full
   (:class:`~async_nexus.errors.QueueFull`), or past the bound (what was accepted already,
   or what a handler emits, must not deadlock the loop).

What is queued again later was admitted once already and is only placed: a scheduled
event when it is due, a retry, an event replayed from the journal at start.

Two doors run for every event of a busy program, so their most common case is written out
where it is taken, and everything else falls through to :meth:`Admission.admit`:
``ingest()`` (in the nexus) and a converter's events (:meth:`Admission.admit_from_source`).
In that case — no journal, no tracer, the gate open, room in the queue — steps 3 to 6 have
nothing to do.
"""

from __future__ import annotations

import asyncio
import enum
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import BadCall, QueueFull, RunawayChain
from ..events import Event
from ..schedule import ScheduledEvent, Scheduler
from .items import DeadLetterRoute, DispatchTracer, Item, ReplyRoute, require_event
from .keeper import Keeper
from .lifecycle import Lifecycle
from .queue import Doorbell, EventQueue
from .requests import Requests
from .routing import Router

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []

#: The queue priority of a request made from a concurrent handler: ahead of every event,
#: so the answer its caller waits for never queues behind events that wait for the caller.
URGENT = -(1 << 62)

# How far secondary events may overflow a bounded queue (at least): room for bursts, not
# for a runaway.
_OVERFLOW = 65536


class Room(enum.Enum):
    """What a door does when the queue is full."""

    WAIT = "waits for room"
    REFUSE = "refuses with QueueFull"
    PAST_THE_BOUND = "queues past the bound"
    LATER = "queues past the bound when due"


class Gate(enum.Enum):
    """Until when a door lets events in."""

    INGEST = "until stop()"
    SOURCES = "until the sources are stopped and drained"
    HANDLERS = "until the nexus has stopped"
    ALWAYS = "always: it was asked for"


class Door(enum.Enum):
    """A way for an event to come in: who may pass it, and what a full queue does."""

    INGEST = ("ingest()", Gate.INGEST, Room.WAIT)
    INGEST_NOWAIT = ("ingest_nowait()", Gate.INGEST, Room.REFUSE)
    LATER = ("ingest_later()", Gate.INGEST, Room.LATER)
    AT = ("ingest_at()", Gate.INGEST, Room.LATER)
    REQUEST = ("request()", Gate.INGEST, Room.WAIT)
    #: A request from a concurrent handler: ahead of every event, and still during a drain.
    URGENT_REQUEST = ("request() from a concurrent handler", Gate.HANDLERS, Room.PAST_THE_BOUND)
    SOURCE = ("an event from a source", Gate.SOURCES, Room.WAIT)
    #: What a boundary took from the sending side already, handed over as the receiver stops.
    HANDOVER = ("an event handed over by a boundary", Gate.SOURCES, Room.PAST_THE_BOUND)
    SECONDARY = ("a secondary event", Gate.HANDLERS, Room.PAST_THE_BOUND)
    #: An answer to a request of this nexus that came too late, or twice: dispatched as any event.
    LATE_ANSWER = ("an answer that no request waits for", Gate.ALWAYS, Room.PAST_THE_BOUND)
    #: A dead letter sent back: accepted once already, so it never waits or is refused for room.
    REPLAY = ("replay_dead_letters()", Gate.INGEST, Room.PAST_THE_BOUND)

    def __init__(self, what: str, gate: Gate, room: Room) -> None:
        self.what, self.gate, self.room = what, gate, room


class Admission:
    """Admits the events of one nexus (see the module's description)."""

    # Slots: ingest() reads these attributes for every event.
    __slots__ = (
        "_queue", "_life", "_doorbell", "_requests", "_router", "_scheduler", "_keeper",
        "_tracer", "fast", "_fast_sources", "max_chain", "by_source", "secondary",
    )  # fmt: skip

    def __init__(
        self,
        queue: EventQueue,
        lifecycle: Lifecycle,
        doorbell: Doorbell,
        requests: Requests,
        router: Router,
        scheduler: Scheduler,
        keeper: Keeper | None,
        *,
        max_chain: int,
    ) -> None:
        self._queue, self._life, self._doorbell = queue, lifecycle, doorbell
        self._requests, self._router, self._scheduler = requests, router, scheduler
        self._keeper = keeper
        self._tracer: DispatchTracer | None = None
        #: ``ingest()`` may take the fast case: the lifecycle takes events, and there is no
        #: journal to keep them and no tracer to inject (see :meth:`admit_fast`).
        self.fast = False
        self._fast_sources = False
        lifecycle.on_change(self._reconsider)
        self._reconsider()
        self.max_chain = max_chain
        #: Events admitted from each source.
        self.by_source: defaultdict[object, int] = defaultdict(int)
        #: Secondary events admitted.
        self.secondary = 0

    def trace_with(self, tracer: DispatchTracer | None) -> None:
        """Put the trace context into the headers of every event admitted from now on."""
        self._tracer = tracer
        self._reconsider()

    def _reconsider(self) -> None:
        plain = self._tracer is None and self._keeper is None
        self.fast = self._life.takes_ingest and plain
        self._fast_sources = self._life.takes_from_sources and plain

    def admit(
        self,
        event: Any,
        door: Door,
        # Not keyword-only: positional defaults cost ingest() nothing, keyword-only ones a
        # dict lookup each per call.
        source: object = None,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        dead: DeadLetterRoute | None = None,
        waiter: asyncio.Future[Event] | None = None,
        depth: int = 0,
    ) -> Awaitable[None] | None:
        """Admit ``event`` through ``door``; ``None`` once it is queued, or what to await.

        What is returned must be awaited for the event to be queued: the door waits for
        room, or ``ingest()`` for the journal to make the event durable.

        :raises LoopStopped: the lifecycle no longer lets this door's callers in.
        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event`.
        :raises QueueFull: the door refuses when the queue is full, and it is.
        :raises RunawayChain: a secondary event beyond ``max_chain``, or beyond what the
            queue may overflow.
        """
        assert door.room is not Room.LATER, "scheduled events are admitted by admit_later()"
        self._check(event, door, depth)
        if door.gate is Gate.SOURCES and self._requests.waiters and self._answered(event, done, source):
            return None
        if self._tracer is not None:
            self._tracer.inject(event)
        keeper = self._keeper
        seq = None
        entry: Event | Item = event
        if keeper is not None:
            seq = keeper.keep(event)
            entry = keeper.item(event, seq, depth, reply, done, dead, waiter)
        elif depth or reply is not None or done is not None or dead is not None or waiter is not None:
            entry = Item(event, depth, reply, done, waiter)
            entry.dead = dead
        room = door.room
        priority = event.priority
        if room is Room.PAST_THE_BOUND:
            if door is Door.URGENT_REQUEST:
                assert isinstance(entry, Item)
                entry.urgent = True
                priority = URGENT
            self._queue.put_forced(entry, priority)
            self._doorbell.ring_if_waiting()
            self._count(door, source)
            return None
        if room is Room.REFUSE:
            try:
                self._queue.put_nowait(entry, priority)
            except QueueFull:
                if seq is not None:
                    keeper.forget(seq)  # type: ignore[union-attr]
                raise
            self._count(door, source)
            return None
        if seq is not None and door is Door.INGEST:
            assert isinstance(entry, Item)
            return self._when_durable(entry, seq)
        if self._queue.try_put(entry, priority):
            self._count(door, source)
            return None
        return self._wait_for_room(entry, door, source, seq)

    def admit_from_source(self, event: Any, source: object) -> Awaitable[None] | None:
        """``admit(event, Door.SOURCE, source)``, its most common case written out.

        A converter's pump admits every event it pulls: with no journal and no tracer,
        while sources are let in and no request waits for an answer, steps 2 to 6 come down
        to the type check, and the event is queued at once if there is room.
        """
        if (
            self._fast_sources
            and not self._requests.waiters
            and isinstance(event, Event)
            and self._queue.try_put(event, event.priority)
        ):
            self.by_source[source] += 1
            return None
        return self.admit(event, Door.SOURCE, source)

    def admit_later(self, delay: float, event: Any, door: Door) -> ScheduledEvent:
        """Admit ``event`` now and queue it in ``delay`` seconds (loop time), past the bound.

        :raises BadCall: no event loop runs (the scheduler needs its clock).
        """
        self._check(event, door, 0)
        try:
            when = asyncio.get_running_loop().time() + delay
        except RuntimeError:
            raise BadCall(
                f"{door.what} needs a running event loop, whose clock it schedules on; call it "
                "from a coroutine, a handler or a source"
            ) from None
        if self._tracer is not None:
            self._tracer.inject(event)
        keeper = self._keeper
        if keeper is None:
            return self._scheduler.event_at(when, event, lambda event: self.place(event, event.priority))
        return self.schedule_kept(keeper.keep(event, due_in=delay), event, when)

    def schedule_kept(self, seq: int, event: Event, when: float) -> ScheduledEvent:
        """Queue the kept ``event`` (its journal row ``seq``) at ``when`` (loop time); for replay too."""
        keeper = self._keeper
        assert keeper is not None
        item = keeper.item(event, seq)
        return self._scheduler.event_at(
            when, event, lambda event: self.place(item, event.priority), lambda: keeper.forget(seq)
        )

    def place(self, entry: Event | Item, priority: int) -> None:
        """Queue what was admitted already (a due event, a retry, a replayed event), past the bound."""
        self._queue.put_forced(entry, priority)
        self._doorbell.ring()

    # -- the steps ------------------------------------------------------------------

    def check_gate(self, door: Door) -> None:
        """Step 1 alone, for a caller that must know before it gathers its events.

        :raises LoopStopped: the lifecycle no longer lets this door's callers in.
        """
        life = self._life
        gate = door.gate
        if gate is Gate.INGEST:
            allowed = life.takes_ingest
        elif gate is Gate.SOURCES:
            allowed = life.takes_from_sources
        elif gate is Gate.HANDLERS:
            allowed = not life.halted
        else:
            allowed = True
        if not allowed:
            raise life.refusal(f"{door.what} refused")

    def _check(self, event: Any, door: Door, depth: int) -> None:
        self.check_gate(door)
        if not isinstance(event, Event):
            require_event(event, f"{door.what} must be")
        if door is Door.SECONDARY:
            if depth > self.max_chain:
                raise RunawayChain(
                    f"event {event.id!r} of type {event.type!r} would be the {depth}th secondary "
                    f"event in one chain (max_chain={self.max_chain}); a handler keeps emitting "
                    "events that lead back to itself"
                )
            queue = self._queue
            if queue.maxsize and len(queue) >= queue.maxsize + max(queue.maxsize, _OVERFLOW):
                raise RunawayChain(
                    f"secondary events overflow the queue ({len(queue)} queued, maxsize={queue.maxsize}); "
                    "handlers emit events much faster than they are dispatched"
                )

    def _answered(self, event: Event, done: Callable[[Event], object] | None, source: object) -> bool:
        """An awaited answer goes to its request at once: it must not queue behind its asker."""
        if not self._requests.answer(event):
            return False
        self._router.route(event.type).dispatched += 1
        if source is not None:
            self.by_source[source] += 1
        if done is not None:
            done(event)
        return True

    def _count(self, door: Door, source: object) -> None:
        if source is not None:
            self.by_source[source] += 1
        elif door is Door.SECONDARY:
            self.secondary += 1

    async def _when_durable(self, item: Item, seq: int) -> None:
        keeper = self._keeper
        assert keeper is not None
        priority = item.event.priority
        try:
            await keeper.durable()
            if not self._queue.try_put(item, priority):
                await self._queue.put(item, priority)
        except BaseException:
            keeper.forget(seq)  # not accepted, so not kept: ingest() raises
            raise

    async def _wait_for_room(self, entry: Event | Item, door: Door, source: object, seq: int | None) -> None:
        event = entry.event if isinstance(entry, Item) else entry
        try:
            await self._queue.put(entry, event.priority)
        except asyncio.CancelledError:
            life = self._life
            if door is Door.SOURCE and life.stop_asked and life.takes_from_sources:
                # A graceful stop cancels sources waiting for room: keep the event they hold.
                self._queue.put_forced(entry, event.priority)
                self._count(door, source)
            elif seq is not None:
                self._keeper.forget(seq)  # type: ignore[union-attr]
            raise
        except BaseException:
            if seq is not None:
                self._keeper.forget(seq)  # type: ignore[union-attr]
            raise
        self._count(door, source)
