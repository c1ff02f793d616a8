"""The comparison page's program in Async Nexus: two listeners for one event, one of them async.

Run it with ``python docs/examples/compare_ours.py``; tests/test_docs_examples.py checks that it
prints :data:`EXPECTED_OUTPUT`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from async_nexus import AsyncEventNexus, NamedEvent

#: What the program prints; the comparison page shows the same for every library.
EXPECTED_OUTPUT = "welcome mail to ada\nwelcome mail to grace\n2 sign-ups\n"


class UserSignedUp(NamedEvent):
    """Someone signed up. Payload: their name."""


async def main() -> None:
    nexus = AsyncEventNexus(multiple=True)  # several handlers for one type
    signups = 0

    @nexus.on(UserSignedUp)
    async def send_welcome(event: UserSignedUp, queue: Any) -> None:
        await asyncio.sleep(0)  # stands in for talking to a mail server
        print(f"welcome mail to {event.payload}")

    @nexus.on(UserSignedUp)
    def count(event: UserSignedUp, queue: Any) -> None:
        nonlocal signups
        signups += 1

    async with nexus:  # leaving the block dispatches what is queued, then stops
        for number, name in enumerate(["ada", "grace"], start=1):
            await nexus.ingest(UserSignedUp(number, name))
    print(f"{signups} sign-ups")


if __name__ == "__main__":
    asyncio.run(main())
