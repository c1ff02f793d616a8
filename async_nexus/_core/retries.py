"""The policies of a registration: ``timeout=`` and ``retry=`` wrap its handler once.

Each policy wraps the handler at registration, so a registration without one costs
nothing more per event. A failure that is not the last attempt is logged at ``WARNING``
and retried after a backoff; only the final failure reaches the error hook and makes the
event a dead letter (:mod:`~async_nexus._core.outcomes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..consumers import describe
from ..errors import BadCall, HandlerTimeout
from ..events import Event
from ..policy import ATTEMPT, Retry

# Internal: the public face is AsyncEventNexus.add_handler(timeout=, retry=).
__all__: list[str] = []

logger = logging.getLogger("async_nexus")

#: A registration's runner: ``(function, is_async)``, ``is_async`` None for a lane.
Runner = tuple[Callable[..., Any], "bool | None"]


def check_timeout(timeout: object, is_async: bool, handler: object) -> None:
    """Refuse a ``timeout`` that cannot work, saying why."""
    if timeout is None:
        return
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise BadCall(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not is_async:
        raise BadCall(
            f"timeout={timeout!r} for {describe(handler)}, which is a plain function: a function "
            "that does not await cannot be cut off; make it `async def`, or drop timeout="
        )


def with_timeout(function: Callable[..., Any], timeout: float, handler: object) -> Callable[..., Any]:
    """``function`` (async), cancelled and failed with :class:`HandlerTimeout` after ``timeout`` s."""

    async def guarded(event: Any, queue: Any) -> Any:
        try:
            return await asyncio.wait_for(function(event, queue), timeout)
        except asyncio.TimeoutError:
            raise HandlerTimeout(
                f"{describe(handler)} ran longer than timeout={timeout:g}s on event "
                f"{getattr(event, 'id', '?')!r} of type {getattr(event, 'type', '?')!r}, and was cancelled"
            ) from None

    return guarded


def check_retry(retry: object) -> None:
    """Refuse a ``retry=`` that is not a :class:`Retry`."""
    if retry is not None and not isinstance(retry, Retry):
        raise BadCall(
            f"retry= takes async_nexus.Retry(...), got {retry!r} of type {type(retry).__qualname__}"
        )


def with_retry(
    function: Callable[..., Any],
    is_async: bool,
    retry: Retry,
    handler: object,
    *,
    in_place: bool,
    sleep: Callable[[float], Awaitable[None]],
    again_in: Callable[[Event, Runner, float], None],
) -> tuple[Callable[..., Any], bool, list[Runner]]:
    """``function`` retried under ``retry``: failures are final only at the last attempt.

    In place (a keyed lane), the retry waits in the handler's task, so later events of its
    key wait behind it and keep their order. Otherwise a failure schedules the event again
    for this registration alone, and the handler returns at once: the wait holds nothing.
    Returns the function, whether it is async, and a list to put this registration's
    runner in, where a retry is sent (it exists only once the registration is built).
    """
    target: list[Runner] = []
    name = getattr(handler, "__qualname__", None) or describe(handler)

    def retried(exc: Exception, event: Any) -> float | None:
        """The wait before the next attempt, or None if this failure is final."""
        attempt = ATTEMPT.get()
        if attempt >= retry.attempts or not isinstance(exc, retry.on):
            return None
        delay = retry.delay(attempt)
        logger.warning(
            "async_nexus: %s failed on attempt %d of %d at event %r of type %r (%s: %s); "
            "retrying in %.3gs",
            name, attempt, retry.attempts, getattr(event, "id", "?"), getattr(event, "type", "?"),
            type(exc).__qualname__, exc, delay,
        )  # fmt: skip
        return delay

    if in_place:

        async def in_task(event: Any, queue: Any) -> Any:
            while True:
                try:
                    result = function(event, queue)
                    return (await result) if is_async else result
                except Exception as exc:
                    delay = retried(exc, event)
                    if delay is None:
                        raise
                await sleep(delay)
                ATTEMPT.set(ATTEMPT.get() + 1)  # the task's own context: no reset needed

        return in_task, True, target

    def later_or_final(exc: Exception, event: Any) -> None:
        """Schedule the next attempt for this registration, or raise ``exc``: it is final."""
        delay = retried(exc, event)
        if delay is None:
            raise exc
        again_in(event, target[0], delay)

    if is_async:

        async def again_later(event: Any, queue: Any) -> Any:
            try:
                return await function(event, queue)
            except Exception as exc:
                later_or_final(exc, event)
                return None

        return again_later, True, target

    def again_later_sync(event: Any, queue: Any) -> Any:
        try:
            return function(event, queue)
        except Exception as exc:
            later_or_final(exc, event)
            return None

    return again_later_sync, False, target
