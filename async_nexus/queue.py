"""The nexus queue: bounded, served by priority (lower first), FIFO within a priority.

It has exactly one consumer, the dispatch loop, which drains it with :meth:`get_nowait`
and only awaits :meth:`wait_not_empty` when it is empty; producers wait in :meth:`put`
while it is full. Waiters are futures, as in :mod:`asyncio.queues`.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from typing import Any

from .errors import QueueFull

__all__ = ["EventQueue"]


class EventQueue:
    """A bounded priority queue of events for one nexus.

    ``maxsize=0`` means unbounded. :meth:`put_forced` admits past the bound; the nexus
    uses it for secondary events, so a handler can never deadlock the loop that runs it.
    """

    __slots__ = (
        "maxsize",
        "_buckets",
        "_priorities",
        "size",
        "_putters",
        "_blocked",
        "_getter",
        "high_water",
    )

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0 (0 = unbounded), got {maxsize!r}")
        self.maxsize = maxsize
        # One FIFO per priority; a heap holds the priorities that have a non-empty FIFO.
        self._buckets: dict[int, deque[Any]] = {}
        self._priorities: list[int] = []
        #: How many items are queued (read it, never set it; ``len()`` says the same).
        self.size = 0
        self._putters: deque[asyncio.Future[None]] = deque()
        self._blocked = 0
        self._getter: asyncio.Future[None] | None = None
        #: The largest number of items the queue has held.
        self.high_water = 0

    def __len__(self) -> int:
        return self.size

    @property
    def blocked_putters(self) -> int:
        """How many :meth:`put` calls are waiting for room (or woken but not yet back)."""
        return self._blocked

    def _append(self, item: Any, priority: int) -> None:
        bucket = self._buckets.get(priority)
        if bucket is None:
            bucket = self._buckets[priority] = deque()
        if not bucket:
            heapq.heappush(self._priorities, priority)
        bucket.append(item)
        self.size = size = self.size + 1
        if size > self.high_water:
            self.high_water = size
        if self._getter is not None:
            self.wake()

    def put_nowait(self, item: Any, priority: int) -> None:
        """Queue ``item`` now, or raise :class:`~async_nexus.errors.QueueFull`."""
        size = self.size
        if 0 < self.maxsize <= size:
            raise QueueFull(
                f"the nexus queue is full ({size} of maxsize={self.maxsize}); "
                "use 'await nexus.ingest(event)' to wait for room, or raise maxsize"
            )
        # _append, written out: this is the path of every ingested event.
        bucket = self._buckets.get(priority)
        if bucket is None:
            bucket = self._buckets[priority] = deque()
        if not bucket:
            heapq.heappush(self._priorities, priority)
        bucket.append(item)
        self.size = size = size + 1
        if size > self.high_water:
            self.high_water = size
        if self._getter is not None:
            self.wake()

    def put_forced(self, item: Any, priority: int) -> None:
        """Queue ``item`` now, past the bound if need be."""
        self._append(item, priority)

    async def put(self, item: Any, priority: int) -> None:
        """Queue ``item``, waiting while the queue is full."""
        if 0 < self.maxsize <= self.size:
            loop = asyncio.get_running_loop()
            self._blocked += 1
            try:
                while 0 < self.maxsize <= self.size:
                    putter = loop.create_future()
                    self._putters.append(putter)
                    try:
                        await putter
                    except BaseException:
                        putter.cancel()
                        try:
                            self._putters.remove(putter)
                        except ValueError:
                            # Woken already: hand the room on to the next waiter.
                            self._wake_putter()
                        raise
            finally:
                self._blocked -= 1
        self._append(item, priority)

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def get_nowait(self) -> Any:
        """Remove and return the most urgent item; the queue must not be empty."""
        priorities = self._priorities
        priority = priorities[0]
        bucket = self._buckets[priority]
        item = bucket.popleft()
        if not bucket:
            heapq.heappop(priorities)
        self.size = size = self.size - 1
        if self._putters and size < self.maxsize:
            self._wake_putter()
        return item

    async def wait_not_empty(self) -> None:
        """Wait until something is queued (or :meth:`wake` is called)."""
        if self.size:
            return
        getter = asyncio.get_running_loop().create_future()
        self._getter = getter
        try:
            await getter
        finally:
            if self._getter is getter:
                self._getter = None

    def wake(self) -> None:
        """Wake :meth:`wait_not_empty` even though nothing was queued (used to stop)."""
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)
