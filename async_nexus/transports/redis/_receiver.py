"""The receiving side: a producer that reads a stream through a consumer group."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ...codec import EventCodec
from ...events import CORRELATION_ID, REPLY_TO, Event, EventFactory
from ...sources import EventProducer
from .._retrying import check_positive, stop_tasks
from ._common import (
    EVENT_FIELD,
    UNREACHABLE,
    Backoff,
    Fields,
    check_name,
    check_options,
    connect,
    default_consumer,
    logger,
    stream_entries,
)
from ._dead_letters import DeadLetteredEntry, DeadLetters, StuckEntry, TrimmedEntry
from ._holdings import Holdings
from ._writer import StreamWriter


class RedisStreamReceiver(EventProducer):
    """A producer that reads a Redis stream through a consumer group into its nexus.

    ::

        receiver = RedisStreamReceiver("redis://localhost:6379/0", "orders", group="billing")
        nexus.add_producer(receiver)

    **Competing or broadcast** is decided by ``group`` alone. Receivers that name the same
    group share its entries: each entry goes to one of them (competing consumers, a work
    queue). Receivers with different groups each get every entry (broadcast). With
    ``group=None`` the receiver makes a group of its own, named after its consumer: it
    gets every entry added after it started, and the group is destroyed when the receiver
    closes. A durable broadcast subscriber that resumes where it left off after a restart
    names a group of its own instead.

    **At least once.** An entry is acknowledged (``XACK``, batched) only after its event
    has been handled in every nexus that took it, and after any answers its handlers gave
    have been written. An event whose handling finally failed (after its handler's
    retries; or that no handler took) is a dead letter: its entry is moved to
    ``dead_letter_stream`` with the fields ``exception``, ``message``, ``attempts`` and
    ``reason``, and acknowledged with the move. At start the receiver dispatches again what its consumer name
    had read without acknowledging, and every ``claim_interval`` it claims
    (``XAUTOCLAIM``) entries that another consumer left pending for longer than
    ``claim_idle`` seconds and dispatches them. So an entry a crashed receiver had read is
    handled by someone; an entry may be handled twice. The receiver keeps the entries it
    is still dispatching fresh, so live consumers do not steal them from each other.

    **Malformed entries** (no ``event`` field, or a :class:`~async_nexus.errors.DecodeError`)
    are added to ``dead_letter_stream`` with fields ``reason``, ``stream``, ``id``,
    ``group``, ``consumer`` and the original fields under ``field:<name>``, acknowledged,
    and reported to the error hook as :class:`MalformedEntry`; reading goes on.

    **Poison entries.** An entry that takes its consumer down with it (a handler that
    crashes the process, say) would be claimed and delivered again for ever. When an entry
    is delivered again (a claim, or its consumer's history after a restart), the receiver
    asks Redis how often the group has delivered it. Past ``max_deliveries`` it is
    dead-lettered as above, and reported as :class:`UndeliverableEntry`. Taking up its own
    entries again after a lost connection is no delivery, and is not counted.

    **Trimmed entries**, gone from the stream while pending, are acknowledged and reported
    as :class:`TrimmedEntry`. An entry held longer than ``stuck_after`` is reported once as
    :class:`StuckEntry`: its handler may hang.

    **Requests.** An event with ``correlation-id`` and ``reply-to`` headers is distributed
    with a reply route: its handler's answer is added to the stream ``reply-to`` names.

    :param url: a redis-py URL (``redis://``, ``rediss://``, ``unix://``, with password).
    :param stream: the stream to read; it is created if missing.
    :param group: the consumer group (see above); ``None``: a group of its own.
    :param consumer: this receiver's name in the group. Give a stable one to take over its
        own unacknowledged entries after a restart; by default host, pid and a random part.
    :param start_id: where a group created by this receiver starts: ``"0"`` (the whole
        stream) for a named group, ``"$"`` (new entries) for a group of its own.
    :param max_in_flight: at most this many entries read and not yet acknowledged.
    :param read_count: at most this many entries per ``XREADGROUP``.
    :param block: how long one ``XREADGROUP`` waits for entries, in seconds.
    :param claim_idle: entries pending this long (seconds) are taken over from other
        consumers.
    :param claim_interval: how often to look for them; ``claim_idle / 2`` by default.
    :param dead_letter_stream: where dead letters go (malformed, undeliverable, failed);
        ``f"{stream}:dead"`` by default.
    :param max_deliveries: how many times an entry may be delivered without being
        acknowledged before it is dead-lettered; ``None``: no limit.
    :param reply_maxlen: approximate length bound of the reply streams answers are added to.
    :param codec: the wire format; a JSON :class:`~async_nexus.codec.EventCodec` by default.
        Register :class:`~async_nexus.NamedEvent` classes with it to receive them as such.
    :param retry_initial: first delay after a failed Redis command, in seconds; it doubles
        up to ``retry_max``.
    :param close_timeout: how long :meth:`close` keeps trying to acknowledge and answer.
    :param stuck_after: seconds an entry may be held before it is reported; ``None``: never.
    :param redis_options: passed to ``redis.asyncio.from_url``.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        start_id: str | None = None,
        max_in_flight: int = 1000,
        read_count: int = 100,
        block: float = 1.0,
        claim_idle: float = 30.0,
        claim_interval: float | None = None,
        dead_letter_stream: str | None = None,
        max_deliveries: int | None = 10,
        reply_maxlen: int | None = 10_000,
        codec: EventCodec | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        close_timeout: float = 5.0,
        stuck_after: float | None = 300.0,
        event_factory: EventFactory | None = None,
        **redis_options: Any,
    ) -> None:
        super().__init__(event_factory)
        check_name("stream", stream)
        check_options(redis_options, block=block)
        optional_names = {"group": group, "consumer": consumer, "dead_letter_stream": dead_letter_stream}
        for what, name in optional_names.items():
            if name is not None:
                check_name(what, name)
        for what, value in {"max_in_flight": max_in_flight, "read_count": read_count}.items():
            check_positive(what, value, integer=True)
        if max_deliveries is not None:
            check_positive("max_deliveries", max_deliveries, integer=True)
        numbers = {
            "block": block, "claim_idle": claim_idle, "claim_interval": claim_interval,
            "retry_initial": retry_initial, "retry_max": retry_max, "stuck_after": stuck_after,
        }  # fmt: skip
        for what, number in numbers.items():
            if number is not None:
                check_positive(what, number)
        self.url = url
        self.stream = stream
        self.consumer = consumer if consumer is not None else default_consumer()
        #: Whether the group is this receiver's own (``group=None``).
        self.own_group = group is None
        self.group = group if group is not None else f"own-{self.consumer}"
        self.start_id = start_id if start_id is not None else ("$" if self.own_group else "0")
        self.max_in_flight = max_in_flight
        self.read_count = read_count
        self.block = block
        self.claim_idle = claim_idle
        self.claim_interval = claim_interval if claim_interval is not None else claim_idle / 2
        self.dead_letter_stream = dead_letter_stream if dead_letter_stream is not None else f"{stream}:dead"
        self.max_deliveries = max_deliveries
        self.reply_maxlen = reply_maxlen
        self.codec = codec if codec is not None else EventCodec()
        self.close_timeout = close_timeout
        self.stuck_after = stuck_after
        self._backoff = (retry_initial, retry_max)
        self._options = dict(redis_options)
        self._redis: aioredis.Redis | None = None
        where = {"stream": stream, "group": self.group, "consumer": self.consumer}
        self._held = Holdings(
            self._client, **where, limit=max_in_flight, backoff=self._backoff, what=repr(self),
            before_ack=self._answers_out,
        )  # fmt: skip
        self._dead = DeadLetters(
            self._client, **where, dead_letter_stream=self.dead_letter_stream, backoff=self._backoff,
            what=repr(self), on_moved=self._moved_to_dead_letters,
        )  # fmt: skip
        self._ready = asyncio.Event()
        self._start_task: asyncio.Task[Any] | None = None
        self._replies = self._new_reply_writer()
        #: Entries distributed (read or claimed, decoded) since the receiver was made.
        self.received = 0
        #: Entries taken over from other consumers (or from an earlier run of this one).
        self.claimed = 0
        #: Entries moved to the dead-letter stream: malformed, delivered too often, or failed.
        self.dead_lettered = 0

    def _new_reply_writer(self) -> StreamWriter:
        return StreamWriter(
            self._client,
            what=f"RedisStreamReceiver({self.stream!r}) replies",
            batch_size=500,
            limit=None,
            backoff=self._backoff,
            drop_refused=True,
        )

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = connect(self.url, self._options)
        return self._redis

    @property
    def in_flight(self) -> int:
        """Entries read (or claimed) and not yet acknowledged."""
        return len(self._held)

    @property
    def acknowledged(self) -> int:
        """Entries acknowledged after dispatch."""
        return self._held.acknowledged

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the group exists and the receiver reads: entries added from now on reach it."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- the task the nexus runs ------------------------------------------------------------

    async def start(self) -> None:
        """Create the group if needed, then read, claim and dispatch until cancelled."""
        self._start_task = asyncio.current_task()
        if self._replies.closed:
            self._replies = self._new_reply_writer()
        self._held.start_acknowledging()
        # Redis is spoken to only in child tasks: this task awaits nothing that could lose
        # the nexus's cancellation (see stop_tasks).
        children = {
            asyncio.create_task(self._read_loop(), name=f"{self!r} reads"),
            asyncio.create_task(self._claim_loop(), name=f"{self!r} claims"),
            asyncio.create_task(self._keep_fresh_loop(), name=f"{self!r} keeps fresh"),
        }
        try:
            done, _ = await asyncio.wait(children, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # they run until cancelled: one that ended failed
        finally:
            self._ready.clear()
            await stop_tasks(*children)

    async def _create_group(self) -> None:
        backoff = Backoff(f"{self!r}: creating group", *self._backoff)
        while True:
            try:
                await self._client().xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" in str(exc):
                    break
                await backoff.failed(exc)
            except UNREACHABLE as exc:
                await backoff.failed(exc)
            else:
                logger.info("created group %r on stream %r at %s", self.group, self.stream, self.start_id)
                break
        backoff.succeeded()
        self._ready.set()

    async def _read_loop(self) -> None:
        backoff = Backoff(f"{self!r}: reading", *self._backoff)
        block_ms = max(1, int(self.block * 1000))
        # Own history first: what this consumer name read and did not acknowledge, at start
        # (delivered again) and after a lost connection (a read whose reply was lost is
        # pending under our name: its first delivery).
        history: str | None = "-"
        again = True
        self._held.begin_history()
        await self._create_group()
        while True:
            room = await self._held.wait_room()
            count = min(room, self.read_count)
            try:
                if history is not None:
                    history, entries = await self._held.history(history, count, again=again)
                else:
                    response = await self._client().xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
                    )
                    entries = [(entry_id, fields, 1) for entry_id, fields in stream_entries(response)]
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the server lost its data, or someone destroyed the group
                    logger.warning("%r: group %r is gone; creating it again", self, self.group)
                    await self._create_group()
                    history = "-"
                    continue
                await backoff.failed(exc)
                continue
            except UNREACHABLE as exc:
                await backoff.failed(exc)
                if history is None:  # else the pass goes on where it was
                    history, again = "-", False
                continue
            backoff.succeeded()
            for entry_id, fields, deliveries in entries:
                await self._take(entry_id, fields, deliveries)

    @property
    def _counted(self) -> bool:
        # Without a limit, how often an entry was delivered does not matter: no need to ask.
        return self.max_deliveries is not None

    async def _take(self, entry_id: bytes, fields: Fields, deliveries: int = 1) -> None:
        """Dispatch one entry read or claimed, unless it is already being dispatched here."""
        if entry_id in self._held:
            return
        if not fields:  # trimmed from the stream while it was pending: its event is lost
            self._held.acknowledge(entry_id)
            await self.report(TrimmedEntry(self.stream, entry_id, self.group))
            return
        event = await self._dead.screen(entry_id, fields, deliveries, self.max_deliveries, self.codec)
        if isinstance(event, DeadLetteredEntry):
            self.dead_lettered += 1
            # The error hook logs it (by default) or does what the program wants with it.
            await self.report(event)
            return
        self._held.take(entry_id)
        self.received += 1
        reply = None
        headers = event.headers
        if headers and CORRELATION_ID in headers and REPLY_TO in headers:
            reply = functools.partial(self._reply, headers[REPLY_TO])
        taken = await self.distribute_event(
            event, on_dispatched=functools.partial(self._dispatched, entry_id), reply=reply,
            on_dead_letter=functools.partial(self._dead.handling_failed, entry_id, fields),
        )  # fmt: skip
        if not taken:  # no nexus runs any more: leave it pending for redelivery
            self._held.give_back(entry_id)

    def _dispatched(self, entry_id: bytes, event: Event) -> None:
        self._held.acknowledge(entry_id)

    def _moved_to_dead_letters(self, entry_id: bytes) -> None:
        self._held.give_back(entry_id)  # acknowledged by the move
        self.dead_lettered += 1

    def _reply(self, stream: str, answer: Event) -> None:
        self._replies.put_nowait(stream, {EVENT_FIELD: self.codec.encode(answer)}, self.reply_maxlen)

    async def _answers_out(self) -> None:
        if self._replies.pending:
            await self._replies.flush()  # answers are out before their requests are acknowledged

    async def _claim_loop(self) -> None:
        await self._ready.wait()
        min_idle = max(1, int(self.claim_idle * 1000))
        while True:
            try:
                await self._held.claim_all(min_idle, self._take_claimed, counted=self._counted)
            except UNREACHABLE as exc:
                # The reader logs and retries lost connections; here the next round will do.
                logger.debug("%r: claiming failed: %s", self, exc)
            await asyncio.sleep(self.claim_interval)

    async def _take_claimed(self, entry_id: bytes, fields: Fields, deliveries: int) -> None:
        self.claimed += 1 if fields else 0
        await self._take(entry_id, fields, deliveries)

    async def _keep_fresh_loop(self) -> None:
        await self._ready.wait()
        await self._held.keep_fresh_loop(self.claim_idle / 3, self._report_stuck)

    async def _report_stuck(self) -> None:
        if self.stuck_after is not None:
            for entry_id, seconds in self._held.stuck(self.stuck_after):
                await self.report(StuckEntry(self.stream, entry_id, seconds))

    # -- shutting down --------------------------------------------------------------------

    async def close(self) -> None:
        """Acknowledge what was dispatched and write pending answers, then disconnect.

        Tries for up to ``close_timeout`` seconds; what is left unacknowledged is
        redelivered later. A group of its own (``group=None``) is destroyed.
        """
        start_task, self._start_task = self._start_task, None
        if start_task is not None and start_task is not asyncio.current_task() and not start_task.done():
            start_task.cancel()
            await asyncio.gather(start_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.close_timeout
        try:
            await self._replies.close(self.close_timeout)
        except asyncio.TimeoutError:
            pass
        await self._dead.close(deadline - loop.time())
        await self._held.close(max(0.0, deadline - loop.time()))
        client, self._redis = self._redis, None
        if client is None:
            return
        try:
            if self.own_group:
                remaining = max(0.1, deadline - loop.time())
                await asyncio.wait_for(client.xgroup_destroy(self.stream, self.group), remaining)
        except (asyncio.TimeoutError, *UNREACHABLE) as exc:
            logger.warning("%r: could not destroy its group %r: %s", self, self.group, exc)
        finally:
            await client.aclose()

    def __repr__(self) -> str:
        return f"<RedisStreamReceiver stream={self.stream!r} group={self.group!r} consumer={self.consumer!r}>"
