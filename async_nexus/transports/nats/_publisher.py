"""Publishing buffered messages to JetStream, each counted out only when its PubAck arrives."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import uuid
from typing import Any

import nats.errors
import nats.js.api
from nats.aio.client import Client
from nats.aio.msg import Msg

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
    deadline: float = 0.0  # when an unanswered publish is tried again


def read_answer(msg: Msg) -> dict[str, Any] | BaseException:
    """The server's acknowledgement of a publish, or what went wrong instead."""
    status = msg.headers.get(nats.js.api.Header.STATUS) if msg.headers else None
    if status == "503":  # no stream listens on the subject, or none has a leader now
        return nats.errors.NoRespondersError()
    if not msg.data:
        return nats.errors.Error(f"an empty answer to a publish (status {status})")
    try:
        answer = json.loads(msg.data)
    except ValueError:
        return nats.errors.Error(f"an answer to a publish that is not JSON: {msg.data[:200]!r}")
    if not isinstance(answer, dict) or answer.get("error") is not None or "seq" not in answer:
        error = answer.get("error") if isinstance(answer, dict) else answer
        return nats.errors.Error(f"JetStream did not store a publish: {error}")
    return answer


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
        self._prefix = uuid.uuid4().hex
        self._serials = itertools.count(1)
        self._buffer: collections.deque[Outgoing] = collections.deque()
        # Publishes that failed, to be tried again before the buffer.
        self._retries: collections.deque[Outgoing] = collections.deque()
        # Published and awaiting their acknowledgement, by serial; the connection and the
        # inbox the acknowledgements come to.
        self._flying: dict[int, Outgoing] = {}
        self._acks: tuple[Client, str] | None = None
        # Grows while publishes fail; an acknowledgement resets it.
        self._retrying = Backoff(f"{what}: publishing", *backoff)
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

        Each message is published with a reply subject of its own under one inbox that this
        publisher listens on (:meth:`_answered`), instead of a request per message: the
        server's acknowledgements come back on one subscription, and a sweep here retries
        what went unanswered for ``publish_timeout``. After a failure no new publish starts
        until the backoff has waited.
        """
        backoff = self._retrying
        buffer, retries, flying = self._buffer, self._retries, self._flying
        loop = asyncio.get_running_loop()
        while True:
            if self._bug is not None:
                raise self._bug  # a bug, not the network: let it be seen
            self._expire(loop.time())
            if self._failure is not None:
                error, self._failure = self._failure, None
                await backoff.failed(error)
                continue
            if not (retries or buffer) or len(flying) >= self._window:
                self._wake.clear()
                sweep = self._publish_timeout / 4 if flying else None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), sweep)
                continue
            client = await self._connection.get()
            try:
                inbox = await self._inbox_of(client)
            except UNREACHABLE as exc:
                self._failure = exc
                continue
            deadline = loop.time() + self._publish_timeout
            while (retries or buffer) and len(flying) < self._window and self._failure is None:
                entry = retries.popleft() if retries else buffer.popleft()
                entry.deadline = deadline
                flying[entry.serial] = entry
                try:
                    await client.publish(
                        entry.subject, entry.body, reply=f"{inbox}{entry.serial}", headers=entry.headers
                    )
                except nats.errors.MaxPayloadError as exc:
                    del flying[entry.serial]
                    self.refused += 1
                    logger.error("%s: NATS refused an event, dropped: %s", self._what, exc)
                    self._settled()
                except UNREACHABLE as exc:
                    del flying[entry.serial]
                    retries.append(entry)
                    self._failure = exc

    async def _inbox_of(self, client: Client) -> str:
        """The reply-subject prefix whose acknowledgements this publisher gets on ``client``.

        One subscription per connection; nats-py renews it when the connection reconnects.
        """
        if self._acks is None or self._acks[0] is not client:
            inbox = f"{client.new_inbox()}."
            await client.subscribe(f"{inbox}*", cb=self._answered)
            self._acks = (client, inbox)
        return self._acks[1]

    async def _answered(self, msg: Msg) -> None:
        """One answer of the server to a publish: its acknowledgement, or why not."""
        try:
            serial = int(msg.subject.rpartition(".")[2])
            entry = self._flying.pop(serial, None)
            if entry is None:
                return  # an answer to a try given up on (and retried) or already counted
            self._wake.set()
            answer = read_answer(msg)
            if isinstance(answer, BaseException):
                self._retries.append(entry)
                self._failure = self._failure or answer
                return
            self.acknowledged += 1
            self.duplicates += 1 if answer.get("duplicate") is True else 0
            self._retrying.succeeded()
            self._settled()
        except Exception as exc:  # a bug of ours: the publishing task raises it
            self._bug = self._bug or exc
            self._wake.set()

    def _expire(self, now: float) -> None:
        """Try again what the server did not answer in time: its answer, or the publish, was lost."""
        late = [entry for entry in self._flying.values() if entry.deadline <= now]
        for entry in late:
            del self._flying[entry.serial]
            self._retries.append(entry)
        if late:
            self._failure = self._failure or asyncio.TimeoutError(
                f"{len(late)} publish(es) not acknowledged within publish_timeout={self._publish_timeout} s"
            )

    def _settled(self) -> None:
        self._room.set()
        if self._flushers:
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
