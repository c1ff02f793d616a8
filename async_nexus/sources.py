"""Sources of events: converters pulled by the nexus and producers that push.

The nexus pulls each :class:`SimpleEventConverter` with one long-lived pump task, and runs
each :class:`EventProducer`'s :meth:`~EventProducer.start` as a task of its own. At a
graceful stop those tasks are cancelled first (the sources stop producing), what is
queued is dispatched, and then every source's :meth:`~EventSource.close` is called.
"""

from __future__ import annotations

import abc
import contextvars
import itertools
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Set
from typing import Any, Protocol

from .checkpoints import Checkpoints
from .errors import BadCall, LoopStopped, MisconfiguredEventProducer, NoMoreEvents
from .events import Event, EventFactory

_logger = logging.getLogger("async_nexus")

__all__ = [
    "SourcePort",
    "EventConverter",
    "EventProducer",
    "EventSource",
    "SimpleEventConverter",
]


class SourcePort(Protocol):
    """What a source may do with a nexus it is registered with.

    The nexus hands one to each producer it registers (:meth:`EventProducer.register_nexus`);
    sources reach the nexus through it and nothing else, so this module never imports
    the nexus. A source written for Async Nexus rarely needs it directly:
    :meth:`EventProducer.distribute_event`, :meth:`EventProducer.hand_over` and
    :meth:`EventProducer.report` use it.
    """

    @property
    def nexus(self) -> Any:
        """The nexus this port leads to."""

    @property
    def running(self) -> bool:
        """Whether the nexus's loop runs, with its sources (its state is LOOPING)."""

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for: the sources are being stopped, or have been."""

    async def deliver(
        self,
        event: Event,
        source: EventSource | None = None,
        *,
        reply: Callable[[Event], object] | None = None,
        on_dispatched: Callable[[Event], object] | None = None,
        on_dead_letter: Callable[[Event, BaseException, int], object] | None = None,
    ) -> None:
        """Queue ``event`` from ``source``, waiting while the queue is full.

        ``on_dispatched(event)`` is called once it is dispatched; ``on_dead_letter(event,
        exception, attempts)`` instead once its handling finally failed; ``reply(answer)``
        is where answers go if it is a request.

        :raises LoopStopped: the nexus no longer takes events from sources.
        """

    def deliver_now(
        self,
        event: Event,
        source: EventSource | None = None,
        *,
        reply: Callable[[Event], object] | None = None,
    ) -> None:
        """Queue ``event`` now, past the queue's bound: for what a source took already.

        :raises LoopStopped: the nexus no longer takes events from sources.
        """

    async def report(self, exc: BaseException, subject: Any) -> None:
        """Send a failure to the nexus's error hook, naming ``subject``."""

    def adopt(self, producer: EventProducer) -> bool:
        """Run ``producer.start()`` in this nexus if its loop runs; true if it does.

        How a producer shared by several nexuses goes on when the nexus that ran it stops.
        """


#: True while a source reports a failure that it goes on after (bad input, a dead letter),
#: unlike one that ended it; the default error hook words its log line by it.
SOURCE_GOES_ON: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "async_nexus_source_goes_on", default=False
)


async def report_going_on(
    report: Callable[[BaseException, Any], Awaitable[None]], exc: BaseException, source: EventSource
) -> None:
    """``await report(exc, source)`` for a failure that ``source`` goes on after."""
    token = SOURCE_GOES_ON.set(True)
    try:
        await report(exc, source)
    finally:
        SOURCE_GOES_ON.reset(token)


def wrong_source(call: str, kind: type, source: object, hint: str = "") -> BadCall:
    """The error for ``call``, which takes a ``kind`` of source, refusing ``source``.

    ``call`` names the method and what it takes; ``hint`` says where a source of another
    kind goes. A source class passed for an instance is asked for an instance.
    """
    hint = f"; {hint}" if hint else ""
    if not isinstance(source, type):
        return BadCall(f"{call}, got {type(source).__qualname__}{hint}")
    name = source.__qualname__
    if not issubclass(source, EventSource):
        return BadCall(f"{call}, got the class {name}")
    return BadCall(
        f"{call}, got the class {name}; register an instance: {source.__name__}()"
        + ("" if issubclass(source, kind) else hint)
    )


