"""What a registration does about a handler that fails: ``retry=``, and ``timeout=``.

Each policy wraps the handler once, at registration, so a registration without one costs
nothing more per event. A failure that is not the last attempt is logged at ``WARNING``
and retried after a backoff; only the final failure reaches the error hook and makes the
event a dead letter (:mod:`~async_nexus.outcomes`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

from .consumers import _describe
from .dispatch import Dispatcher
from .errors import BadCall, BadType, BadValue, HandlerTimeout
from .items import ATTEMPT

__all__ = ["Retry", "current_attempt"]

logger = logging.getLogger("async_nexus")


def check_timeout(timeout: object, is_async: bool, handler: object) -> None:
    """Refuse a ``timeout`` that cannot work, saying why."""
    if timeout is None:
        return
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise BadCall(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not is_async:
        raise BadCall(
            f"timeout={timeout!r} for {_describe(handler)}, which is a plain function: a function "
            "that does not await cannot be cut off; make it `async def`, or drop timeout="
        )


def with_timeout(function: Callable[..., Any], timeout: float, handler: object) -> Callable[..., Any]:
    """``function`` (async), cancelled and failed with :class:`HandlerTimeout` after ``timeout`` s."""

    async def guarded(event: Any, queue: Any) -> Any:
        try:
            return await asyncio.wait_for(function(event, queue), timeout)
        except asyncio.TimeoutError:
            raise HandlerTimeout(
                f"{_describe(handler)} ran longer than timeout={timeout:g}s on event "
                f"{getattr(event, 'id', '?')!r} of type {getattr(event, 'type', '?')!r}, and was cancelled"
            ) from None

    return guarded


@dataclasses.dataclass(frozen=True)
class Retry:
    """How a registration retries a failed handler: ``add_handler(..., retry=Retry())``.

    :param attempts: how many times the handler is called at most, the first call included.
    :param backoff: seconds to wait after the first failed attempt; the wait doubles after
        each failure: before attempt k+1 it is ``backoff * 2**(k-1)``.
    :param max_backoff: the longest wait.
    :param jitter: wait a random 50 to 100% of that, so that events that failed together
        (a database that was down) do not all come back at once.
    :param on: the exception class, or tuple of classes, that are retried; any other
        failure is final at once.
    :raises ~async_nexus.errors.BadValue: (a :class:`ValueError`) ``attempts`` below 1, or
        a negative ``backoff`` or ``max_backoff``.
    :raises ~async_nexus.errors.BadType: (a :class:`TypeError`) ``on`` is not an exception
        class or a tuple of them.

    >>> Retry(attempts=4, backoff=1.0, jitter=False).delay(3)
    4.0
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 30.0
    jitter: bool = True
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise BadValue(
                "Retry(attempts=) counts every call, the first one included: an int >= 1, "
                f"got {self.attempts!r}"
            )
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise BadValue(f"Retry({name}=) is a number of seconds >= 0, got {value!r}")
        classes = self.on if isinstance(self.on, tuple) else (self.on,)
        if not classes or not all(isinstance(c, type) and issubclass(c, Exception) for c in classes):
            raise BadType(
                f"Retry(on=) takes an exception class or a tuple of them (subclasses of Exception), "
                f"got {self.on!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first call)."""
        wait: float = min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff)
        if self.jitter:
            wait *= random.uniform(0.5, 1.0)
        return wait


def current_attempt() -> int:
    """Which attempt at its event the calling handler is making: 1, then 2, ... under ``retry=``.

    Outside a handler, and in a handler without ``retry=``, it is 1. Call it in the handler
    itself (or in what it calls): each handler's run sees its own attempt, concurrent ones
    included.
    """
    return ATTEMPT.get()


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
    dispatcher: Dispatcher,
    *,
    in_place: bool,
) -> tuple[Callable[..., Any], bool, list[tuple[Callable[..., Any], bool | None]]]:
    """``function`` retried under ``retry``: failures are final only at the last attempt.

    In place (a keyed lane), the retry waits in the handler's task, so later events of its
    key wait behind it and keep their order. Otherwise a failure schedules the event again
    for this registration alone, and the handler returns at once: the wait holds nothing.
    Returns the function, whether it is async, and a list to put this registration's
    runner in, where a retry is sent (it exists only once the registration is built).
    """
    target: list[tuple[Callable[..., Any], bool | None]] = []
    name = getattr(handler, "__qualname__", None) or _describe(handler)

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
                await dispatcher.scheduler.sleep(delay)
                ATTEMPT.set(ATTEMPT.get() + 1)  # the task's own context: no reset needed

        return in_task, True, target

    def later_or_final(exc: Exception, event: Any) -> None:
        """Schedule the next attempt for this registration, or raise ``exc``: it is final."""
        delay = retried(exc, event)
        if delay is None:
            raise exc
        dispatcher.retry_later(event, target[0], delay)

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
