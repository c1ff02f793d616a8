"""What the sender, the receiver and the dead letters share: connections, checks, backoff."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ...errors import BadCall, BadValue

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


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadValue(f"{name} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise BadValue(f"{name} must be a positive int, got {value!r}")


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    The cancellation is repeated while a task runs on: on Python 3.11, ``asyncio.wait_for``
    (which redis-py uses around socket writes) loses a cancellation that arrives just as
    the operation it waits for completes.
    """
    pending = {task for task in tasks if task is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class Backoff:
    """Exponential backoff with jitter between attempts, logged while it lasts."""

    def __init__(self, what: str, initial: float, maximum: float) -> None:
        self.what = what
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    async def failed(self, exc: BaseException) -> None:
        self.failures += 1
        delay = min(self.maximum, self.initial * 2 ** min(self.failures - 1, 30))
        delay *= random.uniform(0.75, 1.0)
        logger.warning(
            "%s failed (%s: %s); attempt %d, retrying in %.2f s",
            self.what,
            type(exc).__name__,
            exc,
            self.failures,
            delay,
        )
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        if self.failures:
            logger.info("%s works again after %d failed attempt(s)", self.what, self.failures)
            self.failures = 0


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
