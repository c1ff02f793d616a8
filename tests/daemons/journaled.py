"""A daemon with a journal, for the crash tests in tests/test_journal_crash.py.

``python -m tests.daemons.journaled events JOURNAL ACCEPTED HANDLED FIRST LAST LEVEL`` ingests
the ids FIRST..LAST-1 into a journal at ``synchronous=LEVEL`` (sixteen producers at a time),
appending each id to ACCEPTED once its ``await ingest()`` returned, and handles every event by
appending its id to HANDLED. Once the events are in, it keeps running (replayed events are
handled too) until killed.

``python -m tests.daemons.journaled tail JOURNAL LOG HANDLED [OLDDIR]`` follows LOG with a
:class:`~async_nexus.filetail.FileTail` from its beginning (its rotated files in OLDDIR, if
given) and appends each line it handles to HANDLED.

``python -m tests.daemons.journaled slow-tail JOURNAL LOG HANDLED`` does the same with a slow
handler, for tests/test_fairness.py: it fsyncs HANDLED after each line and takes at least
1 ms a line, so that a backlog takes a while to drain.

``batch-tail`` and ``slow-batch-tail`` are ``tail`` and ``slow-tail`` with a FileTail that emits
batches of up to ten lines (``batch=10``); the handler writes each line of a batch.

All print ``READY`` once the loop runs. Lines are written unbuffered by line: what a
process wrote before it was killed is in the file.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any, Literal

from async_nexus import AsyncEventNexus, Event
from async_nexus.filetail import FileTail
from async_nexus.journal import SqliteJournal

PRODUCERS = 16


async def events(
    journal: str, accepted_path: str, handled_path: str, first: int, last: int, level: str
) -> None:
    synchronous: Literal["full", "normal"] = "full" if level == "full" else "normal"
    nexus = AsyncEventNexus(journal=SqliteJournal(journal, synchronous=synchronous), maxsize=1000)
    with open(accepted_path, "a", buffering=1) as accepted, open(handled_path, "a", buffering=1) as handled:
        nexus.add_handler("job", lambda event, queue: handled.write(f"{event.id}\n"))
        ids = iter(range(first, last))

        async def produce() -> None:
            for number in ids:  # shared: each id goes to one producer
                await nexus.ingest(Event(number, "job", 0, {"n": number}))
                accepted.write(f"{number}\n")

        task = nexus.start()
        print("READY", flush=True)
        await asyncio.gather(*(produce() for _ in range(PRODUCERS)))
        print("INGESTED", flush=True)
        await task


async def tail(
    journal: str,
    log: str,
    handled_path: str,
    olddir: str | None = None,
    slow: bool = False,
    batch: int | None = None,
) -> None:
    nexus = AsyncEventNexus(journal=SqliteJournal(journal, synchronous="normal"))
    with open(handled_path, "a", buffering=1) as handled:

        def handle(event: Event, queue: Any) -> None:
            for line in event.payload if batch else [event.payload]:
                started = time.perf_counter()
                handled.write(f"{line}\n")
                if slow:
                    os.fsync(handled.fileno())
                    # At least 1 ms a line, also where an fsync costs less (tmpfs).
                    rest = 0.001 - (time.perf_counter() - started)
                    if rest > 0:
                        time.sleep(rest)

        nexus.add_handler("line", handle)
        nexus.register(FileTail(log, start="beginning", poll_interval=0.01, olddir=olddir, batch=batch))
        task = nexus.start()
        print("READY", flush=True)
        await task


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "events":
        asyncio.run(events(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5]))
    elif mode == "slow-tail":
        asyncio.run(tail(*args, slow=True))
    elif mode == "batch-tail":
        asyncio.run(tail(*args, batch=10))
    elif mode == "slow-batch-tail":
        asyncio.run(tail(*args, slow=True, batch=10))
    else:
        asyncio.run(tail(*args))
