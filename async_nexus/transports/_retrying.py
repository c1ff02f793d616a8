"""What the transports share: checking their settings, backing off between attempts, stopping tasks.

Private to :mod:`async_nexus.transports`: each transport subclasses :class:`Backoff` to log
to its own logger.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, ClassVar

from ..errors import BadValue

__all__ = ["Backoff", "check_positive", "stop_tasks"]


def check_positive(name: str, value: float, *, integer: bool = False) -> None:
    """Refuse ``value`` for the setting ``name`` unless it is a positive number (an int if ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadValue(f"{name} must be a positive number, got {value!r}")
    if integer and not isinstance(value, int):
        raise BadValue(f"{name} must be a positive int, got {value!r}")


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    The cancellation is repeated while a task runs on: ``asyncio.wait_for``, which redis-py
    and nats-py use around their I/O, can lose a cancellation that arrives just as the
    operation it waits for completes (seen on Python 3.11).
    """
    pending = {task for task in tasks if task is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


class Backoff:
    """Exponential backoff with jitter between attempts, logged while it lasts."""

    #: Where the attempts are logged; each transport names its own.
    log: ClassVar[logging.Logger] = logging.getLogger("async_nexus")

    def __init__(self, what: str, initial: float, maximum: float) -> None:
        self.what = what
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    async def failed(self, exc: BaseException) -> None:
        """Log the failure of an attempt and wait before the next one."""
        self.failures += 1
        delay = min(self.maximum, self.initial * 2 ** min(self.failures - 1, 30))
        delay *= random.uniform(0.75, 1.0)
        self.log.warning(
            "%s failed (%s: %s); attempt %d, retrying in %.2f s",
            self.what,
            type(exc).__name__,
            exc or "no answer",
            self.failures,
            delay,
        )
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        """An attempt worked: say so if earlier ones had failed, and start over."""
        if self.failures:
            self.log.info("%s works again after %d failed attempt(s)", self.what, self.failures)
            self.failures = 0
