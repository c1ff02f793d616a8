"""A receiving process for tests/test_redis.py, meant to be killed mid-stream.

``python tests/redis_receiver_process.py URL STREAM GROUP CONSUMER OUTFILE [DELAY [CONCURRENCY]]``
reads STREAM as CONSUMER of GROUP and appends the id of every event it handles to OUTFILE (one
per line, flushed at once), then sleeps DELAY seconds per event so a test can catch it halfway.
With CONCURRENCY, the handler is registered with ``concurrency=CONCURRENCY``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from async_nexus import AsyncEventNexus, Event
from async_nexus.transports.redis import RedisStreamReceiver


async def main(
    url: str, stream: str, group: str, consumer: str, outfile: str, delay: float, concurrency: int
) -> None:
    nexus = AsyncEventNexus()
    # claim_idle is long: this process only reads; the test's rescuer does the claiming.
    nexus.add_producer(
        RedisStreamReceiver(url, stream, group=group, consumer=consumer, max_in_flight=100, claim_idle=600)
    )
    with open(outfile, "a", buffering=1) as out:

        async def record(event: Event, queue: Any) -> None:
            out.write(f"{event.id}\n")
            await asyncio.sleep(delay)

        nexus.add_handler(-1, record, concurrency=concurrency)
        await nexus.loop_forever()


if __name__ == "__main__":
    url, stream, group, consumer, outfile = sys.argv[1:6]
    delay = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    concurrency = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    asyncio.run(main(url, stream, group, consumer, outfile, delay, concurrency))
