"""Async Nexus: typed events from many sources, routed by one asyncio loop."""

from . import errors
from .boundaries import AsyncEventBoundary
from .consumers import EventConsumer, EventDiscarder, EventFanout
from .domains import NexusGroup, run_all
from .events import Event, EventFactory, NamedEvent
from .nexus import AsyncEventNexus, NexusState
from .sources import EventConverter, EventProducer, EventSource, SimpleEventConverter, Timer

__version__ = "2.0.0"

__all__ = [
    "AsyncEventBoundary",
    "AsyncEventNexus",
    "Event",
    "EventConsumer",
    "EventConverter",
    "EventDiscarder",
    "EventFactory",
    "EventFanout",
    "EventProducer",
    "EventSource",
    "NamedEvent",
    "NexusGroup",
    "NexusState",
    "SimpleEventConverter",
    "Timer",
    "errors",
    "run_all",
    "__version__",
]
