"""What the dispatch loop passes around: items, the handler's view of the queue, tracing's hooks.

Kept apart from :mod:`~async_nexus._core.dispatch` so that the loop reads in one sitting.
:class:`DispatchTracer` is the one extension point here: what a tracing integration
(:mod:`async_nexus.tracing`) plugs into the loop with
:meth:`AsyncEventNexus.trace_with() <async_nexus.AsyncEventNexus.trace_with>`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import BadCall, JournalError, NotAnEvent, UnhandledEvent
from ..events import Event
from ..sources import SOURCE_GOES_ON, source_name
from .queue import EventQueue

__all__ = ["DeadLetterRoute", "DispatchTracer", "ErrorHook", "ReplyRoute"]

logger = logging.getLogger("async_nexus")

#: ``callback(exception, event_or_source)``, sync or async.
ErrorHook = Callable[[BaseException, Any], Any]
#: Where the answers to a request go: ``route(answer)``.
ReplyRoute = Callable[[Event], object]
#: Where an event goes whose handling finally failed: ``route(event, exception, attempts)``.
DeadLetterRoute = Callable[[Event, BaseException, int], object]


class DispatchTracer(Protocol):
    """What tracing (:mod:`async_nexus.tracing`) plugs into the loop; nothing else is traced."""

    def start(self, event: Event) -> Any:
        """Begin the dispatch of ``event``; returns the span."""

    def filtered(self, span: Any) -> None:
        """A filter consumed the event."""

    def failed(self, span: Any, exc: BaseException) -> None:
        """A failure was reported while the event was being dispatched."""

    def release(self, span: Any) -> None:
        """The loop is done with the span, concurrent handlers still hold it; ``end`` follows."""

    def end(self, span: Any) -> None:
        """The dispatch is over."""

    def inject(self, event: Event) -> None:
        """Put the current trace context into ``event.headers`` (it is being queued)."""


class Item:
    """An event in the queue with more to it than the event: most events go in bare.

    ``depth``: how many handlers led to a secondary event. ``reply``: where answers go if
    it is a request. ``done``: called once it is dispatched (transports acknowledge then).
    ``waiter``: the future of this nexus's own request, failed if handling it fails here.
    ``holders``: the loop and the lanes still handling it. ``span``: its tracer and span
    while concurrent handlers hold it. ``urgent``: a request from a concurrent handler.

    When handling it finally failed, ``failure`` holds the exception and the attempts made,
    and ``dead(event, exception, attempts)``, if given, is called instead of ``done``: a
    transport moves its entry to the dead letters. A retry is an item of its own:
    ``target`` is the one registration (its runner) it goes to, ``attempt`` its number, and
    ``origin`` the item it holds until it is over.
    """

    __slots__ = (
        "event", "depth", "reply", "done", "waiter", "holders", "span", "urgent",
        "dead", "failure", "target", "attempt", "origin",
    )  # fmt: skip

    def __init__(
        self,
        event: Event,
        depth: int = 0,
        reply: ReplyRoute | None = None,
        done: Callable[[Event], object] | None = None,
        waiter: asyncio.Future[Event] | None = None,
    ) -> None:
        self.event, self.depth, self.reply, self.done, self.waiter = event, depth, reply, done, waiter
        self.holders = 1
        self.span: tuple[DispatchTracer, Any] | None = None
        self.urgent = False
        self.dead: DeadLetterRoute | None = None
        self.failure: tuple[BaseException, int] | None = None
        self.target: tuple[Callable[..., Any], bool | None] | None = None
        self.attempt = 1
        self.origin: Item | None = None


#: In the task of a concurrent handler: its dispatcher and the item it handles (``None``
#: for a bare event).
HANDLING: contextvars.ContextVar[tuple[Any, Item | None] | None] = contextvars.ContextVar(
    "async_nexus_handling", default=None
)


class HandlerQueue(asyncio.Queue):  # type: ignore[type-arg]
    """The nexus queue as a handler sees it: what it puts there is a secondary event.

    ``emit(event)`` queues a secondary event; ``handling()`` is the item the calling
    handler handles.
    """

    def __init__(
        self, queue: EventQueue, emit: Callable[[Any], None], handling: Callable[[], Item | None]
    ) -> None:
        super().__init__()
        self._queue, self._emit, self._handling = queue, emit, handling

    def put_nowait(self, item: Any) -> None:
        self._emit(item)

    async def put(self, item: Any) -> None:
        self._emit(item)

    def reply_route(self, event: Event) -> ReplyRoute | None:
        """Where answers to ``event`` go, if it is a request being handled now; else ``None``.

        For handlers that carry a request further, as a boundary does: the answer that
        comes back goes to this route.
        """
        current = self._handling()
        if current is not None and current.event is event:
            return current.reply
        return None

    def qsize(self) -> int:
        return len(self._queue)

    def empty(self) -> bool:
        return not len(self._queue)

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


def log_error(exc: BaseException, subject: Any) -> None:
    """The default error hook: log to the ``async_nexus`` logger, with the traceback.

    A source that reports an error and goes on (bad input, a dead letter) is said to have
    *reported* it; one that stopped on it, to have *failed*.
    """
    if isinstance(exc, UnhandledEvent):
        logger.error("async_nexus: %s", exc)
    elif isinstance(exc, JournalError):
        logger.error("async_nexus: %s", exc, exc_info=exc)
    elif isinstance(subject, Event):
        logger.error("async_nexus: handling %r failed", subject, exc_info=exc)
    elif SOURCE_GOES_ON.get():
        name = source_name(subject)
        logger.error("async_nexus: source %s reported an error and goes on", name, exc_info=exc)
    else:
        logger.error("async_nexus: source %s failed", source_name(subject), exc_info=exc)


def require_event(item: object, what: str) -> None:
    """Raise :class:`~async_nexus.errors.NotAnEvent` unless ``item`` is an Event."""
    if not isinstance(item, Event):
        raise NotAnEvent(f"{what} an Event, got {type(item).__qualname__}: {item!r:.80}")
