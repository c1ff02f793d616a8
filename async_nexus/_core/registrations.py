"""What registering a handler, a filter or a source does.

:class:`Registrations` checks what it is given and builds, once, what runs per event: the
policies of :mod:`~async_nexus._core.retries` around the handler, a
:class:`~async_nexus._core.lanes.Lane` for ``concurrency=N``. It hands the result to the
routing table (:mod:`~async_nexus._core.routing`), and sources to their feeds
(:mod:`~async_nexus._core.feeds`). The options are documented on
:meth:`AsyncEventNexus.add_handler() <async_nexus.AsyncEventNexus.add_handler>`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ..consumers import HandlerLike, as_callable
from ..events import Event
from ..policy import Retry
from ..schedule import Scheduler
from ..sources import EventProducer, EventSource, SimpleEventConverter, wrong_source
from .dispatch import Dispatcher
from .feeds import Feeds
from .keeper import Keeper
from .lanes import Lane, check_concurrency
from .lifecycle import Lifecycle
from .retries import Runner, check_retry, check_timeout, with_retry, with_timeout
from .routing import Router, TypeSpec

# Internal: the public face is AsyncEventNexus's registration methods.
__all__: list[str] = []


class Registrations:
    """The handlers, filters and sources of one nexus."""

    __slots__ = ("_router", "_dispatcher", "_scheduler", "_feeds", "_life", "_keeper")

    def __init__(
        self,
        router: Router,
        dispatcher: Dispatcher,
        scheduler: Scheduler,
        feeds: Feeds,
        lifecycle: Lifecycle,
        keeper: Keeper | None,
    ) -> None:
        self._router, self._dispatcher, self._scheduler = router, dispatcher, scheduler
        self._feeds, self._life, self._keeper = feeds, lifecycle, keeper

    def check_options(
        self, concurrency: int, key: Callable[[Event], Hashable] | None, retry: Retry | None
    ) -> None:
        """Refuse options of :meth:`add_handler` that cannot work, before there is a handler."""
        check_concurrency(concurrency, key)
        check_retry(retry)

    def add_handler(
        self,
        event_type: TypeSpec,
        handler: HandlerLike,
        *,
        concurrency: int,
        key: Callable[[Event], Hashable] | None,
        timeout: float | None,
        retry: Retry | None,
    ) -> None:
        """Build what runs ``handler`` per event, and route ``event_type`` to it."""
        check_concurrency(concurrency, key)
        function, is_async = as_callable(handler, "handler")
        check_timeout(timeout, is_async, handler)
        check_retry(retry)
        if timeout is not None:
            function = with_timeout(function, timeout, handler)
        target = None
        dispatcher = self._dispatcher
        if retry is not None:
            function, is_async, target = with_retry(
                function,
                is_async,
                retry,
                handler,
                in_place=key is not None,  # a keyed lane: later events of the key wait behind it
                sleep=self._scheduler.sleep,
                again_in=dispatcher.retry_later,
            )
        runner: Runner = (function, is_async)
        if concurrency > 1:
            lane = Lane(
                dispatcher, dispatcher.handler_queue, handler, function, is_async, limit=concurrency, key=key
            )
            runner = (lane, None)
        if target is not None:
            target.append(runner)  # where this registration's retries go
        self._router.add_handler(event_type, handler, runner)

    def remove_handler(self, event_type: TypeSpec, handler: HandlerLike) -> None:
        """Forget ``handler`` for ``event_type``."""
        self._router.remove_handler(event_type, handler)

    def add_filter(self, filter: HandlerLike) -> None:
        """Run ``filter`` on every event, before routing."""
        self._router.add_filter(filter)

    def remove_filter(self, filter: HandlerLike) -> None:
        """Forget ``filter``."""
        self._router.remove_filter(filter)

    def add_converter(self, converter: SimpleEventConverter) -> None:
        """Pull ``converter`` while the loop runs (from now on, if it runs)."""
        if not isinstance(converter, SimpleEventConverter):
            raise wrong_source(
                "add_converter() takes a SimpleEventConverter or EventConverter",
                SimpleEventConverter,
                converter,
                "producers go to add_producer()",
            )
        self._check_new_source(converter)
        self._feeds.add_converter(converter, start=self._life.looping)

    def add_producer(self, producer: EventProducer) -> None:
        """Run ``producer`` while the loop runs (from now on, if it runs)."""
        if not isinstance(producer, EventProducer):
            raise wrong_source(
                "add_producer() takes an EventProducer (or Timer)",
                EventProducer,
                producer,
                "converters go to add_converter()",
            )
        self._check_new_source(producer)
        self._feeds.add_producer(producer, start=self._life.looping)

    def register(self, source: EventSource) -> None:
        """Add a converter or a producer, whichever ``source`` is."""
        if isinstance(source, SimpleEventConverter):
            self.add_converter(source)
        elif isinstance(source, EventProducer):
            self.add_producer(source)
        else:
            kinds = "an EventConverter, SimpleEventConverter or EventProducer"
            raise wrong_source(f"register() takes {kinds}", EventSource, source)

    def consumers(self) -> list[object]:
        """Every handler object registered (a graceful stop closes those that hold buffers)."""
        return self._router.consumers()

    def clear(self) -> None:
        """Forget every handler and filter."""
        self._router.clear()

    def _check_new_source(self, source: EventSource) -> None:
        if self._life.stop_asked:
            raise self._life.refusal(f"cannot add {source!r}")
        self._feeds.check_new(source)
        if self._keeper is not None and source.checkpoints is None:
            source.checkpoints = self._keeper.checkpoints
