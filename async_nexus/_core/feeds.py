"""The sources of one nexus, the tasks that run them, and the port they reach the nexus by.

A converter is pulled by one long-lived pump task; a producer's ``start()`` runs as a task
of its own. A graceful stop cancels these tasks first (the sources stop producing), lets
the loop drain what is queued, and then closes every source.

Sources talk to the nexus through its :class:`Port` (the
:class:`~async_nexus.sources.SourcePort` of :mod:`async_nexus.sources`), which admits
their events at the source's door of :mod:`~async_nexus._core.admission`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .._tasks import cancel_and_wait
from ..errors import BadCall, DecodeError, LoopStopped, MultipleStart, NoMoreEvents
from ..events import Event
from ..sources import (
    EventProducer,
    EventSource,
    SimpleEventConverter,
    claim_start,
    hand_on,
    release_start,
    report_going_on,
    source_name,
)
from .admission import Admission, Door
from .lifecycle import Lifecycle
from .outcomes import Outcomes

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []

logger = logging.getLogger("async_nexus")


class Port:
    """What a source registered with a nexus may do with it: a :class:`~async_nexus.sources.SourcePort`."""

    __slots__ = ("_nexus", "_admission", "_outcomes", "_life", "_feeds", "__weakref__")

    def __init__(
        self, nexus: object, admission: Admission, outcomes: Outcomes, lifecycle: Lifecycle, feeds: Feeds
    ) -> None:
        self._nexus, self._admission, self._outcomes = nexus, admission, outcomes
        self._life, self._feeds = lifecycle, feeds

    @property
    def nexus(self) -> Any:
        """The nexus this port leads to."""
        return self._nexus

    @property
    def running(self) -> bool:
        """Whether the nexus's loop runs, with its sources."""
        return self._life.looping

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._life.stop_asked

    async def deliver(
        self,
        event: Event,
        source: EventSource | None = None,
        *,
        reply: Callable[[Event], object] | None = None,
        on_dispatched: Callable[[Event], object] | None = None,
        on_dead_letter: Callable[[Event, BaseException, int], object] | None = None,
    ) -> None:
        """Admit ``event`` from ``source``, waiting for room (see ``SourcePort``)."""
        waiting = self._admission.admit(
            event, Door.SOURCE, source=source, reply=reply, done=on_dispatched, dead=on_dead_letter
        )
        if waiting is not None:
            await waiting

    def deliver_now(
        self,
        event: Event,
        source: EventSource | None = None,
        *,
        reply: Callable[[Event], object] | None = None,
    ) -> None:
        """Admit ``event`` from ``source`` past the bound: it was taken already."""
        self._admission.admit(event, Door.HANDOVER, source=source, reply=reply)

    async def report(self, exc: BaseException, subject: Any) -> None:
        """Send a failure to the error hook."""
        await self._outcomes.report(exc, subject, None, None)

    def adopt(self, producer: EventProducer) -> bool:
        """Run ``producer`` here if the loop runs; true if it does."""
        if not self._life.looping:
            return False
        self._feeds.run_producer(producer)
        return True

    def __repr__(self) -> str:
        return f"<Port to {self._nexus!r}>"


