"""Async Nexus: typed events from many sources, routed by one asyncio loop."""

from . import errors
from .boundaries import AsyncEventBoundary
from .consumers import (
    EventConsumer,
    EventDiscarder,
    EventFanout,
    FilterFunc,
    GenericHandler,
    create_handler_coro,
)
from .dead_letters import DeadLetter
from .domains import NexusGroup, run_all
from .events import Event, EventFactory, EventTypeID, NamedEvent, NamedEventTypeVar
from .filetail import FileTail
from .nexus import AsyncEventNexus, NexusState
from .policy import Retry, current_attempt
from .schedule import ScheduledEvent
from .sources import EventConverter, EventProducer, EventSource, SimpleEventConverter
from .timers import Timer

__version__ = "2.0.0"

__all__ = [
    "AsyncEventBoundary",
    "AsyncEventNexus",
    "DeadLetter",
    "Event",
    "EventConsumer",
    "EventConverter",
    "EventDiscarder",
    "EventFactory",
    "EventFanout",
    "EventProducer",
    "EventSource",
    "EventTypeID",
    "FileTail",
    "FilterFunc",
    "GenericHandler",
    "NamedEvent",
    "NamedEventTypeVar",
    "NexusGroup",
    "NexusState",
    "Retry",
    "ScheduledEvent",
    "SimpleEventConverter",
    "Timer",
    "create_handler_coro",
    "current_attempt",
    "errors",
    "run_all",
    "__version__",
]
