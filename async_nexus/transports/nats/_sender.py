"""The sending side: a handler that publishes the events it gets to a JetStream subject."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from ...codec import EventCodec
from ...consumers import EventConsumer
from ...errors import BadCall, BadValue, LoopStopped
from ...events import CORRELATION_ID, IN_REPLY_TO, REPLY_TO, Event
from .._retrying import check_positive
from ._common import Connection, Servers, check_publish_subject, server_list
from ._publisher import Publisher
from ._wire import make_wire


class JetStreamSender(EventConsumer):
    """A handler that publishes the events it gets to a NATS JetStream subject.

    Register it in the sending nexus for the types that should cross::

        sender = JetStreamSender("nats://localhost:4222", "orders.created")
        nexus.add_handler("order.*", sender)

    A stream must hold the subject: create it with :func:`ensure_stream`. The sender never
    creates one; while no stream answers, it keeps the events and retries.

    :meth:`handle` encodes the event and puts it in a buffer of ``max_buffer`` events
    (waiting while it is full: a slow or unreachable server slows the nexus instead of
    growing memory). A task publishes buffered events, up to ``max_pending_acks`` at once,
    and counts an event sent only when JetStream acknowledged it (its ``PubAck``): then a
    majority of the stream's replicas hold it. Each event gets a ``Nats-Msg-Id`` when it is
    buffered, unique to this sender and reused on every retry, so the server drops a
    retried publish that had reached the stream as a duplicate. Lost connections, servers
    restarting and streams without a leader are retried with backoff and logged to the
    ``async_nexus.nats`` logger; nothing buffered is dropped meanwhile. Events keep their
    order while nothing fails; a retry may put an event after ones sent later.

    A graceful stop of the nexus closes the sender (:meth:`close`), which publishes what is
    still buffered within ``close_timeout``; used without a nexus, close it yourself.

    :param servers: a ``nats://`` URL, or a list of the cluster's URLs.
    :param subject: the subject to publish to.
    :param reply_subject: where answers to requests sent through this sender should go: it
        is stamped as the ``reply-to`` header of each event carrying a ``correlation-id``
        (unless the event already names one). A stream must hold it, and a
        :class:`JetStreamReceiver` on that stream runs in the requesting nexus.
    :param codec: the wire format; a JSON :class:`~async_nexus.codec.EventCodec` by default.
    :param wire: ``"nexus"``: the body is the codec's encoding of the event, for a
        :class:`JetStreamReceiver` in another nexus. ``"raw"``: the body is the event's
        payload as JSON (a ``bytes`` payload as it is) and the event's headers are the
        message's NATS headers, so that any NATS client or framework (a plain nats-py
        subscriber, a FastStream handler) reads it as its own; the event's id, type and
        priority do not cross.
    :param max_buffer: at most this many events buffered and not yet acknowledged.
    :param max_pending_acks: at most this many publishes awaiting their acknowledgement.
    :param publish_timeout: how long one publish waits for its acknowledgement before it
        is retried.
    :param retry_initial: first delay after a failed publish, in seconds; it doubles up to
        ``retry_max``.
    :param close_timeout: how long :meth:`close` keeps trying to publish what is buffered.
    :param nats_options: passed to ``nats.connect`` (``user=``, ``password=``, ``tls=``, ...).
    :raises BadValue: (a :class:`ValueError`) a size or a delay that is not a positive
        number, an unknown ``wire``, or ``wire="raw"`` with a codec that does not write JSON.
    :raises BadCall: an empty subject or bad servers.
    """

    def __init__(
        self,
        servers: Servers,
        subject: str,
        *,
        reply_subject: str | None = None,
        codec: EventCodec | None = None,
        wire: str = "nexus",
        max_buffer: int = 10_000,
        max_pending_acks: int = 256,
        publish_timeout: float = 5.0,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        close_timeout: float = 10.0,
        **nats_options: Any,
    ) -> None:
        check_publish_subject("subject", subject)
        if reply_subject is not None:
            check_publish_subject("reply_subject", reply_subject)
        for name, value in {"max_buffer": max_buffer, "max_pending_acks": max_pending_acks}.items():
            check_positive(name, value, integer=True)
        numbers = {"publish_timeout": publish_timeout, "retry_initial": retry_initial,
                   "retry_max": retry_max, "close_timeout": close_timeout}  # fmt: skip
        for name, number in numbers.items():
            check_positive(name, number)
        self.servers = server_list(servers)
        self.subject = subject
        self.reply_subject = reply_subject
        self.wire = wire
        self.codec = codec if codec is not None else EventCodec()
        self._wire = make_wire(wire, self.codec)
        self.close_timeout = close_timeout
        what = f"JetStreamSender({subject!r})"
        backoff = (retry_initial, retry_max)
        self._connection = Connection(self.servers, what, backoff, nats_options)
        self._publisher = Publisher(
            self._connection, what=what, limit=max_buffer, window=max_pending_acks,
            publish_timeout=publish_timeout, backoff=backoff,
        )  # fmt: skip
        #: Events left unacknowledged when the sender was closed (``None``: not closed yet).
        self.left: int | None = None

    @property
    def pending(self) -> int:
        """Events handed over and not yet acknowledged by JetStream."""
        return self._publisher.pending

    @property
    def sent(self) -> int:
        """Events JetStream acknowledged since the sender was made."""
        return self._publisher.acknowledged

    @property
    def duplicates(self) -> int:
        """Acknowledged retries that the server had stored already, and so dropped."""
        return self._publisher.duplicates

    def message_id(self, serial: int) -> str:
        """The ``Nats-Msg-Id`` of the ``serial``-th event this sender buffered (from 1)."""
        return self._publisher.message_id(serial)

    def stamped(self, event: Any) -> Any:
        """``event`` as it is published: a request gets the ``reply-to`` header.

        A request is an event with a ``correlation-id`` header (and no ``in-reply-to``: an
        answer is no request). One that names no ``reply-to`` yet gets a copy with
        :attr:`reply_subject` in it; one forwarded from another process keeps its own.

        :raises BadCall: a request and no ``reply_subject``.
        """
        headers = event.headers if isinstance(event, Event) else None
        if headers and CORRELATION_ID in headers and REPLY_TO not in headers and IN_REPLY_TO not in headers:
            if self.reply_subject is None:
                raise BadCall(
                    f"event {event.id!r} of type {event.type!r} is a request (it has a "
                    f"{CORRELATION_ID!r} header) but JetStreamSender({self.subject!r}) has no "
                    "reply subject to send the answer to; pass reply_subject='...' (held by a "
                    "stream) and run a JetStreamReceiver on that stream in the requesting nexus"
                )
            event = copy.copy(event)
            event.headers = {**headers, REPLY_TO: self.reply_subject}
        return event

    async def handle(self, event: Any, queue: Any) -> None:
        """Encode ``event`` and buffer it for publishing, waiting while the buffer is full.

        :raises LoopStopped: the sender was closed.
        :raises BadCall: a request and no ``reply_subject`` (see :meth:`stamped`).
        :raises TypeError: the codec cannot encode the event (or :class:`ValueError`, as
            :meth:`EventCodec.encode <async_nexus.codec.EventCodec.encode>` says); with
            ``wire="raw"``, also headers that cannot be NATS headers (a line break in a
            value, a name with ``':'``).
        """
        publisher = self._publisher
        if publisher.closed:
            raise LoopStopped(f"JetStreamSender({self.subject!r}) is closed; it sends no more events")
        body, headers = self._wire.encode(self.stamped(event))
        client = self._connection.client
        if client is not None and client.is_connected and len(body) > client.max_payload:
            raise BadValue(
                f"event {getattr(event, 'id', '?')!r} encodes to {len(body)} bytes, more than "
                f"the server takes ({client.max_payload}, its max_payload)"
            )
        if publisher.has_room():  # the common case, without another coroutine per event
            publisher.put_nowait(self.subject, body, headers)
        else:
            await publisher.put(self.subject, body, headers)

    async def send(self, event: Event) -> None:
        """:meth:`handle` without a nexus: buffer ``event`` for publishing."""
        await self.handle(event, None)

    async def flush(self, timeout: float | None = None) -> None:
        """Return once every event handed over so far has been acknowledged by JetStream.

        :raises asyncio.TimeoutError: not all of them were within ``timeout`` seconds (they
            stay buffered and are still being retried).
        """
        await asyncio.wait_for(self._publisher.flush(), timeout)

    async def close(self) -> None:
        """Publish what is buffered (for up to ``close_timeout`` s), then disconnect.

        Events still unacknowledged when the time is up are logged as an error with their
        number, which :attr:`left` keeps. Handing the sender more events afterwards raises
        :class:`~async_nexus.errors.LoopStopped`.
        """
        try:
            self.left = await self._publisher.close(self.close_timeout)
        finally:
            await self._connection.close()

    async def __aenter__(self) -> JetStreamSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<JetStreamSender subject={self.subject!r} pending={self.pending}>"
