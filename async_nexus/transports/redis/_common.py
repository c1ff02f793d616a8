"""What the sender, the receiver and the dead letters share: connections, checks, backoff."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ...errors import BadCall
from .._retrying import Backoff as SharedBackoff

logger = logging.getLogger("async_nexus.redis")

# The package re-exports this with its documentation; here it is what the modules share.
EVENT_FIELD = b"event"

# What a failing command raises when Redis cannot be reached (redis-py wraps most socket
# errors, not all of them).
UNREACHABLE = (RedisError, OSError)

# Longer than any blocking read, short enough to notice a peer gone silent.
SOCKET_TIMEOUT = 10.0

# XACK and XCLAIM take this many ids per command at most.
IDS_PER_COMMAND = 1000

Fields = dict[bytes, bytes]


def check_options(options: Mapping[str, Any], *, block: float | None = None) -> None:
    """Refuse redis-py options the transport cannot work with (``block``: a receiver's reads)."""
    if options.get("decode_responses"):
        raise BadCall("the Redis transport reads raw bytes; do not pass decode_responses=True")
    timeout = options.get("socket_timeout", SOCKET_TIMEOUT)
    if block is not None and timeout is not None and timeout <= block:
        raise BadCall(
            f"socket_timeout={timeout} would cut every blocking read of block={block} s; "
            "make socket_timeout longer than block"
        )


def connect(url: str, options: Mapping[str, Any]) -> aioredis.Redis:
    """A client for ``url``; failures surface at once so our own backoff decides what next."""
    settings: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": 5.0,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_keepalive": True,
        **options,
        "decode_responses": False,
    }
    return aioredis.from_url(url, **settings)


def check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise BadCall(f"{what} must be a non-empty str, got {value!r}")


class Backoff(SharedBackoff):
    """Exponential backoff with jitter between attempts, logged to the Redis logger."""

    log = logger


def stream_entries(response: Any) -> list[tuple[bytes, Fields]]:
    """The entries of an XREADGROUP reply for one stream, in RESP2 or RESP3 shape."""
    if not response:
        return []
    if isinstance(response, Mapping):  # RESP3: {stream: [[entry, ...]]}
        found: list[tuple[bytes, Fields]] = []
        for item in next(iter(response.values())):
            if isinstance(item, tuple):
                found.append(item)
            else:
                found.extend(item)
        return found
    return list(response[0][1])


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
