"""Timers: producers that emit an event on a schedule, counting."""

from __future__ import annotations

import asyncio
import enum
from typing import Any, ClassVar

from .errors import BadValue
from .events import Event, EventFactory, EventType, NamedEvent
from .sources import EventProducer

__all__ = ["Timer", "TimerType"]


class TimerType(enum.Enum):
    """How a :class:`Timer` counts."""

    COUNT_UP = "count_up"
    COUNT_DOWN = "count_down"
    ONGOING = "ongoing"
    ONE_SHOT = "one_shot"


class Timer(EventProducer):
    """A producer that emits an event of ``event_type`` every ``interval`` seconds.

    The payload is the current count:

    * ``COUNT_UP`` with ``count=n``: payloads 1, 2, …, n, then the timer ends;
    * ``COUNT_DOWN`` with ``count=n``: payloads n, n-1, …, 1, then it ends;
    * ``ONGOING``: payloads 1, 2, 3, … until the nexus stops;
    * ``ONE_SHOT`` (the default): one event with payload 1 after ``interval``.

    Ticks are scheduled against the loop clock, so the timer does not drift however slow
    the handlers are; ticks missed entirely (the process was suspended, the queue stayed
    full for whole intervals) are skipped rather than fired in a burst.

    The attributes 1.0 had are kept as read-only compatibility aliases, with 1.0's meaning:
    the payloads are ``starting_value + direction_value``, ``starting_value + 2 *
    direction_value``, … up to and including ``ending_value``.

    :raises ~async_nexus.errors.BadValue: (a :class:`ValueError`) ``interval`` is not a
        positive number, ``type`` is not one of the four, or a counting timer has no
        ``count`` >= 1.
    """

    COUNT_UP: ClassVar[TimerType] = TimerType.COUNT_UP
    COUNT_DOWN: ClassVar[TimerType] = TimerType.COUNT_DOWN
    ONGOING: ClassVar[TimerType] = TimerType.ONGOING
    ONE_SHOT: ClassVar[TimerType] = TimerType.ONE_SHOT

    def __init__(
        self,
        interval: float,
        *,
        event_type: EventType | type[NamedEvent],
        type: TimerType = TimerType.ONE_SHOT,
        count: int = 0,
        event_factory: EventFactory | None = None,
        priority: int = 0,
    ) -> None:
        super().__init__(event_factory)
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise BadValue(f"Timer interval must be a positive number of seconds, got {interval!r}")
        if not isinstance(type, TimerType):
            raise BadValue(
                f"Timer type must be Timer.COUNT_UP, COUNT_DOWN, ONGOING or ONE_SHOT, got {type!r}"
            )
        if type in (TimerType.COUNT_UP, TimerType.COUNT_DOWN) and (not isinstance(count, int) or count < 1):
            raise BadValue(f"a {type.name} timer needs count >= 1 (how many times it fires), got {count!r}")
        self.interval = float(interval)
        self.event_type = event_type
        self.type = type
        self.count = count
        self.priority = priority
        #: How many times the timer has fired.
        self.fired = 0
        #: The task that runs the timer while it fires, else ``None``; cancelling it stops
        #: the timer. A compatibility attribute kept from async-nexus 1.0.
        self.task: asyncio.Task[Any] | None = None

    @property
    def starting_value(self) -> int:
        """The count before the first tick: the first payload less :attr:`direction_value`.

        ``count + 1`` for ``COUNT_DOWN``, else 0. A compatibility alias kept from 1.0, where
        ``COUNT_DOWN`` started from ``count`` because it fired ``count - 1, …, 0``.
        """
        return self.count + 1 if self.type is TimerType.COUNT_DOWN else 0

    @property
    def ending_value(self) -> int:
        """The last payload: ``count`` for ``COUNT_UP``, 1 for ``COUNT_DOWN`` and ``ONE_SHOT``.

        ``-1`` for ``ONGOING``, a count it never reaches (as in 1.0). A compatibility alias
        kept from 1.0.
        """
        if self.type is TimerType.COUNT_UP:
            return self.count
        return -1 if self.type is TimerType.ONGOING else 1

    @property
    def direction_value(self) -> int:
        """What each tick adds to the count: -1 for ``COUNT_DOWN``, else 1. Kept from 1.0."""
        return -1 if self.type is TimerType.COUNT_DOWN else 1

    def _payloads(self) -> range:
        if self.type is TimerType.COUNT_UP:
            return range(1, self.count + 1)
        if self.type is TimerType.COUNT_DOWN:
            return range(self.count, 0, -1)
        if self.type is TimerType.ONE_SHOT:
            return range(1, 2)
        return range(1, 2**62)

    async def start(self) -> None:
        """Fire on schedule until the count is exhausted (or forever, for ``ONGOING``)."""
        loop = asyncio.get_running_loop()
        interval = self.interval
        due = loop.time() + interval
        self.task = asyncio.current_task()
        try:
            for payload in self._payloads():
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                event = self.create_event(payload)
                self.fired += 1
                await self.distribute_event(event)
                due += interval
                late = loop.time() - due
                if late > interval:
                    due += interval * (late // interval)
        finally:
            self.task = None

    def create_event(self, value: int) -> Event:
        """Build the event for one tick; ``value`` is the count. Override to build your own."""
        return self.event_factory.create_event(value, event_type=self.event_type, priority=self.priority)

    def __repr__(self) -> str:
        return f"<Timer {self.type.name} every {self.interval}s type={self.event_type!r}>"
