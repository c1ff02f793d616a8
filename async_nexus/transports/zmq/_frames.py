"""The ZeroMQ side of the transport: which sockets can play which part, and the frames of a message.

A message may have several frames: the event is always the **last** one, and the frames before
it are envelope (a PUB socket's topic, the identity a ROUTER socket adds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union, cast

import zmq
import zmq.asyncio

from ...codec import EventCodec
from ...errors import BadType, BadValue
from ...events import Event

__all__ = ["CANNOT_RECEIVE", "CANNOT_SEND", "Topic", "check_socket", "check_topic", "frames_of"]

# Documented where it is public, in async_nexus.transports.zmq.
Topic = Union[bytes, str, Callable[[Event], Union[bytes, str]]]

# Socket types that cannot play a part, and why; anything else (draft types too) is allowed.
CANNOT_RECEIVE: dict[int, str] = {
    zmq.PUSH: "PUSH sockets only send",
    zmq.PUB: "PUB sockets only send",
    zmq.XPUB: "XPUB sockets receive subscriptions, not events",
    zmq.REQ: "REQ sockets must alternate send and receive",
    zmq.REP: "REP sockets must answer each message before receiving the next",
}
CANNOT_SEND: dict[int, str] = {
    zmq.PULL: "PULL sockets only receive",
    zmq.SUB: "SUB sockets only receive",
    zmq.XSUB: "XSUB sockets send subscriptions, not events",
    zmq.REQ: "REQ sockets must wait for a reply after each message",
    zmq.REP: "REP sockets can only answer a request",
}


def _type_name(kind: int) -> str:
    try:
        return zmq.SocketType(kind).name
    except ValueError:
        return str(kind)


def check_socket(socket: object, *, role: str, refused: dict[int, str], need_async: bool) -> None:
    """Refuse, with a message saying what to pass instead, a socket that cannot do ``role``."""
    if not isinstance(socket, zmq.Socket):
        raise BadType(f"{role} needs a ZeroMQ socket, got {type(socket).__qualname__}: {socket!r}")
    if need_async and not isinstance(socket, zmq.asyncio.Socket):
        raise BadType(
            f"{role} needs a socket made by a zmq.asyncio.Context(), because it awaits the socket "
            f"inside the event loop; got a {type(socket).__module__}.{type(socket).__qualname__}"
        )
    if socket.closed:
        raise BadValue(f"{role} got a closed socket; pass an open one")
    kind = cast(int, socket.type)
    reason = refused.get(kind)
    if reason is not None:
        raise BadValue(
            f"{role} cannot use a {_type_name(kind)} socket: {reason}; "
            "use PUSH/PULL, PUB/SUB, PAIR or DEALER/ROUTER"
        )


def check_topic(topic: object) -> None:
    """Refuse a ``topic=`` that is not bytes, str, a function or ``None``."""
    if topic is not None and not isinstance(topic, (bytes, str)) and not callable(topic):
        raise BadType(
            f"topic must be bytes, str, a function of the event returning one, or None; "
            f"got {type(topic).__qualname__}"
        )


def frames_of(event: Event, codec: EventCodec, topic: Topic | None) -> list[bytes]:
    """The frames that carry ``event``: its topic first, if any, then the encoded event."""
    body = codec.encode(event)
    if topic is None:
        return [body]
    first = topic(event) if callable(topic) else topic
    if isinstance(first, str):
        return [first.encode("utf-8"), body]
    if isinstance(first, bytes):
        return [first, body]
    raise BadType(f"the topic function returned {type(first).__qualname__}; it must return bytes or str")
