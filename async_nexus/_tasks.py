"""The tasks a nexus runs: cancelling a set of them, and the one signal policy.

Every blocking entry (:meth:`AsyncEventNexus.run() <async_nexus.AsyncEventNexus.run>`,
:func:`~async_nexus.run_all` and ``python -m async_nexus run``) stops on signals the same
way, through :func:`stop_on_signals`: the first SIGINT or SIGTERM stops gracefully, a
second one stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["cancel_and_wait", "stop_on_signals"]

logger = logging.getLogger("async_nexus")

#: The signals a daemon stops on.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> int:
    """Cancel ``tasks`` and wait until every one has ended; return how many there were."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(tasks)


@contextmanager
def stop_on_signals(
    stop: Callable[[], None],
    task: asyncio.Task[Any],
    *,
    on_signal: Callable[[signal.Signals, int], None] | None = None,
    what: str = "the nexus",
) -> Iterator[list[signal.Signals]]:
    """Inside the block, the first SIGINT or SIGTERM calls ``stop()``, the next cancels ``task``.

    ``on_signal(signum, count)``, if given, is called first (the runner logs there). The
    block receives the list of signals received, in order. Where signals cannot be wired
    (not the main thread, or a loop without signal support), a ``WARNING`` says so once:
    Ctrl-C will not stop ``what``, the program must call its ``stop()``.
    """
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def handle(signum: signal.Signals) -> None:
        received.append(signum)
        if on_signal is not None:
            on_signal(signum, len(received))
        if len(received) == 1:
            stop()
        else:
            task.cancel()

    installed = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, handle, signum)
        except (NotImplementedError, RuntimeError, ValueError) as exc:
            logger.warning(
                "async_nexus: cannot stop %s on SIGINT/SIGTERM here (%s: %s); signals are wired "
                "only in the main thread of a loop that supports them, so Ctrl-C will not stop it. "
                "Call stop() to stop it gracefully, or run it from the main thread",
                what,
                type(exc).__name__,
                exc,
            )
            break
        installed.append(signum)
    try:
        yield received
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
