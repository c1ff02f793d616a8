"""Consumers of events, and the one calling convention every handler is turned into.

A handler is an ``async def h(event, queue)``, a plain ``def h(event, queue)``, or an
:class:`EventConsumer` whose ``handle(event, queue)`` is either. :func:`as_callable`
decides which, once, at registration, so dispatch never inspects a handler again.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
from collections.abc import Awaitable, Coroutine
from typing import Any, Callable, Union

from .errors import FanoutFailed, MisconfiguredEventConsumer, NotRegistered
from .events import Event
from .sources import EventSource

__all__ = [
    "EventConsumer",
    "EventDiscarder",
    "EventFanout",
    "FilterFunc",
    "GenericHandler",
    "HandlerLike",
    "as_callable",
    "close_consumers",
    "create_handler_coro",
]


class EventConsumer(abc.ABC):
    """Base class for handler objects: override :meth:`handle` (sync or ``async``).

    Register an *instance*: ``nexus.add_handler(42, MyConsumer())``.
    """

    @abc.abstractmethod
    def handle(self, event: Any, queue: Any) -> Any:
        """Handle one event.

        :param queue: the nexus queue; ``put``/``put_nowait`` there add secondary events.
        :returns: ``None``, or an event (or a list or tuple of events) to dispatch next.
        """

    def close(self) -> Awaitable[None] | None:
        """Release what the consumer holds: write out a buffer, close a connection.

        A graceful stop of a nexus calls it for every consumer registered there, once the
        queue is drained and no handler runs, within what is left of ``drain_timeout``; a
        failure or a timeout reaches the error hook. Override it as a plain method or as
        ``async def``. A consumer shared by several nexuses is closed by the first that
        stops. The default does nothing.
        """
        return None


#: Anything :meth:`~async_nexus.AsyncEventNexus.add_handler` accepts.
HandlerLike = Union[Callable[..., Any], EventConsumer]
#: Compatibility alias kept from async-nexus 1.0: a handler, as :data:`HandlerLike`.
GenericHandler = HandlerLike
#: Compatibility alias kept from async-nexus 1.0: a filter, ``filter(event, queue)``, plain or
#: ``async``, whose true result consumes the event (see
#: :meth:`~async_nexus.AsyncEventNexus.add_filter`).
FilterFunc = Callable[[Event, "asyncio.Queue[Any]"], Union[bool, Awaitable[bool]]]


def describe(obj: object) -> str:
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} (of type {type(obj).__qualname__})"


def _own_attributes(cls: type) -> set[str]:
    """Names a class defines itself or inherits from anything but ``object``."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}


def index_of(entries: list[tuple[Any, ...]], obj: object) -> int:
    """Position of the entry whose first item is ``obj`` (or equal to it), or ``-1``."""
    for index, entry in enumerate(entries):
        if entry[0] is obj or entry[0] == obj:
            return index
    return -1


def as_callable(
    obj: object, role: str = "handler", *, called_as: str | None = None
) -> tuple[Callable[..., Any], bool]:
    """Return ``(function, is_async)`` for a handler or filter, or raise a clear error.

    ``function(event, queue)`` returns the result directly when ``is_async`` is false and
    an awaitable when it is true.

    :param role: what ``obj`` is, for the messages: ``"handler"``, ``"filter"``, …
    :param called_as: how ``obj`` is called, for the messages, when it is not
        ``role(event, queue)``: the error hook's ``"hook(exception, subject)"``.
    :raises MisconfiguredEventConsumer: (a :class:`TypeError`) when ``obj`` cannot be
        called with two positional arguments.
    """
    consumers = called_as is None  # an EventConsumer's handle() takes (event, queue)
    if called_as is None:
        called_as = f"{role}(event, queue)"
        takes = "a callable taking (event, queue) or an EventConsumer instance"
    else:
        takes = "a callable taking " + called_as[called_as.index("(") :]
    a_role = f"{'an' if role[:1] in 'aeiou' else 'a'} {role}"
    if isinstance(obj, type):
        hint = ""
        if (consumers and issubclass(obj, EventConsumer)) or "__call__" in _own_attributes(obj):
            hint = f"; register an instance: {obj.__name__}()"
        raise MisconfiguredEventConsumer(f"{a_role} must be {takes}, got the class {obj.__qualname__}{hint}")
    if isinstance(obj, EventConsumer):
        function: Callable[..., Any] = obj.handle
    elif callable(obj):
        function = obj
    else:
        raise MisconfiguredEventConsumer(f"{a_role} must be {takes}, got {describe(obj)}")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        signature = None
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            raise MisconfiguredEventConsumer(
                f"{a_role} is called as {called_as}, but {describe(obj)} "
                f"has the signature {signature}; accept two positional parameters"
            ) from None
    is_async = inspect.iscoroutinefunction(function) or (
        not inspect.isroutine(function) and inspect.iscoroutinefunction(type(function).__call__)
    )
    return function, is_async


