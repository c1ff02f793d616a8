"""How handlers, filters, hooks and sources are registered with a nexus.

:class:`NexusRegistry` is the half of :class:`~async_nexus.AsyncEventNexus` that takes
registrations: it checks what it is given, builds what runs per event once (the lanes of
:mod:`~async_nexus.lanes`, the policies of :mod:`~async_nexus.policy`) and hands it to the
routing table (:mod:`~async_nexus.routing`) or the sources' tasks (:mod:`~async_nexus.feeds`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from .consumers import HandlerLike, as_callable
from .events import Event
from .intake import NexusIntake, NexusState
from .lanes import Lane, check_concurrency
from .policy import Retry, check_retry, check_timeout, with_retry, with_timeout
from .routing import TypeSpec
from .sources import EventProducer, EventSource, SimpleEventConverter, wrong_source

__all__ = ["NexusRegistry"]

F = TypeVar("F", bound=Callable[..., Any])


class NexusRegistry(NexusIntake):
    """The registrations of :class:`~async_nexus.AsyncEventNexus`: handlers, filters, hooks, sources."""

    __slots__ = ()

    # -- registration ---------------------------------------------------------------

    def add_handler(
        self,
        event_type: TypeSpec,
        handler: HandlerLike,
        *,
        concurrency: int = 1,
        key: Callable[[Event], Hashable] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
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
        :param timeout: seconds an ``async`` handler may take per event (per attempt, under
            ``retry=``); one that runs longer is cancelled and fails with
            :class:`~async_nexus.errors.HandlerTimeout`, which ``retry=`` retries like any failure.
        :raises BadCall: ``concurrency`` is not an int >= 1, ``key`` is not callable, or
            ``timeout`` is not a positive number for an ``async`` handler, or ``retry``
            is not a :class:`~async_nexus.Retry`.
        :param retry: call the handler again when it fails, after a backoff (see
            :class:`~async_nexus.Retry`); the wait holds neither the loop nor other events,
            except later events of the same ``key``, which keep their order. Only the final
            failure reaches the error hook and makes the event a dead letter.
        """
        check_concurrency(concurrency, key)
        function, is_async = as_callable(handler, "handler")
        check_timeout(timeout, is_async, handler)
        check_retry(retry)
        if timeout is not None:
            function = with_timeout(function, timeout, handler)
        target = None
        if retry is not None:
            in_place = key is not None  # a keyed lane: later events of the key wait behind it
            function, is_async, target = with_retry(
                function, is_async, retry, handler, self._dispatcher, in_place=in_place
            )
        runner: tuple[Callable[..., Any], bool | None] = (function, is_async)
        if concurrency > 1:
            runner = (Lane(self._dispatcher, handler, function, is_async, limit=concurrency, key=key), None)
        if target is not None:
            target.append(runner)  # where this registration's retries go
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
        retry: Retry | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_handler`; returns the function unchanged.

        >>> from async_nexus import AsyncEventNexus
        >>> nexus = AsyncEventNexus()
        >>> @nexus.on(99)
        ... async def teapot(event, queue):
        ...     print("teapot", event.id)
        """
        check_concurrency(concurrency, key)
        check_retry(retry)

        def register(handler: F) -> F:
            self.add_handler(
                event_type, handler, concurrency=concurrency, key=key, timeout=timeout, retry=retry
            )
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

    def on_dead_letter(self, callback: F) -> F:
        """Call ``callback(event, exception)`` for each event whose handling finally failed.

        An event is a *dead letter* when a handler failed on it for the last time (after
        its retries, if it has ``retry=``; at once without) or when no handler took it
        (:class:`~async_nexus.errors.UnhandledEvent`). The callback may be sync or async
        and runs after the error hook; usable as a decorator. A filter that raises does not
        make a dead letter: the event goes on to the handlers. With ``multiple=True``, each
        registration that finally fails on an event makes one call.
        """
        as_callable(callback, "dead-letter hook", called_as="hook(event, exception)")
        self._dispatcher.dead_letter = callback
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
        if self._keeper is not None and source.checkpoints is None:
            source.checkpoints = self._keeper.checkpoints
