"""Target for ``python -m async_nexus run tests.daemons.forwarder:build`` in tests/test_runner.py.

A nexus whose only handler is a :class:`RedisStreamSender`: at start it ingests
``FORWARD_COUNT`` events, then prints ``PRODUCED <n> BUFFERED <pending>`` and waits for a
signal. The sender writes to ``FORWARD_STREAM`` at ``FORWARD_URL``.
"""

from __future__ import annotations

import asyncio
import os

from async_nexus import AsyncEventNexus, Event, EventProducer
from async_nexus.transports.redis import RedisStreamSender


class Burst(EventProducer):
    """Ingests ``count`` events at once, says so, and idles."""

    def __init__(self, count: int, sender: RedisStreamSender) -> None:
        super().__init__()
        self.count, self.sender = count, sender

    async def start(self) -> None:
        for number in range(self.count):
            await self.distribute_event(Event(number, "job", 0, number))
        await asyncio.sleep(0)  # the loop hands the last of them to the sender
        while self.sender.pending < self.count and self.sender.sent == 0:
            await asyncio.sleep(0.01)
        print(f"PRODUCED {self.count} BUFFERED {self.sender.pending}")
        await asyncio.get_running_loop().create_future()


def build() -> AsyncEventNexus:
    sender = RedisStreamSender(os.environ["FORWARD_URL"], os.environ["FORWARD_STREAM"])
    nexus = AsyncEventNexus()
    nexus.add_handler("job", sender)
    nexus.add_producer(Burst(int(os.environ["FORWARD_COUNT"]), sender))
    return nexus