class Feeds:
    """The converters and producers of one nexus and their tasks."""

    __slots__ = ("port", "_admission", "_report", "converters", "producers", "tasks", "_closing")

    def __init__(self, nexus: object, admission: Admission, outcomes: Outcomes, lifecycle: Lifecycle) -> None:
        #: What the sources of this nexus reach it by.
        self.port = Port(nexus, admission, outcomes, lifecycle, self)
        self._admission = admission
        self._report: Callable[[BaseException, Any], Awaitable[None]] = self.port.report
        self.converters: list[SimpleEventConverter] = []
        self.producers: list[EventProducer] = []
        self.tasks: dict[asyncio.Task[Any], EventSource] = {}
        #: Closes started by cleanup() inside a running loop: a task needs a reference to live.
        self._closing: set[asyncio.Task[None]] = set()

    def __contains__(self, source: object) -> bool:
        return any(s is source for s in (*self.converters, *self.producers))

    def check_new(self, source: EventSource) -> None:
        """Refuse ``source`` if it is registered here already, or its name is taken."""
        if source in self:
            raise MultipleStart(
                f"{source!r} is already registered with this nexus; it would be started twice"
            )
        self.check_name(source)

    def add_converter(self, converter: SimpleEventConverter, *, start: bool) -> None:
        """Keep ``converter``; pump it now if ``start`` (the loop runs)."""
        self.converters.append(converter)
        if start:
            self.pump(converter)

    def add_producer(self, producer: EventProducer, *, start: bool) -> None:
        """Keep ``producer`` and hand it this nexus's port; run it now if ``start``."""
        producer.register_nexus(self.port)
        self.producers.append(producer)
        if start:
            self.run_producer(producer)

    def check_name(self, source: EventSource) -> None:
        """Refuse ``source`` if another source here has its name: stats tell them apart by name.

        Asking for the name gives a source its default name now, in registration order.
        """
        name = source_name(source)
        for other in (*self.converters, *self.producers):
            if other is not source and source_name(other) == name:
                raise BadCall(
                    f"{source!r} is named {name!r}, like {other!r}, which is registered with this "
                    f"nexus already; give it a name of its own: source.name = '...'"
                )

    def delivered_by_name(self) -> dict[str, int]:
        """Events admitted from each source, by its name."""
        counts: dict[str, int] = {}
        for source, count in list(self._admission.by_source.items()):
            name = source_name(source)
            counts[name] = counts.get(name, 0) + count  # a source renamed into another's name
        return counts

    def start_all(self) -> None:
        """The loop starts: pump every converter, start every producer."""
        for converter in list(self.converters):
            self.pump(converter)
        for producer in list(self.producers):
            self.run_producer(producer)

    def pump(self, converter: SimpleEventConverter) -> None:
        """Pull ``converter`` in a task of its own."""
        self._spawn(self._pump(converter), converter)

    def run_producer(self, producer: EventProducer) -> None:
        """Run ``producer.start()`` in a task of its own."""
        self._spawn(self._run_producer(producer), producer)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], source: EventSource) -> None:
        task = asyncio.create_task(coroutine, name=f"async_nexus source {source_name(source)}")
        self.tasks[task] = source
        task.add_done_callback(self.tasks.pop)

    async def cancel_tasks(self) -> None:
        """Cancel the sources' tasks and wait until they are gone."""
        await cancel_and_wait(self.tasks)

    async def stop_all(self) -> None:
        """A graceful stop: cancel the sources' tasks, wait until they are gone, tell the producers.

        A producer's :meth:`~async_nexus.EventProducer.on_stopping` that raises (a boundary
        that cannot hand over what it holds) is reported.
        """
        await cancel_and_wait(self.tasks)
        for producer in list(self.producers):
            try:
                producer.on_stopping()
            except Exception as exc:
                await self._report(exc, producer)

    async def _pump(self, converter: SimpleEventConverter) -> None:
        admit = self._admission.admit_from_source
        try:
            await converter.start()
            while True:
                try:
                    event = await converter.obtain_event()
                except DecodeError as exc:
                    # Bad input, not a broken source: report it and go on pumping.
                    await report_going_on(self._report, exc, converter)
                    continue
                waiting = admit(event, converter)
                if waiting is not None:
                    await waiting
        except NoMoreEvents:
            pass
        except LoopStopped:
            return
        except Exception as exc:
            await self._report(exc, converter)
        # Retired: it gave its last event or failed. Close it now, not at shutdown.
        if converter in self.converters:
            self.converters.remove(converter)
        await self.close(converter)

    async def _run_producer(self, producer: EventProducer) -> None:
        if not claim_start(producer):
            return
        try:
            await producer.start()
        except asyncio.CancelledError:
            release_start(producer)  # stopped with this nexus: another may take it over
            raise
        except LoopStopped:
            pass
        except Exception as exc:
            await self._report(exc, producer)

    async def close(self, source: EventSource) -> None:
        """Close ``source``, reporting what its ``close()`` raised."""
        try:
            result = source.close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            await self._report(exc, source)

    def take(self) -> list[EventSource]:
        """Forget every source and return them."""
        sources: list[EventSource] = [*self.converters, *self.producers]
        self.converters.clear()
        self.producers.clear()
        return sources

    def close_without_loop(self) -> None:
        """Forget and close every source from ``cleanup()``, which no loop of the nexus runs.

        Every source is closed even if one fails to; a failure is logged with the source named.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for source in self.take():
            if isinstance(source, EventProducer):
                source.deregister_nexus(self.port)
            try:
                result = source.close()
                if not inspect.isawaitable(result):
                    continue
                if loop is None:
                    asyncio.run(_await(result))
                else:  # the caller's loop runs it; the task is kept until it is done
                    task = loop.create_task(self._close_later(source, result))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
            except Exception:
                _log_close_failure(source)

    @staticmethod
    async def _close_later(source: EventSource, closing: Awaitable[Any]) -> None:
        try:
            await closing
        except Exception:
            _log_close_failure(source)

    async def close_all(self) -> None:
        """The loop is over: close every source, leaving shared producers to the other nexuses."""
        for source in self.take():
            if isinstance(source, EventProducer):
                source.deregister_nexus(self.port)
                if hand_on(source):
                    continue
                release_start(source)
            await self.close(source)


def _log_close_failure(source: EventSource) -> None:
    logger.exception(
        "async_nexus: closing source %s failed in cleanup(); the other sources were closed all "
        "the same. What it holds (a file, a connection) may stay open until the process exits",
        source_name(source),
    )


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable
