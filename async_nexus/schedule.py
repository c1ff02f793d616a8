"""What is due later: events from ``ingest_later``/``ingest_at``, and the waits of retries.

One :class:`Scheduler` per nexus keeps both on the loop's clock (``loop.call_at``), so
that a nexus knows at any time how many events it holds that are not due yet: ``stats()``
counts them, and a stop says how many it did not wait for instead of dropping them
silently. Nothing here runs per event unless an event was scheduled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

from .events import Event

__all__ = ["ScheduledEvent"]


class ScheduledEvent:
    """An event that :meth:`~async_nexus.AsyncEventNexus.ingest_later` or
    :meth:`~async_nexus.AsyncEventNexus.ingest_at` will queue when it is due.

    :ivar event: the event.
    :ivar when: when it is due, on the event loop's clock (``loop.time()``).
    """

    __slots__ = ("event", "when", "_scheduler")

    def __init__(self, event: Event, when: float, scheduler: Scheduler) -> None:
        self.event, self.when = event, when
        self._scheduler = scheduler

    @property
    def pending(self) -> bool:
        """True until the event is queued or cancelled."""
        return self._scheduler.holds(self)

    def cancel(self) -> bool:
        """Keep the event from being queued; true if it was still pending.

        An event that is already queued is not taken back: it is dispatched as any other.
        """
        return self._scheduler.cancel(self)

    def __repr__(self) -> str:
        state = "pending" if self.pending else "done"
        return f"<ScheduledEvent {state} at {self.when:.3f}: {self.event!r}>"


class _Pending(NamedTuple):
    timer: asyncio.TimerHandle
    on_cancel: Callable[[], None] | None


class Scheduler:
    """The events and retries of one nexus that are not due yet."""

    __slots__ = ("events", "retries", "sleeping")

    def __init__(self) -> None:
        #: The scheduled events not due yet, with their timers.
        self.events: dict[ScheduledEvent, _Pending] = {}
        #: Retries to queue again when due (handlers run one at a time, or unkeyed lanes).
        self.retries: set[asyncio.TimerHandle] = set()
        #: Retries that wait in their own task (keyed lanes, which keep their key's order).
        self.sleeping = 0

    @property
    def retrying(self) -> int:
        """How many events wait for a retry."""
        return len(self.retries) + self.sleeping

    def event_at(
        self,
        when: float,
        event: Event,
        deliver: Callable[[Event], None],
        on_cancel: Callable[[], None] | None = None,
    ) -> ScheduledEvent:
        """Call ``deliver(event)`` at ``when`` (loop time), or ``on_cancel()`` if cancelled first."""
        scheduled = ScheduledEvent(event, when, self)

        def due() -> None:
            del self.events[scheduled]
            deliver(event)

        self.events[scheduled] = _Pending(asyncio.get_running_loop().call_at(when, due), on_cancel)
        return scheduled

    def holds(self, scheduled: ScheduledEvent) -> bool:
        """Whether ``scheduled`` is not due yet and not cancelled."""
        return scheduled in self.events

    def cancel(self, scheduled: ScheduledEvent) -> bool:
        """Forget ``scheduled`` and call its ``on_cancel``; true if it was pending."""
        pending = self.events.pop(scheduled, None)
        if pending is None:
            return False
        pending.timer.cancel()
        if pending.on_cancel is not None:
            pending.on_cancel()
        return True

    def retry_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after ``delay`` seconds, counted as a retry until then."""

        def due() -> None:
            self.retries.discard(timer)
            callback()

        timer = asyncio.get_running_loop().call_later(delay, due)
        self.retries.add(timer)

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds in the calling task, counted as a retry meanwhile."""
        self.sleeping += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self.sleeping -= 1

    def cancel_all(self) -> tuple[int, int]:
        """Forget everything not due (the nexus stops); how many events, and how many retries.

        Unlike :meth:`ScheduledEvent.cancel`, this does not call ``on_cancel``: a journal
        keeps the events for the next start.
        """
        events, retries = len(self.events), self.retrying  # a keyed lane's waits too
        for pending in self.events.values():
            pending.timer.cancel()
        self.events.clear()
        for timer in self.retries:
            timer.cancel()
        self.retries.clear()
        return events, retries
