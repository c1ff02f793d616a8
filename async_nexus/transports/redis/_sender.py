"""The sending side: a handler that appends the events it gets to a stream."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import redis.asyncio as aioredis

from ...codec import EventCodec
from ...consumers import EventConsumer
from ...errors import BadCall, LoopStopped
from ...events import CORRELATION_ID, IN_REPLY_TO, REPLY_TO, Event
from .._retrying import check_positive
from ._common import EVENT_FIELD, Fields, check_name, check_options, connect
from ._writer import StreamWriter


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
    :raises BadValue: (a :class:`ValueError`) a size or a delay that is not a positive number.
    :raises BadCall: an empty stream name, or redis-py options the transport cannot work with.
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
        check_name("stream", stream)
        check_options(redis_options)
        if reply_stream is not None:
            check_name("reply_stream", reply_stream)
        if maxlen is not None:
            check_positive("maxlen", maxlen, integer=True)
        check_positive("batch_size", batch_size, integer=True)
        check_positive("buffer_size", buffer_size, integer=True)
        check_positive("retry_initial", retry_initial)
        check_positive("retry_max", retry_max)
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.reply_stream = reply_stream
        self.codec = codec if codec is not None else EventCodec()
        self.close_timeout = close_timeout
        self._options = dict(redis_options)
        self._redis: aioredis.Redis | None = None
        self._writer = StreamWriter(
            self._client,
            what=f"RedisStreamSender({stream!r})",
            batch_size=batch_size,
            limit=buffer_size,
            backoff=(retry_initial, retry_max),
            drop_refused=False,
        )

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = connect(self.url, self._options)
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
