"""Scenario 10, file tail: lines from a file into one handler, run by ``child.py`` one task per child.

Each function reads a fresh file of ``n`` log lines (about 100 bytes each, written before the
clock starts, in a new directory under ``directory``), hands each line to one sync handler as
text without its line end, and returns the seconds from the start to the moment the handler
got the last line, with ``handled``, the lines it got.

``nexus`` follows the file with a :class:`~async_nexus.FileTail` in a nexus, with or without a
journal (``synchronous=normal``: each event is then stored until handled, and the tail's
position is saved with it), an event per line or, with ``batch``, per batch of lines.
``floor`` is a plain Python loop over the file's lines:
what reading the file costs, with nothing in between.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import async_nexus
from async_nexus import AsyncEventNexus, Event, FileTail

from .work import Countdown

NAME = "filetail"
UNSUPPORTED: dict[str, str] = {}


def version() -> str:
    return f"async-nexus {async_nexus.__version__}"


def _log(n: int, directory: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=directory))
    path = folder / "app.log"
    with path.open("w") as out:
        for i in range(n):
            out.write(f"2024-05-01T12:00:00.{i % 1000:03d}Z INFO request {i} GET /api/items 200 in 12 ms\n")
    return path


class _Handler:
    """The one sync handler: it counts the lines it gets."""

    __slots__ = ("handled", "last")

    def __init__(self) -> None:
        self.handled = 0
        self.last = ""

    def __call__(self, line: str) -> None:
        self.handled += 1
        self.last = line


async def nexus(n: int, directory: str, journal: bool, batch: int | None = None) -> dict[str, Any]:
    """A nexus pulling a FileTail of the file from its beginning, with a journal or without.

    With ``batch``, the tail emits lists of up to that many lines, and the nexus's handler
    hands each line of them to the sync handler.
    """
    path = _log(n, directory)
    options: dict[str, Any] = {}
    if journal:
        from async_nexus.journal import SqliteJournal

        options["journal"] = SqliteJournal(path.parent / "journal.db", synchronous="normal")
    hub = AsyncEventNexus(**options)
    count, handler = Countdown(n), _Handler()

    def handle(event: Event, queue: Any) -> None:
        handler(event.payload)
        count.hit()

    def handle_batch(event: Event, queue: Any) -> None:
        for line in event.payload:
            handler(line)
        count.hit(len(event.payload))

    hub.add_handler("line", handle if batch is None else handle_batch)
    hub.register(FileTail(path, start="beginning", poll_interval=0.01, batch=batch))
    started = perf_counter()
    task = hub.start()
    await count.wait()
    seconds = perf_counter() - started
    hub.stop()
    await task
    return {"seconds": seconds, "handled": handler.handled}


async def floor(n: int, directory: str) -> dict[str, Any]:
    """The floor: ``for line in file`` (text mode, line ends stripped) into the handler."""
    path = _log(n, directory)
    handler = _Handler()
    started = perf_counter()
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            handler(line.rstrip("\n"))
    seconds = perf_counter() - started
    return {"seconds": seconds, "handled": handler.handled}
