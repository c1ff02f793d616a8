"""Where a nexus is in its life: one state machine, with named transitions.

The public states are :class:`NexusState`'s five. The machine has a few more phases,
each a step of the one run of the loop that a graceful stop goes through::

    READY ──start()──> STARTING ──first turn──> LOOPING
      │                   │                        │
    stop()              stop()                   stop()
      v                   v                        v
    STOP_ON_START ─start()─> STOPPING ──sources stopped──> DRAINING
                              │                              │
               drain timeout, fail_fast, cancel ──> HALTING   │
                                                      │      │
                                        loop over ──> CLOSING <┘ ──> STOPPED

Every question about the lifecycle (may ``ingest()`` take an event, may a source still
deliver, must the loop leave) is answered from the phase, so no two records of it can
disagree. Each transition wakes whoever waits for a change: the dispatch loop, and the
task that stops the sources.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from ..errors import LoopAlreadyStarted, LoopStopped

__all__ = ["NexusState"]


class NexusState(enum.Enum):
    """The lifecycle of a nexus: READY → STARTING → LOOPING → STOPPING → STOPPED."""

    READY = "ready"
    STARTING = "starting"
    LOOPING = "looping"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Phase(enum.Enum):
    """The steps of a nexus's life, finer than :class:`NexusState` (see the module)."""

    #: Made: takes registrations, and events, which wait for the loop.
    READY = "ready"
    #: ``stop()`` before ``start()``: the loop, once started, dispatches what is queued and stops.
    STOP_ON_START = "ready, to stop once started"
    #: ``start()`` was called; the loop's task has not had its first turn.
    STARTING = "starting"
    #: The loop dispatches; the sources run.
    LOOPING = "looping"
    #: ``stop()``: ``ingest()`` is refused, the sources are being stopped, dispatch goes on.
    STOPPING = "stopping"
    #: The sources are stopped: the loop dispatches what is queued and in flight, then leaves.
    DRAINING = "draining"
    #: The drain timeout expired, ``fail_fast`` met a failure, or the loop was cancelled:
    #: nothing more is dispatched.
    HALTING = "halting"
    #: The loop has left: consumers, sources and the journal are being closed.
    CLOSING = "closing"
    #: Over: nothing is accepted, nothing runs; a nexus does not restart.
    STOPPED = "stopped"


_STATES = {
    Phase.READY: NexusState.READY,
    Phase.STOP_ON_START: NexusState.READY,
    Phase.STARTING: NexusState.STARTING,
    Phase.LOOPING: NexusState.LOOPING,
    Phase.STOPPING: NexusState.STOPPING,
    Phase.DRAINING: NexusState.STOPPING,
    Phase.HALTING: NexusState.STOPPING,
    Phase.CLOSING: NexusState.STOPPING,
    Phase.STOPPED: NexusState.STOPPED,
}
_TAKES_INGEST = frozenset({Phase.READY, Phase.STARTING, Phase.LOOPING})
_TAKES_FROM_SOURCES = frozenset(
    {Phase.READY, Phase.STOP_ON_START, Phase.STARTING, Phase.LOOPING, Phase.STOPPING, Phase.DRAINING}
)
_RUNNING = frozenset(
    {Phase.STARTING, Phase.LOOPING, Phase.STOPPING, Phase.DRAINING, Phase.HALTING, Phase.CLOSING}
)


