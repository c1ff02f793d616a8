"""Events, the data that flows through a nexus, and the factory that makes them."""

from __future__ import annotations

import enum
import itertools
import random
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union

__all__ = [
    "CORRELATION_ID",
    "IN_REPLY_TO",
    "REPLY_TO",
    "Event",
    "EventFactory",
    "EventId",
    "EventType",
    "EventTypeID",
    "IdStrategy",
    "NamedEvent",
    "NamedEventTypeVar",
]

#: What an event's ``type`` may be: an ``int`` (the guide's style) or a ``str``.
EventType = Union[int, str]
#: What an event's ``id`` may be.
EventId = Union[int, str]

#: Header that ties a request to its answer; :meth:`AsyncEventNexus.request` sets it.
CORRELATION_ID = "correlation-id"
#: Header on an answer: the ``correlation-id`` of the request it answers.
IN_REPLY_TO = "in-reply-to"
#: Header a transport sets on a request: where the other side sends the answer.
REPLY_TO = "reply-to"


@dataclass(slots=True, eq=True)
class Event:
    """One event: what happened (``type``), which one (``id``), how urgent and what it carries.

    >>> Event(1001, 99, 0, "TEAPOT!")
    Event(id=1001, type=99, priority=0, payload='TEAPOT!', headers=None)

    :param id: identifies this event; an :class:`EventFactory` makes unique ones.
    :param type: selects the handlers: an ``int`` or a ``str``.
    :param priority: lower numbers are dispatched first; equal priorities keep arrival order.
    :param payload: any object.
    :param headers: optional string metadata (trace context, correlation id, origin) that
        transports carry across the wire.
    """

    id: EventId
    type: EventType
    priority: int = 0
    payload: Any = None
    headers: dict[str, str] | None = None


class NamedEvent(Event):
    """An event whose class is its type: ``type`` is the subclass's ``__qualname__``.

    >>> class Treacle(NamedEvent):
    ...     pass
    >>> Treacle(7, "sticky").type
    'Treacle'

    Register a handler for the class itself: ``nexus.add_handler(Treacle, handler)``.
    """

    __slots__ = ()
    #: The type of every event of this class: the subclass's ``__qualname__``, set when
    #: the class is defined. Routing, the codec's registry and ``add_handler(Cls, h)`` use it.
    event_type: ClassVar[str] = "NamedEvent"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_type = cls.__qualname__

    def __init__(
        self,
        id: EventId,
        payload: Any = None,
        *,
        priority: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        Event.__init__(self, id, type(self).event_type, priority, payload, headers)

    def __repr__(self) -> str:
        return (
            f"{type(self).__qualname__}(id={self.id!r}, payload={self.payload!r}, "
            f"priority={self.priority!r}, headers={self.headers!r})"
        )


#: Compatibility alias kept from async-nexus 1.0: a type variable bound to :class:`NamedEvent`,
#: for generic code over named event classes.
NamedEventTypeVar = TypeVar("NamedEventTypeVar", bound=NamedEvent)
#: Compatibility alias kept from async-nexus 1.0: what an ``event_type`` argument may be
#: (:meth:`EventFactory.create_event`, :class:`~async_nexus.Timer`, ``add_handler``): an
#: :data:`EventType` or a :class:`NamedEvent` subclass, ``EventType | type[NamedEvent]``.
EventTypeID = Union[int, str, type[NamedEvent]]


class IdStrategy(enum.Enum):
    """How :meth:`EventFactory.create_event` picks an id when none is given."""

    AUTO = "auto"
    RANDOM = "random"


class EventFactory:
    """Makes event ids and whole events. :class:`~async_nexus.AsyncEventNexus` is one.

    Ids from :meth:`next_id` count up from 1 and never repeat within one factory;
    :meth:`random_id` draws from 63 bits, so random ids do not collide in practice.
    """

    #: ``create_event(..., id=AUTO)``: the next sequential id (the default).
    AUTO: ClassVar[IdStrategy] = IdStrategy.AUTO
    #: ``create_event(..., id=RANDOM)``: a random id.
    RANDOM: ClassVar[IdStrategy] = IdStrategy.RANDOM

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._random = random.Random()

    def next_id(self) -> int:
        """Return the next sequential id of this factory: 1, 2, 3, …"""
        return next(self._ids)

    @property
    def current_event_id(self) -> int:
        """The id the next call of :meth:`next_id` returns; settable to go on from another id.

        A compatibility alias kept from async-nexus 1.0, where it was a plain attribute.
        """
        # itertools.count tells its next value only through its repr, and reading it must
        # not use an id up.
        return int(repr(self._ids)[len("count(") : -1])

    @current_event_id.setter
    def current_event_id(self, value: int) -> None:
        self._ids = itertools.count(value)

    def random_id(self) -> int:
        """Return a random positive id drawn from 63 bits."""
        return self._random.getrandbits(63) or 1

    def create_event(
        self,
        payload: Any,
        *,
        event_type: EventType | type[NamedEvent],
        id: EventId | IdStrategy = IdStrategy.AUTO,
        priority: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Event:
        """Build an :class:`Event` of ``event_type`` carrying ``payload``.

        ``event_type`` may be a :class:`NamedEvent` subclass: the event is then an
        instance of it, so handlers registered for the class receive it.

        >>> class Tick(NamedEvent):
        ...     pass
        >>> EventFactory().create_event(5, event_type=Tick)
        Tick(id=1, payload=5, priority=0, headers=None)

        :param id: an explicit id, :attr:`AUTO` (sequential, the default) or :attr:`RANDOM`.
        """
        if id is IdStrategy.AUTO:
            id = next(self._ids)
        elif id is IdStrategy.RANDOM:
            id = self.random_id()
        if isinstance(event_type, type) and issubclass(event_type, NamedEvent):
            return event_type(id, payload, priority=priority, headers=headers)
        return Event(id, event_type, priority, payload, headers)
