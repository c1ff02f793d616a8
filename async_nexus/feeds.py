"""The sources of one nexus, and the tasks that run them while its loop runs.

A converter is pulled by one long-lived pump task; a producer's ``start()`` runs as a task
of its own. A graceful stop cancels these tasks first (the sources stop producing), lets
the loop drain what is queued, and then closes every source.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._tasks import cancel_and_wait
from .errors import BadCall, DecodeError, LoopStopped, MultipleStart, NoMoreEvents
from .sources import (
    EventProducer,
    EventSource,
    SimpleEventConverter,
    SourceTarget,
    report_going_on,
    source_name,
)

# Internal: the public face is AsyncEventNexus (see the module description).
__all__: list[str] = []


class Feeds:
    """The converters and producers of ``nexus``, their tasks, and what each delivered."""

    __slots__ = ("nexus", "report", "converters", "producers", "tasks", "delivered")

    def __init__(self, nexus: SourceTarget, report: Callable[[BaseException, Any], Awaitable[None]]) -> None:
        self.nexus = nexus
        self.report = report
        self.converters: list[SimpleEventConverter] = []
        self.producers: list[EventProducer] = []
        self.tasks: dict[asyncio.Task[Any], EventSource] = {}
        #: Events accepted from each source.
        self.delivered: defaultdict[EventSource, int] = defaultdict(int)

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
        """Keep ``producer`` and deliver its events here; run it now if ``start``."""
        producer.register_nexus(self.nexus)
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
        """Events accepted from each source, by its name."""
        counts: dict[str, int] = {}
        for source, count in list(self.delivered.items()):
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

    async def stop_all(self) -> None:
        """Cancel the sources' tasks and wait until they are gone."""
        await cancel_and_wait(self.tasks)

    async def _pump(self, converter: SimpleEventConverter) -> None:
        try:
            await converter.start()
            while True:
                try:
                    event = await converter.obtain_event()
                except DecodeError as exc:
                    # Bad input, not a broken source: report it and go on pumping.
                    await report_going_on(self.report, exc, converter)
                    continue
                await self.nexus._ingest_from_source(event, source=converter)
        except NoMoreEvents:
            pass
        except LoopStopped:
            return
        except Exception as exc:
            await self.report(exc, converter)
        # Retired: it gave its last event or failed. Close it now, not at shutdown.
        if converter in self.converters:
            self.converters.remove(converter)
        await self.close(converter)

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
            await self.report(exc, producer)

    async def close(self, source: EventSource) -> None:
        """Close ``source``, reporting what its ``close()`` raised."""
        try:
            result = source.close()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            await self.report(exc, source)

    def take(self) -> list[EventSource]:
        """Forget every source and return them."""
        sources: list[EventSource] = [*self.converters, *self.producers]
        self.converters.clear()
        self.producers.clear()
        return sources

    def close_without_loop(self) -> None:
        """Forget and close every source, outside the loop (``cleanup()``)."""
        for source in self.take():
            result = source.close()
            if inspect.isawaitable(result):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    asyncio.run(_await(result))
                else:
                    loop.create_task(_await(result))
            if isinstance(source, EventProducer):
                source.deregister_nexus(self.nexus)

    async def close_all(self) -> None:
        """The loop is over: close every source, leaving shared producers to the other nexuses."""
        for source in self.take():
            if isinstance(source, EventProducer):
                source.deregister_nexus(self.nexus)
                if self._hand_on(source):
                    continue
                source._running = False
            await self.close(source)

    @staticmethod
    def _hand_on(producer: EventProducer) -> bool:
        """Leave a shared producer to the nexuses still using it; True if any is."""
        others = producer.nexuses()
        if not producer._running:
            for other in others:
                if other._adopt(producer):
                    break
        return bool(others)


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable
