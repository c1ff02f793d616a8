"""Messages not dispatched: a record in the dead-letter stream first, then the original terminated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.msg import Msg

from ...errors import AsyncNexusError, DecodeError
from ._common import UNREACHABLE, Backoff, Connection, logger
from ._held import TERM, Held
from ._publisher import MSG_ID

# The headers of a dead-letter record; its body is the original message's body.
REASON = "Nexus-Reason"
EXCEPTION = "Nexus-Exception"
MESSAGE = "Nexus-Message"
ATTEMPTS = "Nexus-Attempts"
STREAM = "Nexus-Stream"
SEQUENCE = "Nexus-Sequence"
DELIVERIES = "Nexus-Deliveries"
CONSUMER = "Nexus-Consumer"
SUBJECT = "Nexus-Subject"

# Header values are one line; long exception messages are cut.
_MAX_HEADER = 2000


def header_value(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _MAX_HEADER else one_line[: _MAX_HEADER - 3] + "..."


class DeadLetteredMessage(AsyncNexusError):
    """A JetStream message that was recorded in the dead letters and terminated, not dispatched.

    Reported to the error hook of the receiving nexus (the subject is the receiver);
    ``except DeadLetteredMessage`` catches both kinds below.

    :ivar stream: the stream the message was read from.
    :ivar sequence: its sequence number there.
    :ivar dead_letter_subject: where its record was published.
    """

    def _recorded(self, stream: str, sequence: int, dead_letter_subject: str) -> None:
        self.stream = stream
        self.sequence = sequence
        self.dead_letter_subject = dead_letter_subject


class MalformedMessage(DeadLetteredMessage, DecodeError):
    """A JetStream message whose body is not an event the codec can decode.

    :ivar reason: what was wrong with it.
    """

    def __init__(
        self, stream: str, sequence: int, reason: str, body: bytes, dead_letter_subject: str
    ) -> None:
        super().__init__(
            f"message {sequence} of stream {stream!r} is not an event ({reason}); its record was "
            f"published to {dead_letter_subject!r} and the message terminated",
            body,
        )
        self.reason = reason
        self._recorded(stream, sequence, dead_letter_subject)


class UndeliverableMessage(DeadLetteredMessage):
    """A JetStream message delivered more than ``max_deliveries`` times and never acknowledged.

    Such a message most likely brings down the receiver that takes it, so it is
    dead-lettered instead of being delivered again.

    :ivar deliveries: how many times the consumer had delivered it, this time included.
    """

    def __init__(self, stream: str, sequence: int, deliveries: int, dead_letter_subject: str) -> None:
        super().__init__(
            f"message {sequence} of stream {stream!r} was delivered {deliveries} times and never "
            f"acknowledged, so it probably brings its receiver down; its record was published to "
            f"{dead_letter_subject!r} and the message terminated. Find out why there, then "
            "publish its body again to have it handled"
        )
        self.deliveries = deliveries
        self._recorded(stream, sequence, dead_letter_subject)


class StuckMessage(AsyncNexusError):
    """A JetStream message held by its receiver for longer than ``stuck_after`` seconds.

    Its handling has not finished: a handler may hang, or its retries wait long, or the
    answer to a request finds no stream to go to. The receiver keeps the message alive
    meanwhile (``in_progress``), so it is not delivered elsewhere; reported once per
    message, to the error hook of the receiving nexus (the subject is the receiver). A
    handler with ``timeout=`` is cut off instead, and its message follows the outcome.

    :ivar stream: the stream the message was read from.
    :ivar sequence: its sequence number there.
    :ivar seconds: how long it had been held.
    """

    def __init__(self, stream: str, sequence: int, seconds: float) -> None:
        super().__init__(
            f"message {sequence} of stream {stream!r} has been held for {seconds:.1f}s and its "
            "handling has not finished: a handler may hang, its retries wait long, or the answer "
            "to a request has no stream to go to (see the async_nexus.nats log). Give the "
            "handler timeout= to cut it off, or raise stuck_after above its retry waits"
        )
        self.stream = stream
        self.sequence = sequence
        self.seconds = seconds


class DeadLetters:
    """Records messages in the dead-letter subject and only then terminates them.

    The record's ``Nats-Msg-Id`` is made of the stream, the consumer and the sequence, so a
    record published again (after a lost acknowledgement, or by a receiver that got the
    message again because the first one died between record and term) is dropped by the
    dead-letter stream as a duplicate.
    """

    def __init__(
        self,
        connection: Connection,
        held: Held,
        *,
        consumer: str,
        dead_letter_subject: str,
        backoff: tuple[float, float],
        what: str,
        on_recorded: Callable[[int], None],
    ) -> None:
        self._connection = connection
        self._held = held
        self._consumer = consumer
        self.dead_letter_subject = dead_letter_subject
        self._backoff = backoff
        self._what = what
        self._on_recorded = on_recorded
        self._moving: set[asyncio.Task[None]] = set()

    def handling_failed(self, sequence: int, msg: Msg, exc: BaseException, attempts: int) -> None:
        """The handling of a message's event finally failed: record it, then terminate it.

        Runs in a task of its own (this is called where the nexus finishes an event);
        :meth:`close` waits for it.
        """
        kind = type(exc)
        plural = "" if attempts == 1 else "s"
        extra = {
            EXCEPTION: f"{kind.__module__}.{kind.__qualname__}",
            MESSAGE: str(exc),
            ATTEMPTS: str(attempts),
        }
        reason = f"handling failed after {attempts} attempt{plural}: {kind.__qualname__}: {exc}"
        task = asyncio.create_task(self._move_failed(sequence, msg, reason, extra))
        self._moving.add(task)
        task.add_done_callback(self._moving.discard)

    async def _move_failed(self, sequence: int, msg: Msg, reason: str, extra: dict[str, str]) -> None:
        await self.record(msg, reason, extra)
        self._held.settle(sequence, TERM)
        self._on_recorded(sequence)

    async def malformed(self, msg: Msg, exc: DecodeError) -> MalformedMessage:
        """Record a message that is no event, terminate it; the error to report."""
        reason = str(exc)
        await self.record(msg, reason)
        self._held.settle_msg(msg, TERM)
        meta = msg.metadata
        return MalformedMessage(meta.stream, meta.sequence.stream, reason, msg.data, self.dead_letter_subject)

    async def undeliverable(self, msg: Msg, limit: int) -> UndeliverableMessage:
        """Record a message delivered too often, terminate it; the error to report."""
        meta = msg.metadata
        deliveries = meta.num_delivered
        await self.record(
            msg, f"delivered {deliveries} times without being acknowledged (max_deliveries={limit})"
        )
        self._held.settle_msg(msg, TERM)
        return UndeliverableMessage(meta.stream, meta.sequence.stream, deliveries, self.dead_letter_subject)

    async def record(self, msg: Msg, reason: str, extra: dict[str, str] | None = None) -> None:
        """Publish the record of ``msg``, retrying until the dead-letter stream acknowledged it."""
        meta = msg.metadata
        stream, sequence = meta.stream, meta.sequence.stream
        headers = {
            REASON: reason,
            STREAM: stream,
            SEQUENCE: str(sequence),
            DELIVERIES: str(meta.num_delivered),
            CONSUMER: self._consumer,
            SUBJECT: msg.subject,
            **(extra or {}),
        }
        headers = {name: header_value(value) for name, value in headers.items()}
        headers[MSG_ID] = f"dead-{stream}-{self._consumer}-{sequence}"
        backoff = Backoff(f"{self._what}: dead-lettering message {sequence}", *self._backoff)
        while True:
            try:
                js = (await self._connection.get()).jetstream()
                await js.publish(self.dead_letter_subject, msg.data, headers=headers)
                break
            except UNREACHABLE as exc:
                await backoff.failed(exc)
        backoff.succeeded()

    async def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the records under way; those cut off are delivered again."""
        if not self._moving:
            return
        _, late = await asyncio.wait(set(self._moving), timeout=max(timeout, 0.001))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            logger.warning(
                "%s: closed with %d failed messages not yet recorded in %r; they will be delivered again",
                self._what,
                len(late),
                self.dead_letter_subject,
            )
