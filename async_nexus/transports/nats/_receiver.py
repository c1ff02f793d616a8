"""The receiving side: a producer that pulls from a JetStream consumer into its nexus."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from ...codec import EventCodec
from ...errors import BadCall, DecodeError
from ...events import CORRELATION_ID, REPLY_TO, Event, EventFactory
from ...sources import EventProducer
from .._retrying import check_positive, stop_tasks
from ._answers import Answers
from ._common import (
    UNREACHABLE,
    Backoff,
    Connection,
    Servers,
    check_publish_subject,
    check_stream_name,
    check_subject,
    logger,
    server_list,
)
from ._dead_letters import DeadLetters, StuckMessage
from ._held import NAK, Held
from ._puller import Puller
from ._wire import make_wire


class JetStreamReceiver(EventProducer):
    """A producer that pulls a JetStream stream through a consumer into its nexus.

    ::

        receiver = JetStreamReceiver("nats://localhost:4222", "ORDERS", group="billing")
        nexus.add_producer(receiver)

    The stream must exist (:func:`ensure_stream`); the receiver never creates one.

    **Competing or broadcast** is decided by ``group``, the name of a durable pull consumer
    on the stream, which the receiver creates if it is missing. Receivers that name the
    same group share its messages: each goes to one of them. Receivers with different
    groups each get every message. A new group starts at the beginning of the stream.
    With ``group=None`` the receiver makes an ephemeral consumer of its own that gets the
    messages published after it started, and deletes it when it closes.

    **At least once.** The receiver fetches no more than it has room for: at most
    ``max_in_flight`` messages are held and not yet settled. A message's event is
    distributed to the nexus, and the message follows the outcome of its handling:

    - handled (or filtered): acknowledged (``ack``);
    - still being handled, or waiting for a retry: kept alive (``in_progress``, every third
      of ``ack_wait``), so that it is not delivered to another receiver meanwhile;
    - finally failed (after its handler's retries; or that no handler took): a record is
      published to ``dead_letter_subject`` and, once the dead-letter stream acknowledged
      it, the message is terminated (``term``): it is never delivered again;
    - not taken because the nexus stopped, or still held when the receiver closes: handed
      back (``nak``) to be delivered again at once, to whichever receiver of the group asks;
    - held by a receiver whose process died: delivered again once ``ack_wait`` has passed.

    A **dead-letter record** has the original body as its body, and the headers
    ``Nexus-Reason``, ``Nexus-Stream``, ``Nexus-Sequence``, ``Nexus-Deliveries``,
    ``Nexus-Consumer``, ``Nexus-Subject`` and, for a failed handling,
    ``Nexus-Exception``, ``Nexus-Message`` and ``Nexus-Attempts``. Its ``Nats-Msg-Id`` is
    made of the stream, the group and the sequence, so a record published twice is stored
    once. Messages that are no event (a :class:`~async_nexus.errors.DecodeError`) are
    recorded, terminated and reported to the error hook as :class:`MalformedMessage`;
    messages delivered more than ``max_deliveries`` times as :class:`UndeliverableMessage`.
    Receiving goes on.

    A message held longer than ``stuck_after`` seconds is reported once as
    :class:`StuckMessage`: its handler may hang.

    **Requests.** An event with ``correlation-id`` and ``reply-to`` headers (a
    :class:`JetStreamSender` with ``reply_subject`` stamps them) is distributed with a reply
    route: its handler's answer is published to the subject ``reply-to`` names, which a
    stream must hold, and the request is acknowledged only once the answer's publish was
    (``Nats-Msg-Id`` of stream, group, sequence and answer: an answer published again
    after a redelivery is stored once).

    Lost connections and server restarts are retried with backoff and logged to the
    ``async_nexus.nats`` logger.

    :param servers: a ``nats://`` URL, or a list of the cluster's URLs.
    :param stream: the stream to read.
    :param subject: read only the messages of this subject (a filter, wildcards allowed);
        ``None``: all of the stream's.
    :param group: the durable consumer (see above); ``None``: an ephemeral one of its own.
    :param codec: the wire format; a JSON :class:`~async_nexus.codec.EventCodec` by default.
        Register :class:`~async_nexus.NamedEvent` classes with it to receive them as such.
    :param wire: ``"nexus"``: bodies are the codec's encoding of events, as a
        :class:`JetStreamSender` writes them. ``"raw"``: messages from any NATS client or
        framework; each becomes an event whose ``type`` is the message's subject, whose
        ``payload`` is the body decoded as JSON when it is JSON and the body's ``bytes``
        otherwise, whose ``headers`` are the message's NATS headers, and whose ``id`` is
        ``"<stream>:<sequence>"``, the same on every redelivery. Answers to requests are
        sent in the ``"nexus"`` wire either way.
    :param max_in_flight: at most this many messages fetched and not yet settled.
    :param fetch_batch: at most this many messages per fetch.
    :param fetch_wait: how long one fetch waits for messages, in seconds.
    :param ack_wait: seconds the server waits for an acknowledgement (or a sign of life)
        before it delivers a message again; set on a consumer the receiver creates.
    :param max_deliveries: how many times a message may be delivered without being
        acknowledged before it is dead-lettered; ``None``: no limit.
    :param dead_letter_subject: where dead-letter records go; ``f"{stream}.dead"`` by
        default. A stream must hold it (``ensure_stream(..., dead_letter_subject=...)``):
        the receiver checks at start, and does not start without one.
    :param retry_initial: first delay after a failed call, in seconds; it doubles up to
        ``retry_max``.
    :param close_timeout: how long :meth:`close` keeps trying to settle what it holds.
    :param stuck_after: seconds a message may be held before it is reported; ``None``: never.
    :param nats_options: passed to ``nats.connect``.
    """

    def __init__(
        self,
        servers: Servers,
        stream: str,
        *,
        subject: str | None = None,
        group: str | None = None,
        codec: EventCodec | None = None,
        wire: str = "nexus",
        max_in_flight: int = 1000,
        fetch_batch: int = 100,
        fetch_wait: float = 1.0,
        ack_wait: float = 30.0,
        max_deliveries: int | None = 10,
        dead_letter_subject: str | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        close_timeout: float = 5.0,
        stuck_after: float | None = 300.0,
        event_factory: EventFactory | None = None,
        **nats_options: Any,
    ) -> None:
        super().__init__(event_factory)
        check_stream_name("stream", stream)
        if group is not None:
            check_stream_name("group", group)
        if subject is not None:
            check_subject("subject", subject)
        if dead_letter_subject is not None:
            check_publish_subject("dead_letter_subject", dead_letter_subject)
        for name, value in {"max_in_flight": max_in_flight, "fetch_batch": fetch_batch}.items():
            check_positive(name, value, integer=True)
        if max_deliveries is not None:
            check_positive("max_deliveries", max_deliveries, integer=True)
        numbers = {"fetch_wait": fetch_wait, "ack_wait": ack_wait, "retry_initial": retry_initial,
                   "retry_max": retry_max, "close_timeout": close_timeout}  # fmt: skip
        if stuck_after is not None:
            numbers["stuck_after"] = stuck_after
        for name, number in numbers.items():
            check_positive(name, number)
        self.servers = server_list(servers)
        self.stream = stream
        self.subject = subject
        self.group = group
        self.wire = wire
        self.codec = codec if codec is not None else EventCodec()
        self._wire = make_wire(wire, self.codec)
        self.max_in_flight = max_in_flight
        self.fetch_batch = fetch_batch
        self.fetch_wait = fetch_wait
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        self.dead_letter_subject = (
            dead_letter_subject if dead_letter_subject is not None else f"{stream}.dead"
        )
        self.close_timeout = close_timeout
        self.stuck_after = stuck_after
        #: The consumer's name on the server: ``group``, or a made-up one for ``group=None``.
        self.consumer = group if group is not None else f"nexus-{uuid.uuid4().hex}"
        self._backoff = (retry_initial, retry_max)
        what = repr(self)
        self._connection = Connection(self.servers, what, self._backoff, nats_options)
        self._held = Held(limit=max_in_flight, what=what)
        self._dead = DeadLetters(
            self._connection, self._held, consumer=self.consumer,
            dead_letter_subject=self.dead_letter_subject, backoff=self._backoff, what=what,
            on_recorded=self._recorded,
        )  # fmt: skip
        self._answers = Answers(
            self._connection, self._held, stream=stream, consumer=self.consumer,
            backoff=self._backoff, what=what,
        )  # fmt: skip
        self._ready = asyncio.Event()
        self._puller: Puller | None = None
        self._fetcher: asyncio.Task[None] | None = None
        # The fetcher stops at its next turn; whether a fetch (a pull request) is under way.
        self._stopping = False
        self._fetching = False
        #: Messages distributed (fetched, decoded) since the receiver was made.
        self.received = 0
        #: Messages recorded in the dead letters: malformed, delivered too often, or failed.
        self.dead_lettered = 0

    @property
    def in_flight(self) -> int:
        """Messages fetched and not yet settled."""
        return len(self._held)

    @property
    def acknowledged(self) -> int:
        """Messages acknowledged after dispatch."""
        return self._held.acknowledged

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the consumer exists and the receiver fetches from it."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    # -- the task the nexus runs ------------------------------------------------------------

    async def start(self) -> None:
        """Check the streams, create or check the consumer, then fetch and dispatch until cancelled.

        :raises BadCall: the stream, or a stream for the dead-letter subject, does not
            exist; or the group exists with another subject filter.
        """
        self._stopping = False
        fetcher = self._fetcher = asyncio.create_task(self._run(), name=f"{self!r} fetches")
        try:
            # Shielded: a fetch cut off leaves its pull request waiting on the server, which
            # (before 2.10) would send the messages this receiver hands back as it closes to
            # that dead request, where they would wait out ack_wait. The fetcher is told to
            # stop instead, and close() lets the fetch under way end.
            await asyncio.shield(fetcher)
        except asyncio.CancelledError:
            self._stopping = True
            if not self._fetching:
                fetcher.cancel()
            raise

    async def _run(self) -> None:
        watcher = None
        try:
            self._puller, ack_wait = await self._subscribe()
            self._held.keep_alive(ack_wait / 3)
            if self.stuck_after is not None:
                watcher = asyncio.create_task(self._watch_stuck(self.stuck_after))
            self._ready.set()
            await self._fetch_loop(self._puller)
        finally:
            self._ready.clear()
            await stop_tasks(watcher)
            await self._held.stop_keeping_alive()

    async def _watch_stuck(self, seconds: float) -> None:
        """Report each message held ``seconds`` or longer, once, looking a few times as often."""
        while True:
            await asyncio.sleep(min(seconds / 4, 10.0))
            for sequence, held_for in self._held.stuck(seconds):
                await self.report(StuckMessage(self.stream, sequence, held_for))

    async def _subscribe(self) -> tuple[Puller, float]:
        """What pulls from the consumer, and the ``ack_wait`` the consumer has."""
        backoff = Backoff(f"{self!r}: setting up its consumer", *self._backoff)
        while True:
            try:
                client = await self._connection.get()
                js = client.jetstream()
                await self._check_streams(js)
                info = await self._consumer_info(js)
                puller = Puller(client, self.stream, self.consumer, wait=self.fetch_wait)
                await puller.open()
            except BadCall:
                raise
            except UNREACHABLE as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            return puller, float(info.config.ack_wait or self.ack_wait)

    async def _check_streams(self, js: Any) -> None:
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            raise BadCall(
                f"{self!r}: stream {self.stream!r} does not exist; create it with "
                f"ensure_stream(servers, {self.stream!r}, subjects, dead_letter_subject=...)"
            ) from None
        try:
            await js.find_stream_name_by_subject(self.dead_letter_subject)
        except nats.js.errors.NotFoundError:
            raise BadCall(
                f"{self!r}: no stream holds the dead-letter subject {self.dead_letter_subject!r}, so "
                "messages that cannot be delivered would have nowhere to go; create one with "
                f"ensure_stream(servers, {self.stream!r}, subjects, "
                f"dead_letter_subject={self.dead_letter_subject!r})"
            ) from None

    async def _consumer_info(self, js: Any) -> api.ConsumerInfo:
        if self.group is not None:
            try:
                info: api.ConsumerInfo = await js.consumer_info(self.stream, self.group)
            except nats.js.errors.NotFoundError:
                pass
            else:
                self._check_consumer(info.config)
                return info
        config = api.ConsumerConfig(
            durable_name=self.group,
            name=self.consumer,
            deliver_policy=api.DeliverPolicy.ALL if self.group is not None else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            # The receiver counts deliveries itself: a message past max_deliveries is
            # dead-lettered, which the server's own limit would not do.
            max_deliver=-1,
            filter_subject=self.subject,
            max_ack_pending=-1,
            inactive_threshold=None if self.group is not None else max(60.0, 4 * self.ack_wait),
        )
        created: api.ConsumerInfo = await js.add_consumer(self.stream, config)
        logger.info("%r: created consumer %r on stream %r", self, self.consumer, self.stream)
        return created

    def _check_consumer(self, config: api.ConsumerConfig) -> None:
        if (config.filter_subject or None) != self.subject or config.ack_policy != api.AckPolicy.EXPLICIT:
            raise BadCall(
                f"{self!r}: group {self.group!r} exists on stream {self.stream!r} with subject filter "
                f"{config.filter_subject!r} and ack policy {getattr(config.ack_policy, 'value', None)!r}; "
                f"this receiver asks for {self.subject!r} and 'explicit'. Use another group name, or "
                "delete the consumer on purpose"
            )
        if config.ack_wait is not None and abs(config.ack_wait - self.ack_wait) > 1e-3:
            logger.warning(
                "%r: group %r keeps its ack_wait of %s s (this receiver asked for %s s)",
                self, self.group, config.ack_wait, self.ack_wait,
            )  # fmt: skip

    async def _fetch_loop(self, puller: Puller) -> None:
        backoff = Backoff(f"{self!r}: fetching", *self._backoff)
        while True:
            if self._stopping:
                if not puller.pulling:
                    break
                room = 0  # no new pull; take what the one under way still brings
            else:
                room = min(await self._held.wait_room(), self.fetch_batch)
                if self._stopping:
                    continue
            self._fetching = True
            try:
                msgs = await puller.pull(room)
            except UNREACHABLE as exc:
                await backoff.failed(exc)
                continue
            finally:
                self._fetching = False
            backoff.succeeded()
            for msg in msgs:  # when stopping, each is handed back (nak) by _take
                await self._take(msg)

    async def _take(self, msg: Msg) -> None:
        """Dispatch one message, unless it is held already or is a dead letter."""
        meta = msg.metadata
        sequence = meta.sequence.stream
        if sequence in self._held:
            return  # delivered again while we still handle it: keep the first
        if self.max_deliveries is not None and meta.num_delivered > self.max_deliveries:
            await self.report(await self._dead.undeliverable(msg, self.max_deliveries))
            self.dead_lettered += 1
            return
        try:
            event = self._wire.decode(msg.subject, msg.data, msg.headers, f"{self.stream}:{sequence}")
        except DecodeError as exc:
            error = await self._dead.malformed(msg, exc)
            self.dead_lettered += 1
            # The error hook logs it (by default) or does what the program wants with it.
            await self.report(error)
            return
        self._held.take(sequence, msg)
        self.received += 1
        reply = None
        headers = event.headers
        if headers and CORRELATION_ID in headers and REPLY_TO in headers:
            reply = functools.partial(self._reply, sequence, headers[REPLY_TO])
        taken = await self.distribute_event(
            event, on_dispatched=functools.partial(self._dispatched, sequence), reply=reply,
            on_dead_letter=functools.partial(self._failed, sequence, msg),
        )  # fmt: skip
        if not taken:  # no nexus runs any more: delivered again at once, elsewhere
            self._held.settle(sequence, NAK)

    def _dispatched(self, sequence: int, event: Event) -> None:
        self._answers.dispatched(sequence)  # acknowledged at once, or once its answers are out

    def _failed(self, sequence: int, msg: Msg, event: Event, exc: BaseException, attempts: int) -> None:
        self._answers.forget(sequence)
        self._dead.handling_failed(sequence, msg, exc, attempts)

    def _reply(self, sequence: int, reply_to: str, answer: Event) -> None:
        self._answers.answer(sequence, reply_to, self.codec.encode(answer))

    def _recorded(self, sequence: int) -> None:
        self.dead_lettered += 1

    # -- shutting down --------------------------------------------------------------------

    async def close(self) -> None:
        """Settle what was dispatched, hand back what was not (``nak``), then disconnect.

        Tries for up to ``close_timeout`` seconds; what is left unsettled is delivered again
        after ``ack_wait``. The consumer of a receiver without a group is deleted.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.close_timeout
        await self._stop_fetching()
        await self._answers.close(max(0.0, deadline - loop.time()))
        await self._dead.close(max(0.0, deadline - loop.time()))
        client = self._connection.client

        async def flush() -> None:
            if client is not None and client.is_connected:
                await client.flush()

        await self._held.close(max(0.0, deadline - loop.time()), flush)
        if self.group is None and client is not None and client.is_connected:
            try:
                remaining = max(0.1, deadline - loop.time())
                await asyncio.wait_for(
                    client.jetstream().delete_consumer(self.stream, self.consumer), remaining
                )
            except (asyncio.TimeoutError, *UNREACHABLE) as exc:
                logger.debug("%r: could not delete its consumer: %s", self, exc)
        await self._connection.close()

    async def _stop_fetching(self) -> None:
        """Let the fetch under way end (at most ``fetch_wait``), then stop fetching."""
        self._stopping = True
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None and not fetcher.done():
            if not self._fetching:
                fetcher.cancel()
            # What it fetched meanwhile is refused by the stopped nexus and handed back.
            await asyncio.wait({fetcher}, timeout=self.fetch_wait + 1.0)
            await stop_tasks(fetcher)
        puller, self._puller = self._puller, None
        if puller is None:
            return
        try:
            await puller.close()
        except UNREACHABLE as exc:
            logger.debug("%r: unsubscribing failed: %s", self, exc)

    def __repr__(self) -> str:
        return f"<JetStreamReceiver stream={self.stream!r} group={self.group!r}>"
