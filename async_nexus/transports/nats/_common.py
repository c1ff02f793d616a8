"""What the sender, the receiver and the stream helper share: connections, checks, backoff."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from ...errors import BadCall, BadValue
from .._retrying import Backoff as SharedBackoff

logger = logging.getLogger("async_nexus.nats")

# What a failing call raises while no server, or no stream leader, answers: nats-py's
# errors (timeouts, no responders, a closed or reconnecting connection, JetStream API
# errors such as "no leader") and the socket's own.
UNREACHABLE = (nats.errors.Error, asyncio.TimeoutError, OSError)

# Stream names may not hold these (they are subject tokens or path separators).
_BAD_NAME = re.compile(r"[\s.*>/\\]")

Servers = str | Sequence[str]


def server_list(servers: Servers) -> list[str]:
    """``servers`` as the list nats-py takes, refusing what is not one."""
    found = [servers] if isinstance(servers, str) else list(servers)
    if not found or not all(isinstance(url, str) and url for url in found):
        raise BadCall(f"servers must be a nats:// URL or a list of them, got {servers!r}")
    return found


def check_subject(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise BadCall(f"{what} must be a non-empty NATS subject without spaces, got {value!r}")


def check_publish_subject(what: str, value: object) -> None:
    """A subject to publish to: one subject, no wildcard."""
    check_subject(what, value)
    assert isinstance(value, str)
    if {"*", ">"} & set(value.split(".")):
        raise BadValue(f"{what} must be one subject to publish to, not a wildcard: {value!r}")


def check_stream_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or _BAD_NAME.search(value):
        raise BadCall(
            f"{what} must be a non-empty stream or consumer name without spaces, '.', '*', '>' "
            f"or slashes, got {value!r}"
        )


async def connect(
    servers: list[str], what: str, options: Mapping[str, Any], closing: Callable[[], bool] = lambda: False
) -> Client:
    """A connection that reconnects by itself for ever, the first connect too.

    nats-py keeps a dropped connection reconnecting in the background; what is published
    meanwhile waits in its buffer or times out, and our own backoff publishes it again.
    """

    async def disconnected() -> None:
        if closing():
            return  # our own close
        logger.warning("%s: disconnected from NATS; reconnecting", what)

    async def reconnected() -> None:
        errors.reset()
        logger.info("%s: reconnected to NATS", what)

    errors = ErrorLog(what)

    async def error(exc: Exception) -> None:
        errors.log(exc)

    settings: dict[str, Any] = {
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "name": what,
        **options,
    }
    return await nats.connect(servers, **settings)


class ErrorLog:
    """Logs the errors of a connection that keeps retrying: the first, then one every
    ``every`` seconds with their count, so a server away for an hour is no flood."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what = what
        self.every = every
        self.count = 0
        self._last = -math.inf

    def log(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        logger.warning(
            "%s: cannot reach NATS (%s: %s); retrying (%d failed attempt(s) so far)",
            self.what,
            type(exc).__name__,
            exc or "no answer",
            self.count,
        )

    def reset(self) -> None:
        self.count = 0
        self._last = -math.inf


class Connection:
    """One lazily made connection, made again with backoff until a server answers."""

    def __init__(
        self, servers: list[str], what: str, backoff: tuple[float, float], options: Mapping[str, Any]
    ):
        self._servers = servers
        self._what = what
        self._backoff = backoff
        self._options = dict(options)
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    @property
    def client(self) -> Client | None:
        """The connection if it was made (it may be reconnecting)."""
        return self._client

    async def get(self) -> Client:
        """The connection, made first if need be; waits (retrying, logged) while no server answers."""
        client = self._client
        if client is not None and not client.is_closed:
            return client
        async with self._lock:
            backoff = Backoff(f"{self._what}: connecting to {', '.join(self._servers)}", *self._backoff)
            while self._client is None or self._client.is_closed:
                try:
                    self._client = await connect(
                        self._servers, self._what, self._options, lambda: self._closing
                    )
                except UNREACHABLE as exc:
                    await backoff.failed(exc)
            backoff.succeeded()
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        self._closing = True
        try:
            await close_quietly(client)
        finally:
            self._closing = False


async def close_quietly(client: Client | None, timeout: float = 2.0) -> None:
    """Close ``client`` without waiting on a server that is gone."""
    if client is None or client.is_closed:
        return
    try:
        await asyncio.wait_for(client.close(), timeout)
    except Exception as exc:  # nothing to do about it but go on
        # Besides its own errors, nats-py on Python 3.13 raises TypeError when it writes
        # what it buffered to a socket that is already gone (a server that went away). Its
        # tasks are cancelled by then; the connection is done with either way.
        logger.debug("closing a NATS connection failed: %s: %s", type(exc).__name__, exc)


class Backoff(SharedBackoff):
    """Exponential backoff with jitter between attempts, logged to the NATS logger."""

    log = logger
