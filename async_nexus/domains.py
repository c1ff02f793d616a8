"""Several nexuses (event domains) in one process: started together, stopped in order.

A program with more than one domain — a front that takes requests and a back that does the
slow work, joined by an :class:`~async_nexus.AsyncEventBoundary` — runs them as one with
:func:`run_all` (blocking, for a ``main()``) or :class:`NexusGroup` (for async code).

**The order.** The nexuses start in the order given and stop, gracefully, in the reverse
order, one after the other: each nexus has drained and stopped before the one given before
it is asked to stop. It is what nested ``async with`` blocks do, and what a domain that
feeds another needs: list a domain *before* the domains that feed it. With
``run_all(back, front)``, ``front`` stops first — its sources stop, and its handlers, the
boundary's sending side among them, finish what it had queued — while ``back`` still runs
and takes what crosses; then ``back`` stops and dispatches whatever the boundary still
held. Nothing that ``front`` accepted is lost on the way.

Given the other way round, ``back`` would finish its drain while ``front`` may still be
sending; what crosses after that is refused with
:class:`~async_nexus.errors.LoopStopped`, which ``front``'s error hook reports. Two
domains that feed each other can only be stopped in one of the two orders: put the one
whose events matter most, usually the one that does the work, first.

**Failures.** When any nexus's loop ends by itself — a handler called ``stop()``, or the
loop died of an error (``fail_fast=True``) — the group stops the others gracefully, in
the same order. The group then raises the first error a loop died of, or returns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

from ._tasks import stop_on_signals
from .errors import BadCall, BadType, BadValue, LoopAlreadyStarted, LoopStopped
from .nexus import AsyncEventNexus, NexusState

__all__ = ["NexusGroup", "run_all"]

logger = logging.getLogger("async_nexus")


class NexusGroup:
    """Nexuses that run as one program: started in the order given, stopped in reverse.

    :param nexuses: the nexuses, none of them started yet; list a domain before the
        domains that feed it (see the module's text for why).
    :param names: a name for each nexus, for log messages (default ``"1"``, ``"2"``, …).

    >>> async def main():
    ...     back, front = AsyncEventNexus(), AsyncEventNexus()
    ...     boundary = AsyncEventBoundary()
    ...     front.add_handler("job", boundary)
    ...     back.add_producer(boundary)
    ...     back.add_handler("job", lambda event, queue: print("done", event.payload))
    ...     async with NexusGroup(back, front):
    ...         for number in range(3):
    ...             await front.ingest(Event(number, "job", 0, number))
    >>> asyncio.run(main())
    done 0
    done 1
    done 2

    :raises BadType: (a :class:`TypeError`) something given is not an :class:`~async_nexus.AsyncEventNexus`.
    :raises BadValue: (a :class:`ValueError`) no nexus, a nexus given twice, or names that do not fit.
    """

    def __init__(self, *nexuses: AsyncEventNexus, names: Sequence[str] | None = None) -> None:
        if not nexuses:
            raise BadValue("a NexusGroup needs at least one nexus")
        for nexus in nexuses:
            if not isinstance(nexus, AsyncEventNexus):
                raise BadType(f"a NexusGroup runs AsyncEventNexus objects, got {type(nexus).__qualname__}")
        if len({id(nexus) for nexus in nexuses}) != len(nexuses):
            raise BadValue("a nexus is given twice; give each nexus once")
        if names is None:
            names = [str(position) for position in range(1, len(nexuses) + 1)]
        if isinstance(names, str) or len(names) != len(nexuses) or len(set(names)) != len(names):
            raise BadValue(f"give {len(nexuses)} different names, one for each nexus, not {names!r}")
        #: The nexuses, in the order given: the order they start in.
        self.nexuses: tuple[AsyncEventNexus, ...] = tuple(nexuses)
        #: Their names, in the same order.
        self.names: tuple[str, ...] = tuple(names)
        self._tasks: list[asyncio.Task[None]] = []
        self._ended: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._stop_requested = False
        self._task: asyncio.Task[None] | None = None

    @property
    def stop_requested(self) -> bool:
        """Whether the group is stopping: :meth:`stop` was called, or a loop ended by itself."""
        return self._stop_requested or bool(self._ended)

    def start(self) -> asyncio.Task[None]:
        """Start every nexus, in order, and return the task that runs the group.

        The task ends once every nexus has stopped; it raises the first error a loop died
        of. Cancelling it is the hard stop: every loop still running is cancelled.

        :raises LoopAlreadyStarted: the group, or one of its nexuses, is already running.
        :raises LoopStopped: one of its nexuses has stopped; nexuses do not restart.
        :raises BadCall: no event loop is running.
        """
        if self._task is not None:
            raise LoopAlreadyStarted("the group is already running; start it once, and await its task")
        for name, nexus in zip(self.names, self.nexuses, strict=True):
            if nexus.state in (NexusState.STARTING, NexusState.LOOPING):
                raise LoopAlreadyStarted(
                    f"nexus {name} of the group is already {nexus.state.name}; give the group "
                    "nexuses that have not been started, and let it start them"
                )
            if nexus.state is not NexusState.READY:
                raise LoopStopped(
                    f"nexus {name} of the group is {nexus.state.name} and cannot start again; "
                    "create a new AsyncEventNexus"
                )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise BadCall(
                "start() needs a running event loop; call it from async code, or use run()"
            ) from None
        for name, nexus in zip(self.names, self.nexuses, strict=True):
            task = nexus.start()
            task.add_done_callback(functools.partial(self._on_end, name))
            self._tasks.append(task)
        self._task = asyncio.create_task(self._supervise(), name="async_nexus group")
        return self._task

    async def loop_forever(self) -> None:
        """Start the group and wait until every nexus has stopped.

        :raises Exception: the first error a nexus's loop died of, once the others stopped.
        """
        await self.start()

    def stop(self) -> None:
        """Stop gracefully: each nexus in turn, from the last given to the first.

        Safe to call at any time and more than once. The task :meth:`start` returned ends
        once the first nexus has stopped.
        """
        self._stop_requested = True
        self._wake.set()

    def _on_end(self, name: str, task: asyncio.Task[None]) -> None:
        self._ended.append(task)
        # Reading the exception here also keeps asyncio from calling it "never retrieved".
        error = None if task.cancelled() else task.exception()
        if error is not None and len(self.nexuses) > 1:
            logger.error(
                "async_nexus: the loop of nexus %s died of %s: %s; stopping the others gracefully",
                name,
                type(error).__name__,
                error,
            )
        self._wake.set()

    async def _supervise(self) -> None:
        try:
            await self._wake.wait()
            for nexus, task in reversed(list(zip(self.nexuses, self._tasks, strict=True))):
                nexus.stop()
                await asyncio.wait([task])
        except asyncio.CancelledError:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        for task in self._ended:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def __aenter__(self) -> NexusGroup:
        self.start()
        return self

    async def __aexit__(self, exc_type: object, *exc_info: object) -> None:
        self.stop()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                if exc_type is None:
                    raise

    def run(self) -> None:
        """Run the group until SIGINT or SIGTERM, then stop it gracefully; a second signal stops hard.

        The blocking entry for a daemon's ``main()``; see :func:`run_all`.
        """
        asyncio.run(self._run_until_signalled())

    async def _run_until_signalled(self) -> None:
        task = self.start()
        with stop_on_signals(self.stop, task, what="the nexuses"):
            await task


def run_all(*nexuses: AsyncEventNexus) -> None:
    """Run several nexuses in this process until SIGINT or SIGTERM; the blocking entry for ``main()``.

    What :meth:`AsyncEventNexus.run() <async_nexus.AsyncEventNexus.run>` is for one nexus:
    the first signal stops them gracefully, the same signal again stops them at once. They
    start in the order given and stop in the reverse order, each after the one given after
    it has drained, so list a domain before the domains that feed it::

        run_all(back, front)  # front stops first; back then dispatches what crossed

    If one loop dies of an error, the others are stopped gracefully and the error is raised
    here. See :class:`NexusGroup` for the same in async code.
    """
    NexusGroup(*nexuses).run()
