"""Events as async-nexus 1.0's ZeroMQ senders sent them, read alongside the codec's wire form.

1.0 sent an event with ``socket.send_json(event, default=dataclasses.asdict)``, its ``Event``
being a dataclass of ``id``, ``type``, ``priority`` and ``payload``: a JSON object of exactly
those four fields, e.g. ``{"id": 1001, "type": 99, "priority": 0, "payload": "TEAPOT!"}``.
Senders written against 1.0 (its ``send_event``, its demos, programs copying them) still send
that, so a JSON receiver accepts it as a plain :class:`~async_nexus.Event`, without headers.
Such a program run unchanged today serialises today's ``Event``, whose fifth field adds
``"headers": null`` (or ``{}``) to the four: that is read the same way.

Only that shape is read: anything else keeps the codec's own :class:`DecodeError`, or gets one
saying why it is neither form. The message is parsed as JSON, never unpickled.
"""

from __future__ import annotations

import json
from typing import Any

from ...codec import EventCodec
from ...errors import DecodeError
from ...events import Event

__all__ = ["V1_FIELDS", "decode"]

#: The fields of 1.0's ``Event`` dataclass, in its order: all of them, and nothing else.
V1_FIELDS = ("id", "type", "priority", "payload")

# 1.0's send_json(event, default=dataclasses.asdict) applied to today's Event: its headers come
# along, empty unless the program set them, which a 1.0 program never does.
_V1_WITH_HEADERS = {*V1_FIELDS, "headers"}

_RAW_LIMIT = 512


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Strict as the codec is: NaN and Infinity are not JSON, and an event carrying them could
# not be sent on by this side.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def decode(body: bytes, codec: EventCodec) -> Event:
    """The event in ``body``: the codec's wire form or, with a JSON codec, the form 1.0 sent.

    The codec goes first, so events in the wire form cost nothing more.

    :raises DecodeError: ``body`` is neither; the message says what is wrong with it.
    """
    try:
        return codec.decode(body)
    except DecodeError as error:
        if codec.format != "json":
            raise  # 1.0 sent JSON only
        event = _v1_event(body, error)
        if event is None:
            raise
        return event


def _v1_event(body: bytes, error: DecodeError) -> Event | None:
    """The 1.0 event in ``body``; ``None`` when ``error`` (the codec's) explains it better."""
    try:
        obj = _JSON.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None  # not JSON at all: the codec said so
    if not isinstance(obj, dict) or "v" in obj:
        return None  # not an object, or meant as the wire form: the codec said what is wrong
    raw = body[:_RAW_LIMIT]
    if set(obj) == _V1_WITH_HEADERS:
        headers = obj["headers"]
        if headers is not None and headers != {}:
            raise DecodeError(
                f"{error}; nor is it an event as async-nexus 1.0 sent it: it has headers "
                f"({_describe(headers)}), which 1.0 events never carried; send events with headers "
                "with send_event() or a ZmqEventSender",
                raw,
            )
    elif set(obj) != set(V1_FIELDS):
        found = ", ".join(sorted(obj)) or "none"
        raise DecodeError(
            f"{error}; nor is it an event as async-nexus 1.0 sent it, which has exactly the fields "
            f"{', '.join(V1_FIELDS)} (and headers null or {{}}): it has {found}",
            raw,
        )
    event_id, event_type, priority = obj["id"], obj["type"], obj["priority"]
    if not _is_id(event_id):
        raise DecodeError(f"1.0 event id must be an int or a str, got {_describe(event_id)}", raw)
    if not _is_id(event_type):
        raise DecodeError(f"1.0 event type must be an int or a str, got {_describe(event_type)}", raw)
    if type(priority) is not int:
        raise DecodeError(f"1.0 event priority must be an int, got {_describe(priority)}", raw)
    return Event(event_id, event_type, priority, obj["payload"])


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
