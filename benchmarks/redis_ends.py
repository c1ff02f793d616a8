"""The two ends of scenario 7, one process each: ``python redis_ends.py ROLE URL STREAM N``.

ROLE is ``plain-send``, ``plain-receive``, ``nexus-send`` or ``nexus-receive``. A sender
prints the wall-clock time just before its first event; a receiver prints ``ready`` once its
group reads, then the time at which its handler got the last event.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from async_nexus import AsyncEventNexus, Event

BATCH = 500
GROUP = "bench"
PAYLOAD = "x" * 32


async def plain_send(url: str, stream: str, n: int) -> None:
    client = aioredis.from_url(url)
    print(time.time(), flush=True)
    for first in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + BATCH, n)):
            pipe.xadd(stream, {"id": i, "type": 1, "payload": PAYLOAD})
        await pipe.execute()
    await client.aclose()


async def plain_receive(url: str, stream: str, n: int) -> None:
    client = aioredis.from_url(url)
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    print("ready", flush=True)
    seen = 0
    while seen < n:
        # redis-py types the reply as a union it cannot narrow: [(stream, [(id, fields)])].
        reply: Any = await client.xreadgroup(GROUP, "plain", {stream: ">"}, count=BATCH, block=1000)
        for _, entries in reply:
            for _, fields in entries:
                Event(int(fields[b"id"]), int(fields[b"type"]), 0, fields[b"payload"].decode())
                seen += 1
            await client.xack(stream, GROUP, *(entry_id for entry_id, _ in entries))
    print(time.time(), flush=True)
    await client.aclose()


async def nexus_send(url: str, stream: str, n: int) -> None:
    from async_nexus.transports.redis import RedisStreamSender

    nexus, sender = AsyncEventNexus(), RedisStreamSender(url, stream)
    nexus.add_handler(1, sender)
    task = nexus.start()
    print(time.time(), flush=True)
    for i in range(n):
        await nexus.ingest(Event(i, 1, 0, PAYLOAD))
    await nexus.join()
    await sender.flush()
    nexus.stop()
    await task
    await sender.close()


async def nexus_receive(url: str, stream: str, n: int) -> None:
    from async_nexus.transports.redis import RedisStreamReceiver

    nexus = AsyncEventNexus()
    receiver = RedisStreamReceiver(url, stream, group=GROUP, consumer="nexus")
    done = asyncio.get_running_loop().create_future()
    seen = 0

    def handler(event: Event, queue: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set_result(time.time())

    nexus.add_handler(1, handler)
    nexus.add_producer(receiver)
    task = nexus.start()
    await receiver.wait_ready(timeout=30)
    print("ready", flush=True)
    print(await done, flush=True)
    nexus.stop()
    await task


ROLES = {
    "plain-send": plain_send,
    "plain-receive": plain_receive,
    "nexus-send": nexus_send,
    "nexus-receive": nexus_receive,
}

if __name__ == "__main__":
    role, url, stream, count = sys.argv[1:5]
    asyncio.run(ROLES[role](url, stream, int(count)))
