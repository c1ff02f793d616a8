"""The tasks a nexus runs: cancelling a set of them, and the signals that stop them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["cancel_and_wait", "stop_signals"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> int:
    """Cancel ``tasks`` and wait until every one has ended; return how many there were."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(tasks)


@contextmanager
def stop_signals(on_signal: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Call ``on_signal(signum)`` on SIGINT and SIGTERM in the running loop, inside the block."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not supported here
            pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
