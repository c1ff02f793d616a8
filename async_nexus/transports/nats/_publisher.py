"""Publishing buffered messages to JetStream, each counted out only when its PubAck arrives."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import itertools
import uuid
from typing import Any

import nats.errors

from ...errors import LoopStopped
from .._retrying import stop_tasks
from ._common import UNREACHABLE, Backoff, Connection, logger

# The header JetStream deduplicates by, within the stream's duplicate window.
MSG_ID = "Nats-Msg-Id"


@dataclasses.dataclass(slots=True)
class Outgoing:
    serial: int
    subject: str
    body: bytes
    headers: dict[str, str]


class Publisher:
    """A bounded buffer of messages and the task that publishes them, retrying until acknowledged.

    A message leaves the buffer only once JetStream acknowledged it. Up to ``window``
    publishes await their acknowledgement at once. Each message gets its ``Nats-Msg-Id``
    when it is buffered (a random prefix of this publisher and a serial number) and keeps
    it on every retry, so a publish that reached the stream but whose acknowledgement was
    lost is dropped by the server as a duplicate when it is sent again.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        what: str,
        limit: int,
        window: int,
        publish_timeout: float,
        backoff: tuple[float, float],
    ) -> None:
        self._connection = connection
        self._what = what
        self._limit = limit
        self._window = window
        self._publish_timeout = publish_timeout
        self._backoff = backoff
        self._prefix = uuid.uuid4().hex
        self._serials = itertools.count(1)
        self._buffer: collections.deque[Outgoing] = collections.deque()
        # Publishes that failed, to be tried again before the buffer.
        self._retries: collections.deque[Outgoing] = collections.deque()
        # Published and awaiting their acknowledgement, by serial; and their tasks.
        self._flying: dict[int, Outgoing] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        # What the last failed publish raised, for the backoff; what no publish should raise.
        self._failure: BaseException | None = None
        self._bug: BaseException | None = None
        self._room = asyncio.Event()
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.last_serial = 0
        #: Messages JetStream acknowledged (duplicates of earlier tries included once).
        self.acknowledged = 0
        #: Of those, how many the server reported as duplicates: retries it had stored already.
        self.duplicates = 0
        #: Messages the server or the client refused for good (too large): dropped, logged.
        self.refused = 0
        self.closed = False

    @property
    def pending(self) -> int:
        """Messages buffered or published and not yet acknowledged."""
        return len(self._buffer) + len(self._retries) + len(self._flying)

    def has_room(self) -> bool:
        return self.pending < self._limit

    def message_id(self, serial: int) -> str:
        return f"{self._prefix}-{serial}"

    async def put(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        while self.pending >= self._limit and not self.closed:
            self._room.clear()
            await self._room.wait()
        self.put_nowait(subject, body, headers)

    def put_nowait(self, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        if self.closed:
            raise LoopStopped(f"{self._what}: closed; it accepts no more events")
        serial = next(self._serials)
        self.last_serial = serial
        all_headers = {**(headers or {}), MSG_ID: self.message_id(serial)}
        self._buffer.append(Outgoing(serial, subject, body, all_headers))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._what)

    def _lowest_outstanding(self) -> int | None:
        # The buffer is in serial order; what is flying or waits for a retry is at most a window.
        serials = [*self._flying, *(entry.serial for entry in self._retries)]
        serials += [self._buffer[0].serial] if self._buffer else []
        return min(serials) if serials else None

    def _done_up_to(self, target: int) -> bool:
        lowest = self._lowest_outstanding()
        return lowest is None or lowest > target

    async def flush(self) -> None:
        """Return once every message buffered so far was acknowledged (or refused for good)."""
        target = self.last_serial
        if self._done_up_to(target):
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushers.append((target, done))
        await done

    async def close(self, timeout: float) -> int:
        """Refuse new messages, publish what is buffered (for up to ``timeout`` s), stop.

        Returns how many messages were left unacknowledged.
        """
        self.closed = True
        self._room.set()
        try:
            if self.pending:
                await asyncio.wait_for(self.flush(), timeout)
        except asyncio.TimeoutError:
            pass
        task, self._task = self._task, None
        await stop_tasks(task)
        left = self.pending
        if left:
            logger.error(
                "%s: closed with %d events not acknowledged by JetStream within close_timeout=%s s; "
                "they are lost unless an earlier try reached the stream",
                self._what,
                left,
                timeout,
            )
        return left

    async def _run(self) -> None:
        """Keep up to ``window`` publishes under way, starting the next as each one lands.

        A window that slides, rather than batches awaited whole, keeps the server busy
        while the slowest acknowledgement of a batch would hold up the rest. After a
        failed publish no new one starts until the backoff has waited.
        """
        backoff = Backoff(f"{self._what}: publishing", *self._backoff)
        buffer, retries, flying = self._buffer, self._retries, self._flying
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._bug is not None:
                    raise self._bug  # a bug, not the network: let it be seen
                if self._failure is not None:
                    error, self._failure = self._failure, None
                    await backoff.failed(error)
                    continue
                if not (retries or buffer) or len(flying) >= self._window:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                js = (await self._connection.get()).jetstream()
                while (retries or buffer) and len(flying) < self._window and self._failure is None:
                    entry = retries.popleft() if retries else buffer.popleft()
                    flying[entry.serial] = entry
                    publish = js.publish(
                        entry.subject, entry.body, timeout=self._publish_timeout, headers=entry.headers
                    )
                    task = loop.create_task(publish)
                    self._tasks.add(task)
                    task.add_done_callback(functools.partial(self._landed, entry, backoff))
        finally:
            for task in self._tasks:
                task.cancel()

    def _landed(self, entry: Outgoing, backoff: Backoff, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        del self._flying[entry.serial]
        self._wake.set()
        if task.cancelled():
            self._retries.append(entry)  # closing: still pending, counted as left
            return
        result = task.exception() or task.result()
        if isinstance(result, nats.errors.MaxPayloadError):
            self.refused += 1
            logger.error("%s: NATS refused an event, dropped: %s", self._what, result)
        elif isinstance(result, UNREACHABLE):
            # Retried before what is buffered; it may still land after events sent later.
            self._retries.append(entry)
            self._failure = self._failure or result
        elif isinstance(result, BaseException):
            self._bug = self._bug or result
        else:
            self.acknowledged += 1
            self.duplicates += 1 if result.duplicate else 0
            if self._failure is None:
                backoff.succeeded()
        self._room.set()
        self._wake_flushers()

    def _wake_flushers(self) -> None:
        waiting = []
        for target, done in self._flushers:
            if done.done():
                continue
            if self._done_up_to(target):
                done.set_result(None)
            else:
                waiting.append((target, done))
        self._flushers = waiting
