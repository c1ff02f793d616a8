"""What a registration does about a handler that fails: :class:`Retry`, and which attempt runs.

A registration given ``retry=Retry(...)`` calls its handler again when it fails, after a
backoff; a failure that is not the last attempt is logged at ``WARNING``, and only the
final failure reaches the error hook and makes the event a dead letter.
:func:`current_attempt` tells a handler which attempt it is making.
"""

from __future__ import annotations

import contextvars
import dataclasses
import random

from .errors import BadType, BadValue

__all__ = ["Retry", "current_attempt"]

#: Which attempt at its event the running handler makes: 1, then 2, ... under ``retry=``.
ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("async_nexus_attempt", default=1)


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
