"""What a registration does about a handler that runs too long: ``timeout=``.

The policy wraps the handler once, at registration, so a registration without one costs
nothing more per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .consumers import _describe
from .errors import BadCall, HandlerTimeout

# Internal: add_handler(timeout=) is the public face.
__all__: list[str] = []


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
