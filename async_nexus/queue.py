"""The nexus queue: bounded, served by priority (lower first), FIFO within a priority.

It has exactly one consumer, the dispatch loop, which takes items straight from
:attr:`~EventQueue.buckets` (a call per event would cost more than the taking) and only
awaits :meth:`wait_not_empty` when it is empty; producers wait in :meth:`put` while it
is full. Waiters are futures, as in :mod:`asyncio.queues`.
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
        "buckets",
        "priorities",
        "size",
        "putters",
        "_blocked",
        "_getter",
        "high_water",
    )

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0 (0 = unbounded), got {maxsize!r}")
        self.maxsize = maxsize
        #: One FIFO per priority.
        self.buckets: dict[int, deque[Any]] = {}
        #: A heap of the priorities whose FIFO is not empty; ``priorities[0]`` is next.
        self.priorities: list[int] = []
        #: How many items are queued. The taker pops from a bucket, pops the heap when
        #: the bucket empties, decrements this, and calls :meth:`wake_putter` if any
        #: :attr:`putters` wait and there is room.
        self.size = 0
        #: Futures of :meth:`put` calls waiting for room.
        self.putters: deque[asyncio.Future[None]] = deque()
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
        bucket = self.buckets.get(priority)
        if bucket is None:
            bucket = self.buckets[priority] = deque()
        if not bucket:
            heapq.heappush(self.priorities, priority)
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
        try:
            bucket = self.buckets[priority]
        except KeyError:
            bucket = self.buckets[priority] = deque()
        if not bucket:
            heapq.heappush(self.priorities, priority)
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
                    self.putters.append(putter)
                    try:
                        await putter
                    except BaseException:
                        putter.cancel()
                        try:
                            self.putters.remove(putter)
                        except ValueError:
                            # Woken already: hand the room on to the next waiter.
                            self.wake_putter()
                        raise
            finally:
                self._blocked -= 1
        self._append(item, priority)

    def wake_putter(self) -> None:
        """Let the longest-waiting :meth:`put` go on; the taker calls it when room appears."""
        while self.putters:
            putter = self.putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

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
