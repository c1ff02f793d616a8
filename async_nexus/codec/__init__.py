"""The wire form of an event, for transports: JSON (or MessagePack) of its fields and headers.

An event is sent as one object::

    {"v": 1, "id": 7, "type": "Treacle", "priority": 0, "payload": "sticky",
     "headers": {"trace": "abc"}, "named": true}

- ``v`` is the wire version (always ``1``); anything else is refused.
- ``id`` and ``type`` are an ``int`` or a ``str`` (never a ``bool``).
- ``priority`` is an ``int``; ``headers`` is ``null`` or an object of strings to strings.
- ``named`` is ``true`` for a :class:`~async_nexus.NamedEvent`: ``type`` is then the class's
  ``event_type``, and the receiving side rebuilds the class **only** through its codec's registry
  (:meth:`EventCodec.register`). Nothing is ever imported, evaluated or unpickled by name: nothing
  that arrives over a wire can run code.
- Unknown extra keys are ignored, so later versions may add fields.

Payloads must be JSON values: ``None``, ``bool``, ``int``, finite ``float``, ``str``, lists (tuples
are sent as lists) and dicts with ``str`` keys, nested freely. Two kinds of objects are converted
at encode time: dataclass instances (through :func:`dataclasses.asdict`) and objects with a
``model_dump()`` method such as pydantic models (through ``model_dump(mode="json")``). Both
arrive as plain dicts: the receiving side gets data, not instances. Anything else is refused at
encode time with a :class:`~async_nexus.errors.BadType` (a :class:`TypeError`).

Every malformed input to :meth:`EventCodec.decode` raises :class:`~async_nexus.errors.DecodeError`
(a :class:`ValueError`) saying what was wrong, and nothing else.

The module imports only the standard library; ``msgpack`` is imported when a MessagePack codec is
made (``pip install 'async-nexus[msgpack]'``) and pydantic is never imported.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any, Literal

from ..errors import BadType, BadValue, DecodeError, NotAnEvent
from ..events import Event, NamedEvent
from ._values import plain_value

__all__ = ["WIRE_VERSION", "EventCodec", "decode_event", "encode_event"]

#: The version written in the ``"v"`` field of every encoded event.
WIRE_VERSION = 1

_RAW_LIMIT = 512
_REQUIRED = ("v", "id", "type", "priority", "payload", "headers", "named")
_MSGPACK_HINT = "pip install 'async-nexus[msgpack]'"


def _load_msgpack() -> ModuleType:
    try:
        return importlib.import_module("msgpack")
    except ImportError as exc:
        raise ImportError(f"the msgpack format needs the msgpack package: {_MSGPACK_HINT}") from exc


def _truncated(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        return data[:_RAW_LIMIT]
    return None


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class _PayloadError(Exception):
    """Internal: a decoded payload holds a value that is not a JSON value."""


class EventCodec:
    """Turns events into bytes and back, in JSON (the default) or MessagePack.

    >>> class Treacle(NamedEvent):
    ...     pass
    >>> codec = EventCodec(named_events=[Treacle])
    >>> codec.decode(codec.encode(Treacle(7, "sticky"))) == Treacle(7, "sticky")
    True

    :param named_events: :class:`~async_nexus.NamedEvent` subclasses that :meth:`decode` may
        rebuild; more can be added with :meth:`register`.
    :param format: ``"json"`` or ``"msgpack"``. MessagePack carries the same object as JSON;
        it needs the ``msgpack`` package, and without it the constructor raises
        :class:`ImportError`.
    """

    def __init__(
        self,
        *,
        named_events: Iterable[type[NamedEvent]] = (),
        format: Literal["json", "msgpack"] = "json",
    ) -> None:
        if format not in ("json", "msgpack"):
            raise BadValue(f"format must be 'json' or 'msgpack', not {format!r}")
        self._format: Literal["json", "msgpack"] = format
        self._msgpack: ModuleType | None = _load_msgpack() if format == "msgpack" else None
        self._registry: dict[str, type[NamedEvent]] = {}
        for cls in named_events:
            self.register(cls)

    @property
    def format(self) -> Literal["json", "msgpack"]:
        """The wire format of this codec: ``"json"`` or ``"msgpack"``."""
        return self._format

    @property
    def named_events(self) -> Mapping[str, type[NamedEvent]]:
        """A read-only copy of the registry: ``event_type`` → class."""
        return dict(self._registry)

    def register(self, cls: type[NamedEvent]) -> type[NamedEvent]:
        """Allow :meth:`decode` to rebuild ``cls``; returns ``cls``, so it works as a decorator.

        Registering the same class again does nothing.

        :raises BadType: ``cls`` is not a :class:`~async_nexus.NamedEvent` subclass.
        :raises BadValue: another class with the same ``event_type`` is already registered.
        """
        if not (isinstance(cls, type) and issubclass(cls, NamedEvent)):
            raise BadType(f"only NamedEvent subclasses can be registered, not {cls!r}")
        name = cls.event_type
        known = self._registry.get(name)
        if known is not None and known is not cls:
            raise BadValue(
                f"event_type {name!r} is already registered for {known.__module__}.{known.__qualname__}; "
                f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
            )
        self._registry[name] = cls
        return cls

    def is_registered(self, cls: type[NamedEvent]) -> bool:
        """Whether :meth:`decode` rebuilds events of ``cls`` as ``cls``: it is registered here."""
        if not (isinstance(cls, type) and issubclass(cls, NamedEvent)):
            return False
        return self._registry.get(cls.event_type) is cls

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, event: Event) -> bytes:
        """Return the wire form of ``event``.

        Dataclass and ``model_dump()`` payloads are sent as dicts (and decoded as dicts).

        :raises NotAnEvent: ``event`` is not an :class:`~async_nexus.Event` (a :class:`TypeError`).
        :raises BadType: a field has the wrong type, or the payload holds something that is
            not a JSON value, a dataclass instance or an object with ``model_dump()``; the message
            names its type and where it is.
        :raises BadValue: the payload holds a non-finite float, a string that is not valid
            Unicode, is nested too deeply (or circular), or holds an integer MessagePack cannot
            carry.
        """
        wire = self._to_wire(event)
        if self._msgpack is None:
            try:
                text = _JSON_ENCODER.encode(wire)
                return text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadValue(f"event {event.id!r} holds a string that is not valid Unicode") from exc
            except RecursionError as exc:  # pragma: no cover - _to_wire already bounds depth
                raise BadValue(f"payload of event {event.id!r} is nested too deeply") from exc
        try:
            packed: bytes = self._msgpack.packb(wire, use_bin_type=True)
        except UnicodeEncodeError as exc:
            raise BadValue(f"event {event.id!r} holds a string that is not valid Unicode") from exc
        except (ValueError, OverflowError) as exc:
            raise BadValue(f"event {event.id!r} cannot be packed as MessagePack: {exc}") from exc
        return packed

    def encode_payload(self, payload: Any) -> bytes:
        """Return a payload alone in this codec's format, converted as :meth:`encode` converts it.

        For wires that carry the payload without the event around it, such as the NATS
        transport's ``wire="raw"``.

        >>> EventCodec().encode_payload({"sku": "T-1", "count": 2})
        b'{"sku":"T-1","count":2}'

        :raises BadType: the payload holds something that is not a JSON value, a dataclass
            instance or an object with ``model_dump()``.
        :raises BadValue: a non-finite float, a string that is not valid Unicode, or nesting
            too deep (or circular).
        """
        try:
            value = plain_value(payload, "payload", self._msgpack is not None)
        except RecursionError as exc:
            raise BadValue("the payload is nested too deeply or circular") from exc
        if self._msgpack is None:
            try:
                return _JSON_ENCODER.encode(value).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadValue("the payload holds a string that is not valid Unicode") from exc
        try:
            packed: bytes = self._msgpack.packb(value, use_bin_type=True)
        except UnicodeEncodeError as exc:
            raise BadValue("the payload holds a string that is not valid Unicode") from exc
        except (ValueError, OverflowError) as exc:
            raise BadValue(f"the payload cannot be packed as MessagePack: {exc}") from exc
        return packed

    def _to_wire(self, event: Event) -> dict[str, Any]:
        if not isinstance(event, Event):
            raise NotAnEvent(f"expected an Event, got {type(event).__qualname__}: {event!r}")
        named = isinstance(event, NamedEvent)
        event_type: Any = type(event).event_type if isinstance(event, NamedEvent) else event.type
        if not _is_id(event.id):
            raise BadType(f"event id must be an int or a str, not {type(event.id).__qualname__}")
        if not _is_id(event_type):
            raise BadType(f"event type must be an int or a str, not {type(event_type).__qualname__}")
        priority = event.priority
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise BadType(f"event priority must be an int, not {type(priority).__qualname__}")
        headers = event.headers
        if headers is not None:
            if not isinstance(headers, dict):
                raise BadType(
                    f"event headers must be a dict[str, str] or None, not {type(headers).__qualname__}"
                )
            for key, value in headers.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise BadType(
                        f"event headers must be a dict[str, str]; got {type(key).__qualname__} key "
                        f"{key!r} with {type(value).__qualname__} value"
                    )
            headers = {str.__str__(k): str.__str__(v) for k, v in headers.items()}
        limit = self._msgpack is not None  # MessagePack carries 64-bit integers only
        try:
            payload = plain_value(event.payload, "payload", limit)
        except RecursionError as exc:
            raise BadValue(f"payload of event {event.id!r} is nested too deeply or circular") from exc
        return {
            "v": WIRE_VERSION,
            "id": plain_value(event.id, "id", limit),
            "type": plain_value(event_type, "type", limit),
            "priority": int(priority),
            "payload": payload,
            "headers": headers,
            "named": named,
        }

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, data: bytes | str) -> Event:
        """Rebuild the event that :meth:`encode` turned into ``data``.

        A ``named`` event is rebuilt as its registered :class:`~async_nexus.NamedEvent` class
        (through its constructor ``cls(id, payload, priority=..., headers=...)``); other events
        as :class:`~async_nexus.Event`. Dataclass and ``model_dump()`` payloads come back as dicts.

        :raises DecodeError: ``data`` is not a valid encoded event: invalid UTF-8, invalid JSON
            or MessagePack, not an object, a missing or wrongly typed field, an unknown version,
            or a named type that is not registered. :attr:`DecodeError.raw` holds ``data``
            (truncated).
        """
        obj = self._load(data)
        return self._from_wire(obj, data)

    def _load(self, data: Any) -> Any:
        raw = _truncated(data)
        if self._msgpack is None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                try:
                    text = bytes(data).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DecodeError(f"event is not valid UTF-8: {exc}", raw) from exc
            elif isinstance(data, str):
                text = data
            else:
                raise DecodeError(f"expected bytes or str to decode, got {type(data).__qualname__}", raw)
            try:
                return _JSON_DECODER.decode(text)
            except RecursionError as exc:
                raise DecodeError("event JSON is nested too deeply", raw) from exc
            except ValueError as exc:
                raise DecodeError(f"event is not valid JSON: {exc}", raw) from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes to decode as MessagePack, got {type(data).__qualname__}", raw)
        try:
            obj = self._msgpack.unpackb(bytes(data), raw=False, ext_hook=_refuse_ext, timestamp=0)
        except _PayloadError as exc:
            raise DecodeError(f"event MessagePack holds {exc}", raw) from None
        except Exception as exc:  # msgpack raises many kinds (ExtraData, StackError, ValueError, ...)
            reason = str(exc) or type(exc).__name__
            raise DecodeError(f"event is not valid MessagePack: {reason}", raw) from exc
        try:
            _check_plain(obj)
        except _PayloadError as exc:
            raise DecodeError(f"event MessagePack holds {exc}", raw) from None
        except RecursionError as exc:
            raise DecodeError("event MessagePack is nested too deeply", raw) from exc
        return obj

    def _from_wire(self, obj: Any, data: Any) -> Event:
        raw = _truncated(data)
        if not isinstance(obj, dict):
            raise DecodeError(f"event must be an object, got {_describe(obj)}", raw)
        missing = [key for key in _REQUIRED if key not in obj]
        if missing:
            raise DecodeError(f"event is missing field(s): {', '.join(missing)}", raw)
        version = obj["v"]
        if type(version) is not int or version != WIRE_VERSION:
            raise DecodeError(f"unsupported wire version {version!r} (this codec reads {WIRE_VERSION})", raw)
        event_id = obj["id"]
        if not _is_id(event_id):
            raise DecodeError(f"event id must be an int or a str, got {_describe(event_id)}", raw)
        event_type = obj["type"]
        if not _is_id(event_type):
            raise DecodeError(f"event type must be an int or a str, got {_describe(event_type)}", raw)
        priority = obj["priority"]
        if type(priority) is not int:
            raise DecodeError(f"event priority must be an int, got {_describe(priority)}", raw)
        headers = obj["headers"]
        if headers is not None:
            if not isinstance(headers, dict):
                raise DecodeError(f"event headers must be an object or null, got {_describe(headers)}", raw)
            for key, value in headers.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise DecodeError(
                        f"event headers must map strings to strings, got {key!r}: {_describe(value)}", raw
                    )
        named = obj["named"]
        if type(named) is not bool:
            raise DecodeError(f"event field 'named' must be true or false, got {_describe(named)}", raw)
        payload = obj["payload"]
        if not named:
            return Event(event_id, event_type, priority, payload, headers)
        if not isinstance(event_type, str):
            raise DecodeError(f"a named event's type must be a str, got {_describe(event_type)}", raw)
        cls = self._registry.get(event_type)
        if cls is None:
            raise DecodeError(
                f"unknown named event type {event_type!r}: register it with codec.register(cls)", raw
            )
        try:
            return cls(event_id, payload, priority=priority, headers=headers)
        except Exception as exc:
            raise DecodeError(f"could not rebuild named event {event_type!r}: {exc!r}", raw) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Built once: json.loads/dumps with options build a new one per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _PayloadError(f"an extension type ({code}), which events never carry")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _check_plain(value: Any) -> None:
    """Refuse anything MessagePack can carry that JSON cannot (bytes, non-str keys, NaN...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _PayloadError(f"a non-finite float ({value!r})")
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _PayloadError(f"a map with a {type(key).__name__} key ({_describe(key)})")
            _check_plain(item)
        return
    raise _PayloadError(f"a value of type {type(value).__name__}, which events never carry")


def encode_event(event: Event) -> bytes:
    """Return the JSON wire form of ``event``; the same as ``EventCodec().encode(event)``."""
    return EventCodec().encode(event)


def decode_event(data: bytes | str, *, named_events: Iterable[type[NamedEvent]] = ()) -> Event:
    """Rebuild an event from its JSON wire form; the same as ``EventCodec(named_events=...).decode(data)``.

    :raises DecodeError: ``data`` is not a valid encoded event, or names an unregistered
        :class:`~async_nexus.NamedEvent`.
    """
    return EventCodec(named_events=named_events).decode(data)
