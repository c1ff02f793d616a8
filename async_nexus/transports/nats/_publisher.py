"""Publishing buffered messages to JetStream, each counted out only when its PubAck arrives."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import uuid

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
        self._flying: list[Outgoing] = []
        self._has_entries = asyncio.Event()
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
        return len(self._buffer) + len(self._flying)

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
        self._has_entries.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._what)

    def _lowest_outstanding(self) -> int | None:
        lowest = [entry.serial for entry in self._flying[:1]]
        lowest += [self._buffer[0].serial] if self._buffer else []
        return min(lowest) if lowest else None

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
        backoff = Backoff(f"{self._what}: publishing", *self._backoff)
        buffer = self._buffer
        while True:
            if not buffer:
                self._has_entries.clear()
                await self._has_entries.wait()
                continue
            js = (await self._connection.get()).jetstream()
            batch = self._flying = [buffer.popleft() for _ in range(min(self._window, len(buffer)))]
            results = await asyncio.gather(
                *(
                    js.publish(
                        entry.subject, entry.body, timeout=self._publish_timeout, headers=entry.headers
                    )
                    for entry in batch
                ),
                return_exceptions=True,
            )
            failed: list[Outgoing] = []
            error: BaseException | None = None
            for entry, result in zip(batch, results, strict=True):
                if isinstance(result, nats.errors.MaxPayloadError):
                    self.refused += 1
                    logger.error("%s: NATS refused an event, dropped: %s", self._what, result)
                elif isinstance(result, UNREACHABLE):
                    failed.append(entry)
                    error = error or result
                elif isinstance(result, BaseException):
                    raise result  # a bug, not the network: let it be seen
                else:
                    self.acknowledged += 1
                    self.duplicates += 1 if result.duplicate else 0
            buffer.extendleft(reversed(failed))
            self._flying = []
            self._room.set()
            self._wake_flushers()
            if error is not None:
                await backoff.failed(error)
            else:
                backoff.succeeded()

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
