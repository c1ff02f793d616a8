"""The nexus queue: bounded, served by priority (lower first), FIFO within a priority.

It has exactly one consumer, the dispatch loop, which takes items straight from
:attr:`~EventQueue.buckets` (a call per event would cost more than the taking) and only
awaits :meth:`wait_not_empty` when it is empty; producers wait in :meth:`put` while it
is full. Waiters are futures, as in :mod:`asyncio.queues`.

A put compares the size with one number, the *mark*, and does nothing else unless the
size has reached it. The mark stands at the lowest size at which a put has more to do
than append: the bound, the high-water mark (to raise it), zero while the consumer waits
(to wake it), and :data:`HANDOFF` while the woken consumer has not had its turn yet.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from typing import Any

from ..errors import BadValue, QueueFull

__all__ = ["HANDOFF", "EventQueue"]

#: How many items a put lets pile up for a consumer that was woken and has not run yet,
#: before it yields to give the consumer its turn. Below the collector's first threshold
#: (700 allocations by default): a producer that never yields would otherwise build a
#: backlog of ``maxsize`` events for the garbage collector to walk, again and again.
HANDOFF = 512


class EventQueue:
    """A bounded priority queue of events for one nexus.

    ``maxsize=0`` means unbounded. :meth:`put_forced` admits past the bound; the nexus
    uses it for secondary events, so a handler can never deadlock the loop that runs it.

    :raises ~async_nexus.errors.BadValue: (a :class:`ValueError`) ``maxsize`` is not an
        int >= 0.
    """

    __slots__ = (
        "maxsize",
        "buckets",
        "priorities",
        "size",
        "putters",
        "high_water",
        "mark",
        "_blocked",
        "_getter",
        "_woken",
    )

    def __init__(self, maxsize: int = 0) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise BadValue(f"maxsize must be an int >= 0 (0 = unbounded), got {maxsize!r}")
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
        #: The largest number of items the queue has held.
        self.high_water = 0
        #: Below this size a put needs nothing but the append to a non-empty FIFO (see the
        #: module's description); ``ingest()`` writes that append out.
        self.mark = 0
        self._blocked = 0
        self._getter: asyncio.Future[None] | None = None
        self._woken = False  # the consumer was woken and has not run since

    def __len__(self) -> int:
        return self.size

    @property
    def blocked_putters(self) -> int:
        """How many :meth:`put` calls are waiting for room (or woken but not yet back)."""
        return self._blocked

    def try_put(self, item: Any, priority: int) -> bool:
        """Queue ``item`` and return true, or return false if the caller should :meth:`put`.

        False means the queue is full, or the consumer has been woken and
        :data:`HANDOFF` items already wait for it: :meth:`put` gives it its turn first.
        """
        size = self.size
        if size >= self.mark and (0 < self.maxsize <= size or (self._woken and size >= HANDOFF)):
            return False
        self._append(item, priority)
        return True

    def put_nowait(self, item: Any, priority: int) -> None:
        """Queue ``item`` now, or raise :class:`~async_nexus.errors.QueueFull`."""
        if 0 < self.maxsize <= self.size:
            raise QueueFull(
                f"the nexus queue is full ({self.size} of maxsize={self.maxsize}); "
                "use 'await nexus.ingest(event)' to wait for room, or raise maxsize"
            )
        self._append(item, priority)

    def put_forced(self, item: Any, priority: int) -> None:
        """Queue ``item`` now, past the bound if need be."""
        self._append(item, priority)

    def put_back(self, item: Any, priority: int) -> None:
        """Return the item the consumer just took to the head of its FIFO, to take it again later."""
        bucket = self.buckets[priority]
        if not bucket:
            heapq.heappush(self.priorities, priority)
        bucket.appendleft(item)
        self.size += 1

    async def put(self, item: Any, priority: int) -> None:
        """Queue ``item``, giving a woken consumer its turn first and waiting for room."""
        if self._woken and self.size >= HANDOFF:
            await asyncio.sleep(0)
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

    def _append(self, item: Any, priority: int) -> None:
        size = self.size
        if size >= self.mark:
            self._grow(size)
        bucket = self.buckets.get(priority)
        if bucket is None:
            bucket = self.buckets[priority] = deque()
        if not bucket:
            heapq.heappush(self.priorities, priority)
        bucket.append(item)
        self.size = size + 1

    def _grow(self, size: int) -> None:
        """A put at ``size`` reached the mark: raise the high-water mark, wake the consumer."""
        if size >= self.high_water:
            self.high_water = size + 1
        if self._getter is not None:
            self.wake()
        else:
            self._set_mark()

    def _set_mark(self) -> None:
        if self._getter is not None:
            self.mark = 0
            return
        mark = self.high_water
        if 0 < self.maxsize < mark:
            mark = self.maxsize
        if self._woken and mark > HANDOFF:
            mark = HANDOFF
        self.mark = mark

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
        self._set_mark()  # zero: the next put wakes us
        try:
            await getter
        finally:
            if self._getter is getter:
                self._getter = None
            self._woken = False
            self._set_mark()

    def wake(self) -> None:
        """Wake :meth:`wait_not_empty` even though nothing was queued (used to stop)."""
        getter = self._getter
        if getter is not None:
            self._getter = None
            self._woken = True
            if not getter.done():
                getter.set_result(None)
            self._set_mark()


class Doorbell:
    """Wakes the dispatch loop wherever it waits: for the queue, or for a change elsewhere.

    The loop waits in :meth:`wait` for room in a lane, a concurrent handler to finish, a
    request from a concurrent handler, or a step of the lifecycle; what changes any of
    these calls :meth:`ring`. Ringing also wakes a wait for the queue, so one ring
    reaches the loop wherever it is.
    """

    __slots__ = ("_queue", "_waiter")

    def __init__(self, queue: EventQueue) -> None:
        self._queue = queue
        self._waiter: asyncio.Future[None] | None = None

    def ring(self) -> None:
        """Wake the loop, so that it looks again."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._queue.wake()

    def ring_if_waiting(self) -> None:
        """Wake the loop if it waits in :meth:`wait`, leaving a wait for the queue alone."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for the next :meth:`ring`."""
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