class Lifecycle:
    """The phase of one nexus, its transitions, and the questions answered from it.

    The answers are attributes, not properties, because ``ingest()`` and the loop ask them
    for every event; only :meth:`_enter` writes them, from the phase.
    """

    __slots__ = (
        "phase", "takes_ingest", "takes_from_sources", "stop_asked", "draining", "halted",
        "running", "looping", "stopped", "_watchers", "_stop_asked", "_halted_by",
    )  # fmt: skip

    def __init__(self) -> None:
        self._watchers: list[Callable[[], None]] = []
        self._stop_asked: asyncio.Future[None] | None = None
        self._halted_by: str | None = None  # why the nexus halted, for the refusals' messages
        self._enter(Phase.READY)

    # -- questions ------------------------------------------------------------------

    @property
    def state(self) -> NexusState:
        """The public state."""
        return _STATES[self.phase]

    def refusal(self, what: str) -> LoopStopped:
        """The error for ``what``, which this phase does not allow, saying how it came to be."""
        if self.phase is Phase.STOP_ON_START:
            why = "stop() was called before the nexus was started"
        else:
            why = f"the nexus is {self.state.name}: {self._halted_by or 'stop() was called'}"
        return LoopStopped(f"{what}: {why}; it accepts no more events. Create a new AsyncEventNexus to go on")

    # -- watching -------------------------------------------------------------------

    def on_change(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher()`` after every transition."""
        self._watchers.append(watcher)

    async def wait_for_stop(self) -> None:
        """Return once a stop has been asked for (at once if it has)."""
        if self.stop_asked:
            return
        if self._stop_asked is None:
            self._stop_asked = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._stop_asked)

    # -- transitions ----------------------------------------------------------------

    def start(self) -> None:
        """``start()`` or ``loop_forever()``: READY → STARTING (STOP_ON_START → STOPPING).

        :raises LoopAlreadyStarted: the loop runs already.
        :raises LoopStopped: the nexus has stopped; nexuses do not restart.
        """
        phase = self.phase
        if phase in (Phase.STARTING, Phase.LOOPING):
            raise LoopAlreadyStarted(
                f"the nexus loop is already {self.state.name}; start it once, "
                "and await the task start() returned"
            )
        if phase is Phase.STOP_ON_START:
            self._enter(Phase.STOPPING)
        elif phase is Phase.READY:
            self._enter(Phase.STARTING)
        else:
            raise LoopStopped(
                f"the nexus is {self.state.name} and cannot start again; create a new AsyncEventNexus"
            )

    def begin(self) -> bool:
        """The loop's first turn: STARTING → LOOPING. False if a stop came first."""
        if self.phase is not Phase.STARTING:
            return False
        self._enter(Phase.LOOPING)
        return True

    def stop(self) -> None:
        """``stop()``: READY → STOP_ON_START, STARTING or LOOPING → STOPPING; else nothing."""
        if self.phase is Phase.READY:
            self._enter(Phase.STOP_ON_START)
        elif self.phase in (Phase.STARTING, Phase.LOOPING):
            self._enter(Phase.STOPPING)

    def sources_stopped(self) -> None:
        """The sources' tasks are gone: STOPPING → DRAINING."""
        if self.phase is Phase.STOPPING:
            self._enter(Phase.DRAINING)

    def halt(self, cause: str) -> None:
        """Dispatch nothing more, because of ``cause``: a running phase before CLOSING → HALTING."""
        if self.phase in (Phase.STARTING, Phase.LOOPING, Phase.STOPPING, Phase.DRAINING):
            self._halted_by = cause
            self._enter(Phase.HALTING)

    def close(self) -> None:
        """The loop has left: → CLOSING."""
        if self.phase in _RUNNING:
            self._enter(Phase.CLOSING)

    def end(self) -> None:
        """Everything is closed (or the loop task died before its first turn): → STOPPED."""
        self._enter(Phase.STOPPED)

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        #: Whether ``ingest()``, ``ingest_nowait()``, ``ingest_later()`` and ``request()`` take events.
        self.takes_ingest = phase in _TAKES_INGEST
        #: Whether sources may still deliver: what they obtained before they were stopped
        #: is dispatched, not dropped.
        self.takes_from_sources = phase in _TAKES_FROM_SOURCES
        #: Whether a stop was asked for (or the nexus has stopped).
        self.stop_asked = phase not in (Phase.READY, Phase.STARTING, Phase.LOOPING)
        #: Whether the loop leaves as soon as nothing is queued or in flight.
        self.draining = phase is Phase.DRAINING
        #: Whether nothing more is dispatched.
        self.halted = phase in (Phase.HALTING, Phase.CLOSING, Phase.STOPPED)
        #: Whether the loop has been started and has not ended.
        self.running = phase in _RUNNING
        #: Whether the loop runs and the sources with it.
        self.looping = phase is Phase.LOOPING
        #: Whether the nexus is over.
        self.stopped = phase is Phase.STOPPED
        if self.stop_asked and self._stop_asked is not None and not self._stop_asked.done():
            self._stop_asked.set_result(None)
        for watcher in self._watchers:
            watcher()
