"""The watchdog: names the function that holds the event loop longer than a threshold.

A sync handler or filter that blocks (``time.sleep()``, a slow query without ``await``)
stops every other handler, source and timer of the program. The loop cannot notice that
itself while it is held, and measuring every callback would cost every event, so a thread
of its own watches from outside. Every half threshold it looks at the stack of the loop's
thread; when code outside asyncio and this library is running there, it schedules a
heartbeat on the loop. If the heartbeat has not run a threshold later and the same call
is still on the stack, that call has held the loop all along: it is named, with its file
and line, in a ``WARNING`` on the ``async_nexus`` logger, once per hold. An idle loop (in
``select()``) costs one look at its stack per half threshold, and no heartbeat.

:class:`~async_nexus.AsyncEventNexus` runs one while its loop runs; its
``slow_callback_warning`` keyword sets the threshold (``None``: no watchdog).
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from .errors import BadValue

# Internal: configured through AsyncEventNexus(slow_callback_warning=...).
__all__: list[str] = []

logger = logging.getLogger("async_nexus")

# Frames from these are the loop's machinery, never the code that holds it.
_MACHINERY = (
    os.path.normcase(os.path.dirname(asyncio.__file__ or "")) + os.sep,
    os.path.normcase(os.path.dirname(__file__)) + os.sep,
    os.path.normcase(selectors.__file__ or ""),
)


def check_threshold(seconds: float | None) -> float | None:
    """Return ``seconds`` as a float, or raise :class:`~async_nexus.errors.BadValue` if it is no threshold."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise BadValue(
            f"slow_callback_warning is a number of seconds > 0, or None for no warning; got {seconds!r}"
        )
    return float(seconds)


class Watchdog:
    """Watches the loop that :meth:`start` is called in, from a daemon thread, until :meth:`stop`."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = check_threshold(threshold)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: The longest time, in seconds, a heartbeat of the watchdog waited for the loop to
        #: run it: how long the loop was held at least (0.0 until a hold is seen).
        self.longest_stall = 0.0

    def start(self) -> None:
        """Start watching the running loop (nothing when the threshold is ``None``)."""
        if self.threshold is None or self._thread is not None:
            return
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=_Watch(self.threshold, asyncio.get_running_loop(), self._stopping, self._stalled).run,
            name="async_nexus watchdog",
            daemon=True,
        )
        self._thread.start()

    def _stalled(self, seconds: float) -> None:
        # Called in the loop's thread, by the heartbeat: the only writer.
        if seconds > self.longest_stall:
            self.longest_stall = seconds

    def stop(self) -> None:
        """Stop watching; returns once the thread has ended."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()


class _Watch:
    """The watchdog thread's work: one per run of the loop."""

    def __init__(
        self,
        threshold: float,
        loop: asyncio.AbstractEventLoop,
        stopping: threading.Event,
        stalled: Callable[[float], None],
    ) -> None:
        self.threshold = threshold
        self.stalled = stalled
        self.loop = loop
        self.loop_thread = threading.get_ident()  # constructed in the loop's thread
        self.stopping = stopping
        self.machinery: dict[str, bool] = {}

    def run(self) -> None:
        answered = threading.Event()
        suspect: FrameType | None = None  # the call seen running when the heartbeat was sent
        since = 0.0
        warned = False
        while not self.stopping.wait(self.threshold / 2):
            if suspect is None or answered.is_set():
                # The loop came round (or was not watched): look again.
                suspect = self.culprit()
                if suspect is None:
                    continue  # the loop waits, or runs its own machinery
                since, warned = time.monotonic(), False
                answered.clear()
                try:
                    self.loop.call_soon_threadsafe(self.beat, answered, time.monotonic())
                except RuntimeError:
                    return  # the loop is closed
                continue
            held = time.monotonic() - since
            now = self.culprit()
            if now is not suspect:
                suspect, since, warned = now, time.monotonic(), False  # another call: start over
            elif not warned and held >= self.threshold:
                warned = True
                self.warn(suspect, held)

    def beat(self, answered: threading.Event, sent: float) -> None:
        """The heartbeat, run by the loop: how late it runs is how long the loop was held."""
        answered.set()
        self.stalled(time.monotonic() - sent)

    def culprit(self) -> FrameType | None:
        """The outermost frame of the innermost run of frames outside the loop's machinery."""
        frame = sys._current_frames().get(self.loop_thread)
        found = None
        while frame is not None:
            if self.is_machinery(frame.f_code.co_filename):
                if found is not None:
                    return found
            else:
                found = frame
            frame = frame.f_back
        return None

    def is_machinery(self, filename: str) -> bool:
        known = self.machinery.get(filename)
        if known is None:
            known = self.machinery[filename] = os.path.normcase(filename).startswith(_MACHINERY)
        return known

    def warn(self, frame: FrameType, held: float) -> None:
        code = frame.f_code
        where = code.co_filename
        here = os.getcwd() + os.sep
        if where.startswith(here):
            where = where[len(here) :]
        logger.warning(
            "async_nexus: %s (%s:%d) has held the event loop for %.2fs and counting "
            "(slow_callback_warning=%s): no other handler, source or timer runs meanwhile. "
            "Make it async, or run the blocking part with await asyncio.to_thread(...)",
            getattr(code, "co_qualname", code.co_name),
            where,
            frame.f_lineno,
            held,
            self.threshold,
        )
