"""Entries not dispatched: dead letters moved to the dead-letter stream, and entries lost from the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from ...codec import EventCodec
from ...errors import AsyncNexusError, DecodeError
from ...events import Event
from ._common import EVENT_FIELD, UNREACHABLE, Backoff, Fields, logger


class DeadLetteredEntry(AsyncNexusError):
    """A stream entry that was moved to the dead-letter stream and acknowledged, not dispatched.

    Reported to the error hook of the receiving nexus (the subject is the receiver);
    ``except DeadLetteredEntry`` catches both kinds below.

    :ivar stream: the stream the entry was read from.
    :ivar entry_id: its id there.
    :ivar fields: the entry as it was read.
    :ivar dead_letter_stream: where it was moved.
    """

    def _moved(self, stream: str, entry_id: bytes, fields: Fields, dead_letter_stream: str) -> None:
        self.stream = stream
        self.entry_id = entry_id
        self.fields = fields
        self.dead_letter_stream = dead_letter_stream


class MalformedEntry(DeadLetteredEntry, DecodeError):
    """A stream entry that is not an event.

    :ivar reason: what was wrong with it.
    """

    def __init__(
        self, stream: str, entry_id: bytes, reason: str, fields: Fields, dead_letter_stream: str
    ) -> None:
        entry = entry_id.decode("ascii", "replace")
        super().__init__(
            f"entry {entry} of stream {stream!r} is not an event ({reason}); it was moved to the "
            f"dead-letter stream {dead_letter_stream!r} and acknowledged",
            fields.get(EVENT_FIELD),
        )
        self.reason = reason
        self._moved(stream, entry_id, fields, dead_letter_stream)


class UndeliverableEntry(DeadLetteredEntry):
    """A stream entry delivered more than ``max_deliveries`` times and never acknowledged.

    Such an entry most likely brings down the consumer that takes it, so it is dead-lettered
    instead of being delivered again.

    :ivar deliveries: how many times the group had delivered it, this time included.
    """

    def __init__(
        self, stream: str, entry_id: bytes, deliveries: int, fields: Fields, dead_letter_stream: str
    ) -> None:
        entry = entry_id.decode("ascii", "replace")
        super().__init__(
            f"entry {entry} of stream {stream!r} was delivered {deliveries} times and never "
            f"acknowledged, so it probably brings its consumer down; it was moved to the "
            f"dead-letter stream {dead_letter_stream!r} and acknowledged. Find out why there, "
            "then add it to the stream again to have it handled"
        )
        self.deliveries = deliveries
        self._moved(stream, entry_id, fields, dead_letter_stream)


class TrimmedEntry(AsyncNexusError):
    """A pending entry that was gone from the stream when its consumer took it up again.

    The stream was trimmed (``maxlen``, ``XTRIM``) or the entry deleted (``XDEL``) after it
    had been read and before it was acknowledged, so its event is lost: there is nothing
    to dispatch or to dead-letter. The receiver acknowledges what the group still holds of
    it and reports this to the error hook of the receiving nexus (the subject is the
    receiver). A ``maxlen`` long enough for the backlog of the slowest group avoids it.

    :ivar stream: the stream the entry was read from.
    :ivar entry_id: its id there.
    :ivar group: the consumer group it was pending in.
    """

    def __init__(self, stream: str, entry_id: bytes, group: str) -> None:
        entry = entry_id.decode("ascii", "replace")
        super().__init__(
            f"entry {entry} of stream {stream!r} was trimmed from the stream while pending in "
            f"group {group!r}, before it was acknowledged; its event is lost"
        )
        self.stream = stream
        self.entry_id = entry_id
        self.group = group


class StuckEntry(AsyncNexusError):
    """An entry held by its receiver for longer than ``stuck_after`` seconds, not yet acknowledged.

    Its handler has not finished: it may hang. The receiver keeps the entry fresh while it
    holds it, so no other consumer takes it over; reported once per entry, to the error
    hook of the receiving nexus (the subject is the receiver). A handler with
    ``timeout=`` is cut off instead, and its entry follows the outcome.

    :ivar stream: the stream the entry was read from.
    :ivar entry_id: its id there.
    :ivar seconds: how long it had been held.
    """

    def __init__(self, stream: str, entry_id: bytes, seconds: float) -> None:
        entry = entry_id.decode("ascii", "replace")
        super().__init__(
            f"entry {entry} of stream {stream!r} has been held for {seconds:.1f}s and its "
            "handling has not finished: a handler may hang, or its retries wait long. Give the "
            "handler timeout= to cut it off, or raise stuck_after above its retry waits"
        )
        self.stream = stream
        self.entry_id = entry_id
        self.seconds = seconds


class DeadLetters:
    """Moves entries of one stream and group to the dead-letter stream, retrying until done.

    The record and the acknowledgement go in one ``MULTI`` transaction: an entry is never
    acknowledged without its record, nor recorded twice because an acknowledgement failed.
    """

    def __init__(
        self,
        client: Callable[[], aioredis.Redis],
        *,
        stream: str,
        group: str,
        consumer: str,
        dead_letter_stream: str,
        backoff: tuple[float, float],
        what: str,
        on_moved: Callable[[bytes], None],
    ) -> None:
        self._client = client
        self._on_moved = on_moved
        self._moving: set[asyncio.Task[None]] = set()
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self._backoff = backoff
        self._what = what

    def handling_failed(
        self, entry_id: bytes, fields: Fields, event: Event, exc: BaseException, attempts: int
    ) -> None:
        """The handling of an entry's event finally failed: move it to the dead letters.

        The record says why: ``exception`` (its class), ``message``, ``attempts``, and a
        ``reason`` that sums them up. The move runs in a task of its own (this is called
        where the nexus finishes an event); :meth:`close` waits for it.
        """
        kind = type(exc)
        plural = "" if attempts == 1 else "s"
        extra = {
            b"exception": f"{kind.__module__}.{kind.__qualname__}",
            b"message": str(exc),
            b"attempts": str(attempts),
        }
        reason = f"handling failed after {attempts} attempt{plural}: {kind.__qualname__}: {exc}"
        task = asyncio.create_task(self._move_failed(entry_id, fields, reason, extra))
        self._moving.add(task)
        task.add_done_callback(self._moving.discard)

    async def _move_failed(
        self, entry_id: bytes, fields: Fields, reason: str, extra: dict[bytes, str]
    ) -> None:
        await self.move(entry_id, fields, reason, extra)
        self._on_moved(entry_id)

    async def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the moves under way; those cut off stay pending, to be redelivered."""
        if not self._moving:
            return
        _, late = await asyncio.wait(set(self._moving), timeout=max(timeout, 0.001))
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            logger.warning(
                "%s: closed with %d failed entries not yet moved to %r; they stay pending and will be "
                "delivered again",
                self._what,
                len(late),
                self.dead_letter_stream,
            )

    async def move(
        self, entry_id: bytes, fields: Fields, reason: str, extra: dict[bytes, str] | None = None
    ) -> None:
        record: dict[bytes, bytes | str] = {
            b"reason": reason,
            b"stream": self.stream,
            b"id": entry_id,
            b"group": self.group,
            b"consumer": self.consumer,
            **(extra or {}),
        }
        for name, value in fields.items():
            record[b"field:" + name] = value
        backoff = Backoff(f"{self._what}: dead-lettering", *self._backoff)
        while True:
            try:
                pipe = self._client().pipeline(transaction=True)
                pipe.xadd(self.dead_letter_stream, record)  # type: ignore[arg-type]
                pipe.xack(self.stream, self.group, entry_id)
                await pipe.execute()
                break
            except UNREACHABLE as exc:
                await backoff.failed(exc)
        backoff.succeeded()

    async def screen(
        self, entry_id: bytes, fields: Fields, deliveries: int, limit: int | None, codec: EventCodec
    ) -> Event | DeadLetteredEntry:
        """The event an entry holds; or, if it is a dead letter, the error to report once moved.

        An entry is a dead letter when it was delivered more than ``limit`` times
        (:class:`UndeliverableEntry`), or when it holds no event ``codec`` can decode
        (:class:`MalformedEntry`).
        """
        if limit is not None and deliveries > limit:
            reason = f"delivered {deliveries} times without being acknowledged (max_deliveries={limit})"
            await self.move(entry_id, fields, reason)
            return UndeliverableEntry(self.stream, entry_id, deliveries, fields, self.dead_letter_stream)
        raw = fields.get(EVENT_FIELD)
        if raw is None:
            names = ", ".join(repr(name.decode("utf-8", "replace")) for name in fields)
            reason = f"no 'event' field; it has {names}"
        else:
            try:
                return codec.decode(raw)
            except DecodeError as exc:
                reason = str(exc)
        await self.move(entry_id, fields, reason)
        return MalformedEntry(self.stream, entry_id, reason, fields, self.dead_letter_stream)
