"""A receiving process whose handler always fails and waits a minute between attempts.

``python -m tests.daemons.failing_receiver URL STREAM GROUP CONSUMER OUTFILE`` appends
``<event id> <attempt>`` to OUTFILE at every attempt (flushed at once), so that a test
can kill it while it waits for a retry and see another consumer take the entry over.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from async_nexus import AsyncEventNexus, Event, Retry, current_attempt
from async_nexus.transports.redis import RedisStreamReceiver


async def main(url: str, stream: str, group: str, consumer: str, outfile: str) -> None:
    nexus = AsyncEventNexus()
    nexus.add_producer(RedisStreamReceiver(url, stream, group=group, consumer=consumer, claim_idle=600))
    with open(outfile, "a", buffering=1) as out:

        async def fails(event: Event, queue: Any) -> None:
            out.write(f"{event.id} {current_attempt()}\n")
            raise ConnectionError("the downstream service is away")

        nexus.add_handler(-1, fails, retry=Retry(attempts=5, backoff=60, jitter=False))
        await nexus.loop_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