#: The keys of ``stats()["by_source"]`` that are not sources; no source may take them.
RESERVED_NAMES = frozenset({"secondary", "ingest()"})

# The numbers of default names, per class name, in the order this process registered
# sources: process-wide, so that one name means one source in every log of the process.
_numbers: defaultdict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))


def source_name(source: object) -> str:
    """What logs and stats call ``source``: its :attr:`~EventSource.name`, else its repr."""
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else repr(source)


class EventSource:
    """Base class of everything that feeds events into a nexus."""

    #: Where the source saves its position and reads it back at start
    #: (:class:`~async_nexus.checkpoints.Checkpoints`): a nexus created with ``journal=``
    #: sets it when the source is registered, and commits each save together with the
    #: events the source produced before it. ``None``: nothing is saved.
    checkpoints: Checkpoints | None = None

    @property
    def name(self) -> str:
        """What logs, task names, ``stats()["by_source"]`` and metrics call this source; settable.

        By default the class name and a number that counts the sources of that class in the
        order the process registered them: ``JsonTail-1``, ``JsonTail-2``. Names must differ
        within a nexus; ``"secondary"`` and ``"ingest()"`` are taken by ``stats()``.
        """
        name: str | None = getattr(self, "_source_name", None)
        if name is None:
            cls = type(self).__name__
            name = self._source_name = f"{cls}-{next(_numbers[cls])}"
        return name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str) or not name or name in RESERVED_NAMES:
            raise BadCall(
                f"a source name is a non-empty str other than {' or '.join(sorted(RESERVED_NAMES))}, "
                f"got {name!r}"
            )
        self._source_name = name

    async def start(self) -> None:
        """Get ready to produce (connect, open a file); awaited once when the loop starts.

        The default does nothing. A converter is asked for events only after its
        ``start()`` returned; a producer's ``start()`` runs as a task for as long as it
        produces (see :class:`EventProducer`).
        """

    def close(self) -> Awaitable[None] | None:
        """Release what the source holds. The nexus calls it once, after it stopped.

        Override it as a plain method or as ``async def``; both are honoured.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} at {id(self):#x}>"


class SimpleEventConverter(EventSource, abc.ABC):
    """A pull-mode source: the nexus awaits :meth:`obtain_event` again and again.

    Raise :class:`~async_nexus.errors.NoMoreEvents` when there will be no more; the nexus
    then retires and closes the converter and keeps running. While the nexus queue is
    full, the converter is not asked for more.
    """

    @abc.abstractmethod
    async def obtain_event(self) -> Event:
        """Wait for the next event and return it."""


class EventConverter(SimpleEventConverter):
    """A pull-mode source written as an async generator: override :meth:`event_generator`.

    The end of the generator retires the converter, like ``NoMoreEvents``.
    """

    _generator: AsyncIterator[Event] | None = None

    @abc.abstractmethod
    def event_generator(self) -> AsyncIterator[Event]:
        """Yield events, as an ``async def`` generator."""

    async def obtain_event(self) -> Event:
        """The next event of :meth:`event_generator`."""
        if self._generator is None:
            self._generator = self.event_generator()
        try:
            return await self._generator.__anext__()
        except StopAsyncIteration:
            raise NoMoreEvents(f"{self!r}: its event_generator() has finished") from None

    async def close(self) -> None:
        """Close the generator, running its ``finally`` blocks."""
        generator, self._generator = self._generator, None
        aclose = getattr(generator, "aclose", None)
        if aclose is not None:
            await aclose()


class EventProducer(EventSource):
    """A push-mode source: it calls :meth:`distribute_event` whenever it has an event.

    Override :meth:`start`, which the nexus runs as a task when its loop starts and
    cancels when it stops (so it may run for as long as the producer produces), and
    :meth:`~EventSource.close`. The producer holds its nexuses by weak reference.

    :param event_factory: used by subclasses to build events
        (``self.event_factory.create_event(..., event_type=...)``); when it is not given,
        the first nexus the producer is registered with serves.
    """

    _running = False  # start() is being run by one of the nexuses

    def __init__(self, event_factory: EventFactory | None = None) -> None:
        self._event_factory = event_factory
        self._ports: list[weakref.ref[SourcePort]] = []

    @property
    def event_factory(self) -> EventFactory:
        """The factory for this producer's events."""
        factory: EventFactory | None = getattr(self, "_event_factory", None)
        if factory is not None:
            return factory
        for nexus in self.nexuses():
            if isinstance(nexus, EventFactory):
                return nexus
        raise MisconfiguredEventProducer(
            f"{self!r} has no event_factory and is not registered with any nexus; pass "
            "event_factory=nexus to its constructor, or add it with nexus.add_producer()"
        )

    @event_factory.setter
    def event_factory(self, factory: EventFactory | None) -> None:
        self._event_factory = factory

    def register_nexus(self, port: SourcePort) -> None:
        """Deliver this producer's events through ``port`` too, to its nexus.

        ``nexus.add_producer(producer)`` calls it with the port that nexus hands its
        sources; register producers that way.
        """
        if not hasattr(self, "_ports"):
            raise MisconfiguredEventProducer(
                f"{type(self).__qualname__}.__init__ did not call super().__init__(); "
                "EventProducer subclasses must"
            )
        if all(other.nexus is not port.nexus for other in self._live_ports()):
            self._ports.append(weakref.ref(port))

    def deregister_nexus(self, nexus: object) -> None:
        """Stop delivering to ``nexus`` (the nexus, or the port it handed this producer)."""
        self._ports = [
            ref for ref in self._ports if (port := ref()) is not None and nexus not in (port, port.nexus)
        ]

    def nexuses(self) -> list[Any]:
        """The nexuses this producer delivers to that are still alive."""
        return [port.nexus for port in self._live_ports()]

    def _live_ports(self) -> list[SourcePort]:
        return [port for ref in getattr(self, "_ports", ()) if (port := ref()) is not None]

    @property
    def nexus_set(self) -> Set[Any]:
        """A read-only, live set view of :meth:`nexuses`.

        A compatibility alias kept from async-nexus 1.0, where it was a ``WeakSet``;
        register and deregister with :meth:`register_nexus` and :meth:`deregister_nexus`.
        """
        return _NexusSet(self)

    async def start(self) -> None:
        """Produce events. The default does nothing: a producer fed by callbacks needs no task."""

    def on_stopping(self) -> None:
        """Called by a stopping nexus after it cancelled :meth:`start`, before it drains.

        The default does nothing; a producer that holds events it took already (a
        boundary) hands them over here, with :meth:`hand_over`.
        """

    async def distribute_event(
        self,
        event: Event,
        *,
        on_dispatched: Callable[[Event], object] | None = None,
        reply: Callable[[Event], object] | None = None,
        on_dead_letter: Callable[[Event, BaseException, int], object] | None = None,
    ) -> int:
        """Ingest ``event`` into every registered nexus, waiting where a queue is full.

        A nexus that has stopped is skipped. Returns how many nexuses took the event.

        The keywords serve transports. ``on_dispatched(event)`` is called, in the loop of
        the nexus or in the task of the concurrent handler that finished last, once the
        event has been dispatched (handled, filtered, or its failure reported) in every
        nexus that took it; never when it was not dispatched (refused,
        cut off by the drain timeout, or lost to a hard stop), which is what lets a
        transport acknowledge only what was really delivered. With ``on_dead_letter``, an
        event whose handling finally failed in a nexus (after its retries; or that no
        handler took) calls ``on_dead_letter(event, exception, attempts)`` instead, once,
        when every nexus is done with it: the transport moves it to its dead letters.
        ``reply(answer)`` is where answers go when the event is a request (see
        :meth:`AsyncEventNexus.request`).

        :raises MisconfiguredEventProducer: when no nexus is registered.
        """
        ports = self._live_ports()
        if not ports:
            raise MisconfiguredEventProducer(
                f"{self!r} distributed an event but is registered with no nexus; "
                "add it with nexus.add_producer() first"
            )
        done, dead = on_dispatched, on_dead_letter
        countdown = None
        if on_dispatched is not None and len(ports) > 1:
            countdown = _Countdown(on_dispatched, on_dead_letter)
            done, dead = countdown, countdown.failed
        accepted = 0
        for port in ports:
            if countdown is not None:
                countdown.pending += 1
            try:
                await port.deliver(event, self, reply=reply, on_dispatched=done, on_dead_letter=dead)
            except LoopStopped:
                if countdown is not None:
                    countdown.pending -= 1
                continue
            accepted += 1
        if countdown is not None and accepted:
            countdown(event)  # the guard: no call before every nexus had the event
        return accepted

    async def report(self, exc: BaseException) -> None:
        """Send ``exc`` to the error hook of every registered nexus, naming this producer.

        For failures the producer goes on after, such as a malformed message: the default
        error hook logs that the producer *reported* an error, not that it failed.
        """
        ports = self._live_ports()
        if not ports:
            _logger.error(
                "async_nexus: %s reported an error, and no nexus is registered", self.name, exc_info=exc
            )
        for port in ports:
            await report_going_on(port.report, exc, self)

    def hand_over(self, event: Event, *, reply: Callable[[Event], object] | None = None) -> int:
        """Queue ``event`` now in every registered nexus that still takes it, past the bound.

        For what the producer took already and must not keep waiting (a boundary's events,
        as its receiving nexus stops). Returns how many nexuses took it.
        """
        accepted = 0
        for port in self._live_ports():
            try:
                port.deliver_now(event, self, reply=reply)
            except LoopStopped:
                continue
            accepted += 1
        return accepted


