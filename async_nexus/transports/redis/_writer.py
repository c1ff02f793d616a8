"""Appending to streams in pipelined batches: the sender's events, the receiver's answers."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable

import redis.asyncio as aioredis

from ...errors import LoopStopped
from .._retrying import stop_tasks
from ._common import UNREACHABLE, Backoff, Fields, logger


class StreamWriter:
    """Appends entries to streams in pipelined batches, in order, retrying until written.

    Entries stay in the buffer until ``XADD`` has returned for them, so a lost connection
    delays them but does not lose them. A batch cut by a lost connection is written again
    in full: its first entries may then be in the stream twice.
    """

    def __init__(
        self,
        client: Callable[[], aioredis.Redis],
        *,
        what: str,
        batch_size: int,
        limit: int | None,
        backoff: tuple[float, float],
        drop_refused: bool,
    ) -> None:
        self._client = client
        self._what = what
        self._batch_size = batch_size
        self._limit = limit
        self._backoff = backoff
        # Replies go to streams that peers name; one they name badly must not block the rest.
        self._drop_refused = drop_refused
        self._buffer: collections.deque[tuple[str, Fields, int | None]] = collections.deque()
        self._has_entries = asyncio.Event()
        self._room = asyncio.Event()
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.accepted = 0
        self.written = 0
        self.closed = False

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def has_room(self) -> bool:
        return self._limit is None or len(self._buffer) < self._limit

    async def put(self, stream: str, fields: Fields, maxlen: int | None) -> None:
        limit = self._limit
        while limit is not None and len(self._buffer) >= limit and not self.closed:
            self._room.clear()
            await self._room.wait()
        self.put_nowait(stream, fields, maxlen)

    def put_nowait(self, stream: str, fields: Fields, maxlen: int | None) -> None:
        if self.closed:
            raise LoopStopped(f"{self._what}: closed; it accepts no more entries")
        self._buffer.append((stream, fields, maxlen))
        self.accepted += 1
        self._has_entries.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._what)

    async def flush(self) -> None:
        target = self.accepted
        if self.written >= target:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushers.append((target, done))
        await done

    async def close(self, timeout: float | None) -> None:
        """Refuse new entries, write what is buffered (for up to ``timeout`` s), stop."""
        self.closed = True
        self._room.set()
        try:
            if self._buffer:
                await asyncio.wait_for(self.flush(), timeout)
        finally:
            task, self._task = self._task, None
            await stop_tasks(task)
            if self._buffer:
                logger.error(
                    "%s: closed with %d entries not written (Redis unreachable for %s s)",
                    self._what,
                    len(self._buffer),
                    timeout,
                )

    async def _run(self) -> None:
        backoff = Backoff(self._what, *self._backoff)
        buffer = self._buffer
        while True:
            if not buffer:
                self._has_entries.clear()
                await self._has_entries.wait()
                continue
            batch = list(itertools.islice(buffer, self._batch_size))
            try:
                pipe = self._client().pipeline(transaction=False)
                for stream, fields, maxlen in batch:
                    pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
                results = await pipe.execute(raise_on_error=False)
            except UNREACHABLE as exc:
                await backoff.failed(exc)
                continue
            done = len(batch)
            refused = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
            if refused is not None:
                error = results[refused]
                if not self._drop_refused:
                    # Keep order: what follows the refused entry waits with it.
                    self._taken(refused)
                    await backoff.failed(error)
                    continue
                for index, result in enumerate(results):
                    if isinstance(result, BaseException):
                        logger.error(
                            "%s: Redis refused an entry for stream %r, dropped: %s",
                            self._what,
                            batch[index][0],
                            result,
                        )
            backoff.succeeded()
            self._taken(done)

    def _taken(self, count: int) -> None:
        for _ in range(count):
            self._buffer.popleft()
        self.written += count
        self._room.set()
        if self._flushers:
            written = self.written
            waiting = []
            for target, done in self._flushers:
                if target <= written:
                    if not done.done():
                        done.set_result(None)
                elif not done.done():
                    waiting.append((target, done))
            self._flushers = waiting