def create_handler_coro(handler: HandlerLike, event: Event, queue: Any) -> Coroutine[Any, Any, Any]:
    """Return a coroutine that calls ``handler(event, queue)`` and returns its result.

    A compatibility function kept from async-nexus 1.0, for code that calls handlers
    itself. ``handler`` may be anything :meth:`~async_nexus.AsyncEventNexus.add_handler`
    accepts, filters included; nothing is called until the coroutine is awaited. New code
    uses :func:`as_callable`, which decides the calling convention once.

    :raises MisconfiguredEventConsumer: ``handler`` cannot be called as ``handler(event, queue)``.
    """
    function, is_async = as_callable(handler)

    async def call() -> Any:
        result = function(event, queue)
        return await result if is_async else result

    return call()


class _NotInFanout(NotRegistered, ValueError):
    """``EventFanout.deregister()`` of a handler it does not hold.

    A :class:`NotRegistered` like every removal of something not registered, and still the
    :class:`ValueError` it was before (``list.remove``'s), so older ``except`` clauses hold.
    """


class EventFanout(EventConsumer):
    """A handler that hands each event to every handler registered with it, in order.

    One failing handler does not keep the others from the event: every handler runs,
    then the failure is raised (several failures as :class:`~async_nexus.errors.FanoutFailed`)
    so the nexus's error hook sees it. Events the handlers return are all passed on.
    """

    def __init__(self) -> None:
        self._handlers: list[tuple[object, Callable[..., Any], bool]] = []
        # What handle() iterates: rebuilt on (de)registration, so a handler that
        # registers another while it runs does not change the current round.
        self._calls: tuple[tuple[Callable[..., Any], bool], ...] = ()

    def register(self, handler: HandlerLike) -> None:
        """Add ``handler`` to the end of the fanout."""
        function, is_async = as_callable(handler)
        self._handlers.append((handler, function, is_async))
        self._calls = tuple((f, a) for _, f, a in self._handlers)

    def deregister(self, handler: HandlerLike) -> None:
        """Remove ``handler``.

        :raises NotRegistered: ``handler`` is not registered with this fanout; it is also a
            :class:`ValueError`, which is what this raised before.
        """
        index = index_of(self._handlers, handler)
        if index < 0:
            raise _NotInFanout(f"{describe(handler)} is not registered with this fanout")
        del self._handlers[index]
        self._calls = tuple((f, a) for _, f, a in self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    async def handle(self, event: Any, queue: Any) -> Any:
        """Give ``event`` to every registered handler in registration order."""
        results: list[Any] | None = None
        failures: list[BaseException] | None = None
        calls = self._calls
        for function, is_async in calls:
            try:
                result = function(event, queue)
                if is_async:
                    result = await result
            except Exception as exc:
                if failures is None:
                    failures = []
                failures.append(exc)
                continue
            if result is not None:
                if results is None:
                    results = []
                if isinstance(result, (list, tuple)):
                    results.extend(result)
                else:
                    results.append(result)
        if failures:
            if len(failures) == 1:
                raise failures[0]
            raise FanoutFailed(
                f"{len(failures)} of {len(calls)} fanout handlers failed for "
                f"event {getattr(event, 'id', '?')!r}: "
                + "; ".join(f"{type(exc).__name__}: {exc}" for exc in failures),
                failures,
            )
        return results

    async def close(self) -> None:
        """Close the consumers registered with the fanout, in order."""
        for handler, _, _ in self._handlers:
            if isinstance(handler, EventConsumer):
                result = handler.close()
                if inspect.isawaitable(result):
                    await result


async def close_consumers(
    consumers: list[object], timeout: float, report: Callable[[BaseException, Any], Awaitable[None]]
) -> None:
    """Close every :class:`EventConsumer` among ``consumers`` within ``timeout`` seconds.

    Consumers that are sources too (boundaries) are left to the nexus they feed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout, 0.0)
    for consumer in consumers:
        if not isinstance(consumer, EventConsumer) or isinstance(consumer, EventSource):
            continue
        try:
            result = consumer.close()
            if inspect.isawaitable(result):
                await asyncio.wait_for(_await(result), max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            await report(
                TimeoutError(
                    f"closing {describe(consumer)} did not finish within the drain timeout; "
                    "what it still held may be lost: raise drain_timeout"
                ),
                consumer,
            )
        except Exception as exc:
            await report(exc, consumer)


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


class EventDiscarder(EventConsumer):
    """A handler that consumes events and drops them: for events nobody needs."""

    def handle(self, event: Any, queue: Any) -> None:
        """Drop ``event``."""
        return None