def claim_start(producer: EventProducer) -> bool:
    """For nexuses: true if ``producer.start()`` is not run by any nexus, which now runs it.

    A producer shared by several nexuses is started once, by the first to start; it may
    start again once it has been closed.
    """
    if producer._running:
        return False
    producer._running = True
    return True


def release_start(producer: EventProducer) -> None:
    """For nexuses: the nexus that ran ``producer.start()`` no longer does."""
    producer._running = False


def hand_on(producer: EventProducer) -> bool:
    """For a nexus that stops: leave ``producer`` to the nexuses still using it; true if any is.

    One of them that is looping runs its ``start()`` from now on, unless one does already.
    """
    ports = producer._live_ports()
    if not producer._running:
        for port in ports:
            if port.adopt(producer):
                break
    return bool(ports)


class _NexusSet(Set[Any]):
    """What :attr:`EventProducer.nexus_set` returns: reads the producer's nexuses each time."""

    __slots__ = ("_producer",)

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer

    def __contains__(self, nexus: object) -> bool:
        return any(n is nexus for n in self._producer.nexuses())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._producer.nexuses())

    def __len__(self) -> int:
        return len(self._producer.nexuses())

    def __repr__(self) -> str:
        return f"<nexus_set of {self._producer!r}: {self._producer.nexuses()!r}>"


class _Countdown:
    """Calls ``callback`` once every nexus that took an event is done with it; ``dead``
    instead if it failed in one of them."""

    __slots__ = ("callback", "dead", "pending", "failure")

    def __init__(
        self, callback: Callable[[Event], object], dead: Callable[[Event, BaseException, int], object] | None
    ) -> None:
        self.callback, self.dead = callback, dead
        self.pending = 1  # the guard, released when distribution is over
        self.failure: tuple[BaseException, int] | None = None

    def failed(self, event: Event, exc: BaseException, attempts: int) -> None:
        if self.failure is None:
            self.failure = (exc, attempts)
        self(event)

    def __call__(self, event: Event) -> None:
        self.pending -= 1
        if not self.pending:
            if self.failure is not None and self.dead is not None:
                self.dead(event, *self.failure)
            else:
                self.callback(event)
