"""A daemon whose every event becomes a dead letter, for the crash test in tests/test_dead_letters.py.

``python -m tests.daemons.dead_lettering JOURNAL ACCEPTED FIRST`` ingests ids from FIRST on
into a journal (eight producers at a time), appending each id to ACCEPTED once its
``await ingest()`` returned. No handler takes them: each becomes a dead letter, which the
journal writes in the transaction that removes the event. Every tenth event is replayed
at once, so replays are cut short by the kill too. It runs until killed.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from async_nexus import AsyncEventNexus, Event
from async_nexus.journal import SqliteJournal

PRODUCERS = 8


async def main(journal: str, accepted_path: str, first: int) -> None:
    nexus = AsyncEventNexus(journal=SqliteJournal(journal, synchronous="normal"), maxsize=1000)
    nexus.on_error(lambda exc, subject: None)
    with open(accepted_path, "a", buffering=1) as accepted:
        ids = itertools.count(first)

        async def produce() -> None:
            for number in ids:  # shared: each id goes to one producer
                await nexus.ingest(Event(number, "job", 0, {"n": number}))
                accepted.write(f"{number}\n")

        async def replay() -> None:
            while True:
                letters = await nexus.dead_letters(limit=5)
                await nexus.replay_dead_letters(
                    [letter.id for letter in letters if letter.event.id % 10 == 0]
                )
                await asyncio.sleep(0.005)

        nexus.start()
        print("READY", flush=True)
        await asyncio.gather(replay(), *(produce() for _ in range(PRODUCERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
