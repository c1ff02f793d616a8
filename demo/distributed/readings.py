"""What the sensor and the worker share: the event they exchange and the codec that carries it."""

from __future__ import annotations

import os

from async_nexus import NamedEvent
from async_nexus.codec import EventCodec

DEFAULT_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_STREAM = "demo:readings"


class Reading(NamedEvent):
    """One temperature reading; payload ``{"sensor": str, "celsius": float}``."""


#: Named events cross only through a registry: the worker rebuilds ``Reading`` from it.
CODEC = EventCodec(named_events=[Reading])
