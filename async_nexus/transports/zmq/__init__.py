"""ZeroMQ transport: events between processes and machines over pyzmq sockets.

Install it with ``pip install 'async-nexus[zmq]'``. The names and constructors are those of
async-nexus 1.0's ``async_nexus.zmq``:

* :class:`ZmqEventSender`: a handler in the sending nexus; each event it gets is encoded
  with an :class:`~async_nexus.codec.EventCodec` and sent on its socket.
* :class:`ZmqEventReceiver`: a converter in the receiving nexus; each message is decoded
  back into the event that was sent, headers and all. With a JSON codec it also reads
  events as async-nexus 1.0 sent them, so 1.0 senders keep working.
* :class:`ZmqEventConverter`: a converter for peers that send plain strings (not events):
  each string becomes the payload of a new event of one type.
* :func:`send_event`: send one event from anywhere, on a plain or an asyncio socket.

Converters and the sender need sockets of a :class:`zmq.asyncio.Context`, because they await
them inside the event loop. A message that cannot be decoded raises
:class:`~async_nexus.errors.DecodeError` (with :attr:`~async_nexus.errors.DecodeError.raw`
set); the nexus reports it to its error hook and goes on receiving. A converter whose socket
is closed, or whose context is terminated, retires quietly
(:class:`~async_nexus.errors.NoMoreEvents`). The nexus closes its converters when it stops,
and a converter closes its socket; the context stays the caller's to terminate.

A message may have several frames: the event (or string) is always the **last** frame, and
the frames before it are envelope: the topic of a PUB socket (``topic=``), the identity a
ROUTER socket adds. Nothing is ever unpickled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar, overload

import zmq
import zmq.asyncio

from ...codec import EventCodec
from ...consumers import EventConsumer
from ...errors import BadType, DecodeError, NoMoreEvents
from ...events import Event, EventFactory, EventType, IdStrategy, NamedEvent
from ...sources import SimpleEventConverter
from . import _compat, _frames
from ._frames import CANNOT_RECEIVE, CANNOT_SEND, check_socket, check_topic, frames_of

__all__ = [
    "Topic",
    "ZmqAbstractConverter",
    "ZmqEventConverter",
    "ZmqEventReceiver",
    "ZmqEventSender",
    "send_event",
]

#: What ``topic=`` accepts: a fixed first frame (``str`` is sent as UTF-8), or a function of
#: the event that returns one, e.g. ``lambda event: str(event.type)``.
Topic = _frames.Topic

_RAW_LIMIT = 512
_Converter = TypeVar("_Converter", bound="ZmqAbstractConverter")


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (always False before Python 3.11)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class ZmqAbstractConverter(SimpleEventConverter):
    """Base of the ZeroMQ converters: it holds :attr:`socket`, receives and closes it.

    Subclass it and override :meth:`obtain_event`, awaiting :meth:`receive` for each message.
    Usable as a (sync) context manager that closes the socket on exit.

    :param socket: a socket of a :class:`zmq.asyncio.Context` that can receive: PULL, SUB,
        PAIR, DEALER, ROUTER or XSUB.
    :raises BadType: ``socket`` is not a socket, or not an asyncio one.
    :raises BadValue: ``socket`` is closed, or of a type that cannot receive.
    """

    def __init__(self, socket: zmq.asyncio.Socket) -> None:
        check_socket(socket, role=type(self).__qualname__, refused=CANNOT_RECEIVE, need_async=True)
        #: The socket this converter receives from.
        self.socket = socket

    async def receive(self) -> list[bytes]:
        """Wait for the next message and return its frames (at least one).

        :raises NoMoreEvents: the socket was closed or its context terminated, before or
            while waiting; the nexus retires the converter.
        """
        try:
            frames: list[bytes] = await self.socket.recv_multipart()
        except asyncio.CancelledError:
            # pyzmq cancels a pending receive when its socket is closed: that is the end of
            # this source, not a cancellation of the task pumping it.
            if self.socket.closed and not _being_cancelled():
                raise NoMoreEvents(f"{self!r}: its socket was closed") from None
            raise
        except zmq.ZMQError as exc:
            if self.socket.closed or exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
                raise NoMoreEvents(f"{self!r}: its socket was closed ({exc})") from None
            raise
        return frames

    def close(self) -> None:
        """Close the socket, dropping anything not yet received (``linger=0``)."""
        self.socket.close(linger=0)

    def __enter__(self: _Converter) -> _Converter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ZmqEventConverter(ZmqAbstractConverter):
    """A converter for peers that send strings: each one becomes an event's payload.

    Every message (its last frame, decoded as UTF-8) is passed to :meth:`convert_to_event`,
    which by default makes an event of ``event_type`` with the string as its payload.

    >>> import zmq.asyncio
    >>> from async_nexus.transports.zmq import ZmqEventConverter
    >>> context = zmq.asyncio.Context()
    >>> with ZmqEventConverter(context.socket(zmq.PULL), event_type=50) as converter:
    ...     converter.convert_to_event("hi").payload
    'hi'
    >>> context.term()

    :param socket: as for :class:`ZmqAbstractConverter`.
    :param event_type: an ``int`` or ``str`` type, or a :class:`~async_nexus.NamedEvent`
        subclass (the class itself), which is then built as ``cls(id, string)``.
    :param event_factory: makes the events and their ids; pass the nexus
        (``event_factory=nexus``) for its sequential ids. A converter does not know which
        nexus pulls it, so without one it uses a factory of its own with **random** ids,
        which do not collide with the nexus's in practice.
    """

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        *,
        event_type: EventType | type[NamedEvent],
        event_factory: EventFactory | None = None,
    ) -> None:
        super().__init__(socket)
        named = isinstance(event_type, type) and issubclass(event_type, NamedEvent)
        if not named and (not isinstance(event_type, (int, str)) or isinstance(event_type, bool)):
            raise BadType(f"event_type must be an int, a str or a NamedEvent subclass, got {event_type!r}")
        if event_factory is not None and not isinstance(event_factory, EventFactory):
            raise BadType(
                "event_factory must be an EventFactory (such as the nexus), got "
                f"{type(event_factory).__qualname__}"
            )
        #: The type of the events made, or the :class:`~async_nexus.NamedEvent` class.
        self.event_type = event_type
        #: What makes the events (a private factory when none was given).
        self.event_factory = event_factory if event_factory is not None else EventFactory()
        self._ids = IdStrategy.AUTO if event_factory is not None else IdStrategy.RANDOM

    def convert_to_event(self, s: str) -> Event:
        """Make an event of :attr:`event_type` with ``s`` as its payload.

        Override it to parse the string. To refuse one, raise
        :class:`~async_nexus.errors.DecodeError`: the nexus reports it and keeps receiving
        (any other exception retires the converter).
        """
        factory = self.event_factory
        if isinstance(self.event_type, type):
            new_id = factory.next_id() if self._ids is IdStrategy.AUTO else factory.random_id()
            return self.event_type(new_id, s)
        if self._ids is IdStrategy.AUTO:
            return factory.create_event(s, event_type=self.event_type)
        return factory.create_event(s, event_type=self.event_type, id=self._ids)

    async def obtain_event(self) -> Event:
        """Receive a string and return :meth:`convert_to_event` of it.

        :raises DecodeError: the message is not UTF-8 text.
        """
        raw = (await self.receive())[-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"{self!r} received a message that is not UTF-8 text ({exc}); it was dropped",
                raw[:_RAW_LIMIT],
            ) from None
        return self.convert_to_event(text)

    def __repr__(self) -> str:
        return f"<ZmqEventConverter type={self.event_type!r} at {id(self):#x}>"


class ZmqEventReceiver(ZmqAbstractConverter):
    """A converter that receives whole events, as :class:`ZmqEventSender` and
    :func:`send_event` send them, and decodes them with its codec.

    With a JSON codec (the default) it also reads an event as async-nexus 1.0's
    ``send_event`` sent it: a JSON object of exactly ``id``, ``type``, ``priority`` and
    ``payload``, e.g. ``{"id": 1001, "type": 99, "priority": 0, "payload": "TEAPOT!"}``, and
    the same with ``"headers": null`` or ``{}`` beside them (what a 1.0 program run unchanged
    sends with today's :class:`~async_nexus.Event`). That arrives as
    ``Event(id, type, priority, payload)``, without headers.

    :param socket: as for :class:`ZmqAbstractConverter`.
    :param codec: the sender's codec (same format); register in it every
        :class:`~async_nexus.NamedEvent` class that may arrive. By default JSON, no named events.
    """

    def __init__(self, socket: zmq.asyncio.Socket, *, codec: EventCodec | None = None) -> None:
        super().__init__(socket)
        #: Decodes each message.
        self.codec = codec if codec is not None else EventCodec()

    async def obtain_event(self) -> Event:
        """Receive a message and decode its last frame into the event that was sent.

        :raises DecodeError: the message is not an encoded event, nor a 1.0 one (the nexus
            reports it and goes on); :attr:`~async_nexus.errors.DecodeError.raw` holds the frame.
        """
        return _compat.decode((await self.receive())[-1], self.codec)

    def __repr__(self) -> str:
        return f"<ZmqEventReceiver {self.codec.format} at {id(self):#x}>"


class ZmqEventSender(EventConsumer):
    """A handler that sends each event it gets on a ZeroMQ socket, encoded by its codec.

    Register it for the types that should cross: ``nexus.add_handler(42, sender)``. The
    handler awaits the send, so a socket that cannot send now (a PUSH socket without a peer,
    or at its high-water mark) holds up dispatch until it can: backpressure, not loss. Set
    the socket's ``sndtimeo`` (milliseconds) to give up instead: the send then fails with
    :class:`zmq.Again`, which goes to the error hook with the event. A PUB socket never waits;
    it drops messages nobody subscribed to, as ZeroMQ does.

    Usable as a (sync) context manager that closes the socket on exit.

    :param socket: a socket of a :class:`zmq.asyncio.Context` that can send: PUSH, PUB,
        PAIR, DEALER, ROUTER or XPUB.
    :param codec: encodes the events; by default JSON.
    :param topic: a first frame before the event: a fixed ``bytes``/``str`` or a function of
        the event, e.g. ``lambda event: str(event.type)``, so SUB sockets can subscribe to
        some events only. With a ROUTER socket, the first frame is the peer's identity.
    :raises BadType: ``socket`` is not an asyncio socket, or ``topic`` has the wrong type.
    :raises BadValue: ``socket`` is closed, or of a type that cannot send.
    """

    def __init__(
        self,
        socket: zmq.asyncio.Socket,
        *,
        codec: EventCodec | None = None,
        topic: Topic | None = None,
    ) -> None:
        check_socket(socket, role="ZmqEventSender", refused=CANNOT_SEND, need_async=True)
        check_topic(topic)
        #: The socket events are sent on.
        self.socket = socket
        #: Encodes each event.
        self.codec = codec if codec is not None else EventCodec()
        #: The first frame, or what makes it; ``None`` for none.
        self.topic = topic

    async def handle(self, event: Event, queue: Any) -> None:
        """Send ``event``; wait while the socket cannot take it.

        :raises BadType: the event cannot be encoded (the error hook gets it, with the event).
        """
        await self.socket.send_multipart(frames_of(event, self.codec, self.topic))

    def close(self, *, linger: int | None = 1000) -> None:
        """Close the socket, giving messages still queued ``linger`` milliseconds to leave.

        ``linger=None`` uses the socket's own setting (ZeroMQ's default is to wait forever).
        """
        self.socket.close(linger=linger)

    def __enter__(self) -> ZmqEventSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ZmqEventSender {self.codec.format} at {id(self):#x}>"


@overload
def send_event(
    event: Event, socket: zmq.asyncio.Socket, *, codec: EventCodec | None = None, topic: Topic | None = None
) -> Awaitable[Any]: ...


@overload
def send_event(
    event: Event, socket: zmq.Socket[bytes], *, codec: EventCodec | None = None, topic: Topic | None = None
) -> None: ...


def send_event(
    event: Event, socket: zmq.Socket[Any], *, codec: EventCodec | None = None, topic: Topic | None = None
) -> Awaitable[Any] | None:
    """Send one event on ``socket``, as :class:`ZmqEventSender` does.

    The split follows pyzmq's own: on a socket of a :class:`zmq.asyncio.Context` it returns
    an awaitable, and the event is sent once it has been awaited
    (``await send_event(event, socket)``); on a plain socket it sends before returning
    ``None``, blocking as ``socket.send`` does (bound it with the socket's ``sndtimeo``).
    Encoding happens at once in both cases, so an event that cannot be encoded raises here.

    >>> import zmq
    >>> from async_nexus.codec import EventCodec
    >>> from async_nexus.transports.zmq import send_event
    >>> context = zmq.Context()
    >>> pull = context.socket(zmq.PULL)
    >>> _ = pull.bind("inproc://send-event-example")
    >>> push = context.socket(zmq.PUSH)
    >>> _ = push.connect("inproc://send-event-example")
    >>> send_event(Event(1001, 99, 0, "TEAPOT!"), push)
    >>> EventCodec().decode(pull.recv())
    Event(id=1001, type=99, priority=0, payload='TEAPOT!', headers=None)
    >>> push.close(); pull.close(); context.term()

    :param codec: encodes the event; by default JSON.
    :param topic: a first frame, as for :class:`ZmqEventSender`.
    :raises BadType: the event cannot be encoded, or ``socket`` is not a socket.
    :raises BadValue: ``socket`` is closed or of a type that cannot send.
    """
    check_socket(socket, role="send_event()", refused=CANNOT_SEND, need_async=False)
    check_topic(topic)
    frames = frames_of(event, codec if codec is not None else EventCodec(), topic)
    if isinstance(socket, zmq.asyncio.Socket):
        sent: Awaitable[Any] = socket.send_multipart(frames)
        return sent
    socket.send_multipart(frames)
    return None
