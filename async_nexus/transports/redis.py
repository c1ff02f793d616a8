"""Redis Streams transport: events cross processes and machines, at least once.

- :class:`RedisStreamSender` is a handler in the sending nexus. It encodes each event with
  :class:`~async_nexus.codec.EventCodec` and appends it to a stream as one entry
  ``{"event": <encoded event>}``, pipelining ``XADD`` in batches from a bounded buffer.
- :class:`RedisStreamReceiver` is a producer in the receiving nexus. It reads the stream
  through a consumer group (``XREADGROUP``), distributes each event and acknowledges the
  entry (``XACK``) only once the event has been dispatched. Entries left pending by a
  consumer that died are claimed (``XAUTOCLAIM``) and dispatched again; malformed entries,
  and entries delivered too often without being acknowledged, go to a dead-letter stream.

Lost connections are retried with exponential backoff and logged to the
``async_nexus.redis`` logger; nothing a sender accepted is dropped while it waits.
``pip install 'async-nexus[redis]'`` installs redis-py, the only dependency.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import functools
import itertools
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ..codec import EventCodec
from ..consumers import EventConsumer
from ..errors import AsyncNexusError, BadCall, DecodeError, LoopStopped
from ..events import CORRELATION_ID, IN_REPLY_TO, REPLY_TO, Event, EventFactory
from ..sources import EventProducer

__all__ = [
    "EVENT_FIELD",
    "DeadLetteredEntry",
    "MalformedEntry",
    "RedisStreamReceiver",
    "RedisStreamSender",
    "UndeliverableEntry",
]

logger = logging.getLogger("async_nexus.redis")

#: The field of a stream entry that holds the encoded event.
EVENT_FIELD = b"event"

# What a failing command raises when Redis cannot be reached (redis-py wraps most socket
# errors, not all of them).
_UNREACHABLE = (RedisError, OSError)

# Longer than any blocking read, short enough to notice a peer gone silent.
_SOCKET_TIMEOUT = 10.0

# XACK and XCLAIM take this many ids per command at most.
_IDS_PER_COMMAND = 1000

Fields = dict[bytes, bytes]


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


def _check_options(options: Mapping[str, Any]) -> None:
    if options.get("decode_responses"):
        raise BadCall("the Redis transport reads raw bytes; do not pass decode_responses=True")


def _connect(url: str, options: Mapping[str, Any]) -> aioredis.Redis:
    """A client for ``url``; failures surface at once so our own backoff decides what next."""
    settings: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": 5.0,
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_keepalive": True,
        **options,
        "decode_responses": False,
    }
    return aioredis.from_url(url, **settings)


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise BadCall(f"{what} must be a non-empty str, got {value!r}")


def _check_positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


async def _stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    The cancellation is repeated while a task runs on: on Python 3.11, ``asyncio.wait_for``
    (which redis-py uses around socket writes) loses a cancellation that arrives just as
    the operation it waits for completes.
    """
    pending = {task for task in tasks if task is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class _Backoff:
    """Exponential backoff with jitter between attempts, logged while it lasts."""

    def __init__(self, what: str, initial: float, maximum: float) -> None:
        self.what = what
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    async def failed(self, exc: BaseException) -> None:
        self.failures += 1
        delay = min(self.maximum, self.initial * 2 ** min(self.failures - 1, 30))
        delay *= random.uniform(0.75, 1.0)
        logger.warning(
            "%s failed (%s: %s); attempt %d, retrying in %.2f s",
            self.what,
            type(exc).__name__,
            exc,
            self.failures,
            delay,
        )
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        if self.failures:
            logger.info("%s works again after %d failed attempt(s)", self.what, self.failures)
            self.failures = 0


class _StreamWriter:
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
            await _stop(task)
            if self._buffer:
                logger.error(
                    "%s: closed with %d entries not written (Redis unreachable for %s s)",
                    self._what,
                    len(self._buffer),
                    timeout,
                )

    async def _run(self) -> None:
        backoff = _Backoff(self._what, *self._backoff)
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
            except _UNREACHABLE as exc:
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


class RedisStreamSender(EventConsumer):
    """A handler that appends the events it gets to a Redis stream.

    Register it in the sending nexus for the types that should cross::

        sender = RedisStreamSender("redis://localhost:6379/0", "orders")
        nexus.add_handler("order.*", sender)

    A graceful stop of that nexus closes the sender (:meth:`close`), which writes what is
    still buffered; used without a nexus, close it yourself.

    :meth:`handle` encodes the event and puts it in a buffer of ``buffer_size`` entries
    (waiting while the buffer is full: Redis being slow or away slows the nexus instead of
    growing memory); a writer task appends buffered entries in pipelined batches of up to
    ``batch_size``. :meth:`flush` returns once every event handed over before it is in
    Redis (``XADD`` returned). Events keep their order per sender.

    :param url: a redis-py URL: ``redis://[[user]:password@]host:port/db``, ``rediss://``
        for TLS, ``unix://``.
    :param stream: the stream to append to.
    :param maxlen: trim the stream to about this many entries (``MAXLEN ~``); ``None``
        (the default) keeps every entry.
    :param reply_stream: where answers to requests sent through this sender should go: it
        is stamped as the ``reply-to`` header of each event carrying a ``correlation-id``
        (unless the event already names one). Run a :class:`RedisStreamReceiver` on it.
    :param codec: the wire format; a JSON :class:`~async_nexus.codec.EventCodec` by default.
    :param retry_initial: first delay after a failed write, in seconds; it doubles up to
        ``retry_max``.
    :param close_timeout: how long :meth:`close` keeps trying to write what is buffered.
    :param redis_options: passed to ``redis.asyncio.from_url`` (``password=``,
        ``ssl_ca_certs=``, ``socket_timeout=``, ...).
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        maxlen: int | None = None,
        batch_size: int = 500,
        buffer_size: int = 10_000,
        reply_stream: str | None = None,
        codec: EventCodec | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
        close_timeout: float = 10.0,
        **redis_options: Any,
    ) -> None:
        _check_name("stream", stream)
        _check_options(redis_options)
        if reply_stream is not None:
            _check_name("reply_stream", reply_stream)
        if maxlen is not None:
            _check_positive("maxlen", maxlen, integer=True)
        _check_positive("batch_size", batch_size, integer=True)
        _check_positive("buffer_size", buffer_size, integer=True)
        _check_positive("retry_initial", retry_initial)
        _check_positive("retry_max", retry_max)
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.reply_stream = reply_stream
        self.codec = codec if codec is not None else EventCodec()
        self.close_timeout = close_timeout
        self._options = dict(redis_options)
        self._redis: aioredis.Redis | None = None
        self._writer = _StreamWriter(
            self._client,
            what=f"RedisStreamSender({stream!r})",
            batch_size=batch_size,
            limit=buffer_size,
            backoff=(retry_initial, retry_max),
            drop_refused=False,
        )

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = _connect(self.url, self._options)
        return self._redis

    @property
    def pending(self) -> int:
        """Events handed over and not yet written to Redis."""
        return self._writer.pending

    @property
    def sent(self) -> int:
        """Events written to Redis (``XADD`` returned) since the sender was made."""
        return self._writer.written

    def entry(self, event: Event) -> Fields:
        """The stream entry ``event`` becomes: ``{b"event": <encoded event>}``.

        :raises BadCall: the event is a request (it carries a ``correlation-id`` header and
            no ``reply-to``) and the sender has no ``reply_stream``.
        :raises TypeError: the codec cannot encode the event (or :class:`ValueError`, as
            :meth:`EventCodec.encode <async_nexus.codec.EventCodec.encode>` says).
        """
        headers = event.headers if isinstance(event, Event) else None
        if headers and CORRELATION_ID in headers and REPLY_TO not in headers and IN_REPLY_TO not in headers:
            if self.reply_stream is None:
                raise BadCall(
                    f"event {event.id!r} of type {event.type!r} is a request (it has a "
                    f"{CORRELATION_ID!r} header) but RedisStreamSender({self.stream!r}) has no "
                    "reply stream to send the answer to; pass reply_stream='...' and run a "
                    "RedisStreamReceiver on that stream in the requesting nexus"
                )
            event = copy.copy(event)
            event.headers = {**headers, REPLY_TO: self.reply_stream}
        return {EVENT_FIELD: self.codec.encode(event)}

    async def handle(self, event: Any, queue: Any) -> None:
        """Encode ``event`` and buffer it for writing, waiting while the buffer is full.

        :raises LoopStopped: the sender was closed.
        :raises BadCall: a request and no ``reply_stream`` (see :meth:`entry`).
        """
        writer = self._writer
        if writer.closed:
            raise LoopStopped(f"RedisStreamSender({self.stream!r}) is closed; it sends no more events")
        fields = self.entry(event)
        if writer.has_room():  # the common case, without another coroutine per event
            writer.put_nowait(self.stream, fields, self.maxlen)
        else:
            await writer.put(self.stream, fields, self.maxlen)

    async def send(self, event: Event) -> None:
        """:meth:`handle` without a nexus: buffer ``event`` for writing."""
        await self.handle(event, None)

    async def flush(self, timeout: float | None = None) -> None:
        """Return once every event handed over so far has been written to Redis.

        :raises asyncio.TimeoutError: not all of them were written within ``timeout`` seconds
            (they stay buffered and are still being retried).
        """
        await asyncio.wait_for(self._writer.flush(), timeout)

    async def close(self) -> None:
        """Write what is buffered (for up to ``close_timeout`` s), then disconnect.

        Events still unwritten when the time is up are logged as lost. Handing the sender
        more events afterwards raises :class:`~async_nexus.errors.LoopStopped`.
        """
        try:
            await self._writer.close(self.close_timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            client, self._redis = self._redis, None
            if client is not None:
                await client.aclose()

    async def __aenter__(self) -> RedisStreamSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RedisStreamSender stream={self.stream!r} pending={self.pending}>"


def _entries(response: Any) -> list[tuple[bytes, Fields]]:
    """The entries of an XREADGROUP reply for one stream, in RESP2 or RESP3 shape."""
    if not response:
        return []
    if isinstance(response, Mapping):  # RESP3: {stream: [[entry, ...]]}
        found: list[tuple[bytes, Fields]] = []
        for item in next(iter(response.values())):
            if isinstance(item, tuple):
                found.append(item)
            else:
                found.extend(item)
        return found
    return list(response[0][1])


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
    has been dispatched in every nexus that took it, and after any answers its handlers
    gave have been written. At start the receiver dispatches again what its consumer name
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
    is delivered again (its consumer's history, or a claim), the receiver asks Redis how
    often the group has delivered it. Past ``max_deliveries`` it is dead-lettered as above,
    and reported as :class:`UndeliverableEntry`.

    **Requests.** An event with ``correlation-id`` and ``reply-to`` headers is distributed
    with a reply route: an answer given by its handler is written to the stream named by
    ``reply-to``.

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
    :param dead_letter_stream: where malformed entries go; ``f"{stream}:dead"`` by default.
    :param max_deliveries: how many times an entry may be delivered without being
        acknowledged before it is dead-lettered; ``None``: no limit.
    :param reply_maxlen: approximate length bound of the reply streams answers are added to.
    :param codec: the wire format; a JSON :class:`~async_nexus.codec.EventCodec` by default.
        Register :class:`~async_nexus.NamedEvent` classes with it to receive them as such.
    :param retry_initial: first delay after a failed Redis command, in seconds; it doubles
        up to ``retry_max``.
    :param close_timeout: how long :meth:`close` keeps trying to acknowledge and answer.
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
        event_factory: EventFactory | None = None,
        **redis_options: Any,
    ) -> None:
        super().__init__(event_factory)
        _check_name("stream", stream)
        _check_options(redis_options)
        optional_names = {"group": group, "consumer": consumer, "dead_letter_stream": dead_letter_stream}
        for what, name in optional_names.items():
            if name is not None:
                _check_name(what, name)
        _check_positive("max_in_flight", max_in_flight, integer=True)
        _check_positive("read_count", read_count, integer=True)
        _check_positive("block", block)
        _check_positive("claim_idle", claim_idle)
        if claim_interval is not None:
            _check_positive("claim_interval", claim_interval)
        if max_deliveries is not None:
            _check_positive("max_deliveries", max_deliveries, integer=True)
        _check_positive("retry_initial", retry_initial)
        _check_positive("retry_max", retry_max)
        timeout = redis_options.get("socket_timeout", _SOCKET_TIMEOUT)
        if timeout is not None and timeout <= block:
            raise BadCall(
                f"socket_timeout={timeout} would cut every blocking read of block={block} s; "
                "make socket_timeout longer than block"
            )
        self.url = url
        self.stream = stream
        self.consumer = consumer if consumer is not None else _default_consumer()
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
        self._backoff = (retry_initial, retry_max)
        self._options = dict(redis_options)
        self._redis: aioredis.Redis | None = None
        self._in_flight: set[bytes] = set()
        self._acks: list[bytes] = []
        self._acks_waiting = asyncio.Event()
        self._acked = asyncio.Event()
        self._room = asyncio.Event()
        self._ready = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[Any] | None = None
        self._replies = self._new_reply_writer()
        #: Entries distributed (read or claimed, decoded) since the receiver was made.
        self.received = 0
        #: Entries acknowledged after dispatch.
        self.acknowledged = 0
        #: Entries taken over from other consumers (or from an earlier run of this one).
        self.claimed = 0
        #: Entries moved to the dead-letter stream: malformed, or delivered too often.
        self.dead_lettered = 0

    def _new_reply_writer(self) -> _StreamWriter:
        return _StreamWriter(
            self._client,
            what=f"RedisStreamReceiver({self.stream!r}) replies",
            batch_size=500,
            limit=None,
            backoff=self._backoff,
            drop_refused=True,
        )

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = _connect(self.url, self._options)
        return self._redis

    @property
    def in_flight(self) -> int:
        """Entries read (or claimed) and not yet acknowledged."""
        return len(self._in_flight)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the group exists and the receiver reads: entries added from now on reach it."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- the task the nexus runs ------------------------------------------------------------

    async def start(self) -> None:
        """Create the group if needed, then read, claim and dispatch until cancelled."""
        self._start_task = asyncio.current_task()
        if self._replies.closed:
            self._replies = self._new_reply_writer()
        if self._acker is None:
            self._acker = asyncio.create_task(self._ack_loop(), name=f"{self!r} acks")
        # Redis is spoken to only in child tasks: this task awaits nothing that could lose
        # the nexus's cancellation (see _stop).
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
            await _stop(*children)

    async def _create_group(self) -> None:
        backoff = _Backoff(f"{self!r}: creating group", *self._backoff)
        while True:
            try:
                await self._client().xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" in str(exc):
                    break
                await backoff.failed(exc)
            except _UNREACHABLE as exc:
                await backoff.failed(exc)
            else:
                logger.info("created group %r on stream %r at %s", self.group, self.stream, self.start_id)
                break
        backoff.succeeded()
        self._ready.set()

    async def _read_loop(self) -> None:
        backoff = _Backoff(f"{self!r}: reading", *self._backoff)
        block_ms = max(1, int(self.block * 1000))
        # Own history first: what this consumer name read and did not acknowledge, at start
        # and after a lost connection (a read whose reply was lost is pending under our name).
        history: bytes | None = b"0"
        await self._create_group()
        while True:
            room = await self._wait_room()
            count = min(room, self.read_count)
            try:
                if history is not None:
                    response = await self._client().xreadgroup(
                        self.group, self.consumer, {self.stream: history}, count=count
                    )
                    entries = _entries(response)
                    deliveries = await self._deliveries(entries)
                else:
                    response = await self._client().xreadgroup(
                        self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
                    )
                    entries, deliveries = _entries(response), {}
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the server lost its data, or someone destroyed the group
                    logger.warning("%r: group %r is gone; creating it again", self, self.group)
                    await self._create_group()
                    history = b"0"
                    continue
                await backoff.failed(exc)
                continue
            except _UNREACHABLE as exc:
                await backoff.failed(exc)
                history = b"0"
                continue
            backoff.succeeded()
            if history is not None:
                if not entries:
                    history = None
                    continue
                history = entries[-1][0]
            for entry_id, fields in entries:
                await self._take(entry_id, fields, deliveries.get(entry_id, 1))

    async def _deliveries(self, entries: list[tuple[bytes, Fields]]) -> dict[bytes, int]:
        """How many times the group has delivered each of ``entries``, delivered before."""
        ids = [entry_id for entry_id, fields in entries if fields and entry_id not in self._in_flight]
        if self.max_deliveries is None or not ids:
            return {}
        pipe = self._client().pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        found = await pipe.execute()
        return {row["message_id"]: int(row["times_delivered"]) for rows in found for row in rows}

    async def _wait_room(self) -> int:
        while len(self._in_flight) >= self.max_in_flight:
            self._room.clear()
            await self._room.wait()
        return self.max_in_flight - len(self._in_flight)

    async def _take(self, entry_id: bytes, fields: Fields, deliveries: int = 1) -> None:
        """Dispatch one entry read or claimed, unless it is already being dispatched here."""
        if entry_id in self._in_flight:
            return
        if not fields:  # trimmed from the stream while it was pending: nothing to deliver
            self._acks.append(entry_id)
            self._acks_waiting.set()
            return
        if self.max_deliveries is not None and deliveries > self.max_deliveries:
            reason = f"delivered {deliveries} times without being acknowledged"
            await self._dead_letter(entry_id, fields, f"{reason} (max_deliveries={self.max_deliveries})")
            await self.report(
                UndeliverableEntry(self.stream, entry_id, deliveries, fields, self.dead_letter_stream)
            )
            return
        raw = fields.get(EVENT_FIELD)
        if raw is None:
            names = ", ".join(repr(name.decode("utf-8", "replace")) for name in fields)
            await self._malformed(entry_id, fields, f"no 'event' field; it has {names}")
            return
        try:
            event = self.codec.decode(raw)
        except DecodeError as exc:
            await self._malformed(entry_id, fields, str(exc))
            return
        self._in_flight.add(entry_id)
        self.received += 1
        reply = None
        headers = event.headers
        if headers and CORRELATION_ID in headers and REPLY_TO in headers:
            reply = functools.partial(self._reply, headers[REPLY_TO])
        taken = await self.distribute_event(
            event, on_dispatched=functools.partial(self._dispatched, entry_id), reply=reply
        )
        if not taken:  # no nexus runs any more: leave it pending for redelivery
            self._in_flight.discard(entry_id)
            self._room.set()

    def _dispatched(self, entry_id: bytes, event: Event) -> None:
        self._acks.append(entry_id)
        self._acks_waiting.set()

    def _reply(self, stream: str, answer: Event) -> None:
        self._replies.put_nowait(stream, {EVENT_FIELD: self.codec.encode(answer)}, self.reply_maxlen)

    async def _malformed(self, entry_id: bytes, fields: Fields, reason: str) -> None:
        await self._dead_letter(entry_id, fields, reason)
        # The error hook logs it (by default) or does what the program wants with it.
        await self.report(MalformedEntry(self.stream, entry_id, reason, fields, self.dead_letter_stream))

    async def _dead_letter(self, entry_id: bytes, fields: Fields, reason: str) -> None:
        record: dict[bytes, bytes | str] = {
            b"reason": reason,
            b"stream": self.stream,
            b"id": entry_id,
            b"group": self.group,
            b"consumer": self.consumer,
        }
        for name, value in fields.items():
            record[b"field:" + name] = value
        backoff = _Backoff(f"{self!r}: dead-lettering", *self._backoff)
        while True:
            try:
                pipe = self._client().pipeline(transaction=True)
                pipe.xadd(self.dead_letter_stream, record)  # type: ignore[arg-type]
                pipe.xack(self.stream, self.group, entry_id)
                await pipe.execute()
                break
            except _UNREACHABLE as exc:
                await backoff.failed(exc)
        backoff.succeeded()
        self.dead_lettered += 1

    async def _ack_loop(self) -> None:
        backoff = _Backoff(f"{self!r}: acknowledging", *self._backoff)
        acks = self._acks
        while True:
            if not acks:
                self._acks_waiting.clear()
                await self._acks_waiting.wait()
                continue
            ids = acks[:_IDS_PER_COMMAND]
            try:
                if self._replies.pending:
                    await self._replies.flush()  # answers are out before their requests are acknowledged
                await self._client().xack(self.stream, self.group, *ids)
            except _UNREACHABLE as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            del acks[: len(ids)]
            self._in_flight.difference_update(ids)
            self.acknowledged += len(ids)
            self._room.set()
            if not acks:
                self._acked.set()

    async def _all_acknowledged(self) -> None:
        while self._acks:
            self._acked.clear()
            await self._acked.wait()

    async def _claim_loop(self) -> None:
        await self._ready.wait()
        while True:
            try:
                await self._claim()
            except _UNREACHABLE as exc:
                # The reader logs and retries lost connections; here the next round will do.
                logger.debug("%r: claiming failed: %s", self, exc)
            await asyncio.sleep(self.claim_interval)

    async def _claim(self) -> None:
        min_idle = max(1, int(self.claim_idle * 1000))
        cursor: bytes | str = "0-0"
        while True:
            room = self.max_in_flight - len(self._in_flight)
            if room <= 0:
                return  # busy enough: what is pending waits for the next round
            response = await self._client().xautoclaim(
                self.stream, self.group, self.consumer, min_idle, start_id=cursor, count=room
            )
            cursor = response[0]
            claimed = [(i, fields) for i, fields in response[1] if i is not None and i not in self._in_flight]
            deliveries = await self._deliveries(claimed)
            for entry_id, fields in claimed:
                self.claimed += 1
                await self._take(entry_id, fields, deliveries.get(entry_id, 1))
            if cursor in (b"0-0", "0-0"):
                return

    async def _keep_fresh_loop(self) -> None:
        # Claiming our own in-flight entries resets their idle time, so other consumers
        # (whose claim_idle counts from it) leave entries we are still dispatching alone,
        # however long they wait in the nexus queue. A task of its own: the claimer may be
        # held up by a full nexus queue, which is exactly when this matters.
        await self._ready.wait()
        while True:
            await asyncio.sleep(self.claim_idle / 3)
            ids: list[Any] = list(self._in_flight)
            try:
                for start in range(0, len(ids), _IDS_PER_COMMAND):
                    chunk = ids[start : start + _IDS_PER_COMMAND]
                    await self._client().xclaim(self.stream, self.group, self.consumer, 0, chunk, justid=True)
            except _UNREACHABLE as exc:
                logger.debug("%r: keeping entries fresh failed: %s", self, exc)

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
        acker, self._acker = self._acker, None
        if acker is not None:
            if self._acks:
                try:
                    await asyncio.wait_for(self._all_acknowledged(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    pass
            await _stop(acker)
        if self._acks:
            logger.warning(
                "%r: closed with %d dispatched entries not acknowledged; they will be delivered again",
                self,
                len(self._acks),
            )
        self._acks.clear()
        self._in_flight.clear()
        client, self._redis = self._redis, None
        if client is None:
            return
        try:
            if self.own_group:
                remaining = max(0.1, deadline - loop.time())
                await asyncio.wait_for(client.xgroup_destroy(self.stream, self.group), remaining)
        except (asyncio.TimeoutError, *_UNREACHABLE) as exc:
            logger.warning("%r: could not destroy its group %r: %s", self, self.group, exc)
        finally:
            await client.aclose()

    def __repr__(self) -> str:
        return f"<RedisStreamReceiver stream={self.stream!r} group={self.group!r} consumer={self.consumer!r}>"
