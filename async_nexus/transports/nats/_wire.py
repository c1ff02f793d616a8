"""What a message's body and headers are: the codec's encoding of an event, or a plain body.

``wire="nexus"`` (:class:`NexusWire`) puts the codec's encoding of the whole event in the
body; only another nexus reads it. ``wire="raw"`` (:class:`RawWire`) speaks as other NATS
programs do: the body is the payload alone, as JSON, and the event's headers are the
message's headers; what is received becomes an event whose type is the subject.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from ...codec import EventCodec
from ...errors import BadType, BadValue, DecodeError
from ...events import Event

# A NATS header line is "Name: value\r\n": a name holding ':' or either holding a line
# break (or another control character) would write headers the sender never meant.
_CONTROL = frozenset(map(chr, range(32))) | {"\x7f"}
_RAW_LIMIT = 512


class Wire(Protocol):
    """How events become message bodies and headers, and back."""

    def encode(self, event: Event) -> tuple[bytes, dict[str, str] | None]: ...

    def decode(self, subject: str, body: bytes, headers: dict[str, str] | None, event_id: str) -> Event: ...


def make_wire(wire: str, codec: EventCodec) -> Wire:
    """The wire named ``wire`` over ``codec``.

    :raises BadValue: an unknown name, or ``"raw"`` with a codec that does not write JSON.
    """
    if wire == "nexus":
        return NexusWire(codec)
    if wire == "raw":
        if codec.format != "json":
            raise BadValue(
                f"wire='raw' carries JSON bodies, which other NATS programs read; the codec given "
                f"writes {codec.format!r}. Pass a JSON codec (the default), or use wire='nexus'"
            )
        return RawWire(codec)
    raise BadValue(f"wire must be 'nexus' (events for another nexus) or 'raw' (plain bodies), got {wire!r}")


class NexusWire:
    """The body is the codec's encoding of the whole event; no headers of its own."""

    __slots__ = ("_codec",)

    def __init__(self, codec: EventCodec) -> None:
        self._codec = codec

    def encode(self, event: Event) -> tuple[bytes, dict[str, str] | None]:
        return self._codec.encode(event), None

    def decode(self, subject: str, body: bytes, headers: dict[str, str] | None, event_id: str) -> Event:
        return self._codec.decode(body)


class RawWire:
    """The body is the payload as JSON (``bytes`` as they are); headers are NATS headers.

    Received, a message becomes ``Event(event_id, subject, 0, payload, headers)``: the
    payload is the body decoded as JSON when it is JSON, and the body's ``bytes``
    otherwise. A body that is JSON nested deeper than Python's parser goes is no payload
    at all: a :class:`~async_nexus.errors.DecodeError`, dead-lettered as malformed.
    """

    __slots__ = ("_codec",)

    def __init__(self, codec: EventCodec) -> None:
        self._codec = codec

    def encode(self, event: Event) -> tuple[bytes, dict[str, str] | None]:
        if not isinstance(event, Event):
            raise BadType(f"expected an Event, got {type(event).__qualname__}: {event!r}")
        payload = event.payload
        if isinstance(payload, (bytes, bytearray, memoryview)):
            body = bytes(payload)
        else:
            body = self._codec.encode_payload(payload)
        headers = event.headers
        if headers:
            check_headers(event, headers)
        return body, dict(headers) if headers else None

    def decode(self, subject: str, body: bytes, headers: dict[str, str] | None, event_id: str) -> Event:
        payload: Any
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            payload = body
        else:
            try:
                payload = _JSON.decode(text)
            except RecursionError:
                raise DecodeError("the body is JSON nested too deeply to decode", body[:_RAW_LIMIT]) from None
            except ValueError:  # not JSON (an empty body included): the bytes are the payload
                payload = body
        return Event(event_id, subject, 0, payload, dict(headers) if headers else None)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def check_headers(event: Event, headers: dict[str, str]) -> None:
    """Refuse headers that NATS cannot carry as they are.

    :raises BadType: a name or a value that is not a ``str``.
    :raises BadValue: an empty name, a name with ``':'`` or a space, or a line break or
        other control character in either.
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadType(
                f"event {event.id!r}: headers must map str to str to be NATS headers, got "
                f"{type(name).__qualname__} {name!r}: {type(value).__qualname__}"
            )
        if (
            not name
            or ":" in name
            or " " in name
            or _CONTROL.intersection(name)
            or _CONTROL.intersection(value)
        ):
            raise BadValue(
                f"event {event.id!r}: header {name!r}: {value!r} cannot be a NATS header (names are "
                "non-empty without ':' or spaces; neither names nor values hold line breaks or "
                "other control characters); change or drop it before it crosses"
            )
