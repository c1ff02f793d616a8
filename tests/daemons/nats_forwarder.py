"""Target for ``python -m async_nexus run tests.daemons.nats_forwarder:build`` in
tests/test_nats_cluster.py.

A nexus whose only handler is a :class:`JetStreamSender`: at start it ingests
``FORWARD_COUNT`` events, then prints ``PRODUCED <n> BUFFERED <pending>`` once the sender holds
all of them unacknowledged (or has had some acknowledged), and waits for a signal. The sender
publishes to ``FORWARD_SUBJECT`` on ``FORWARD_SERVERS`` (comma-separated URLs), and its graceful
stop may take ``FORWARD_CLOSE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import os

from async_nexus import AsyncEventNexus, Event, EventProducer
from async_nexus.transports.nats import JetStreamSender


class Burst(EventProducer):
    """Ingests ``count`` events at once, says so, and idles."""

    def __init__(self, count: int, sender: JetStreamSender) -> None:
        super().__init__()
        self.count, self.sender = count, sender

    async def start(self) -> None:
        for number in range(self.count):
            await self.distribute_event(Event(number, "job", 0, number))
        while self.sender.pending < self.count and self.sender.sent == 0:
            await asyncio.sleep(0.01)
        print(f"PRODUCED {self.count} BUFFERED {self.sender.pending}")
        await asyncio.get_running_loop().create_future()


def build() -> AsyncEventNexus:
    count = int(os.environ["FORWARD_COUNT"])
    sender = JetStreamSender(
        os.environ["FORWARD_SERVERS"].split(","),
        os.environ["FORWARD_SUBJECT"],
        max_buffer=count,
        publish_timeout=1.0,
        retry_max=0.5,
        close_timeout=float(os.environ["FORWARD_CLOSE_TIMEOUT"]),
    )
    nexus = AsyncEventNexus()
    nexus.add_handler("job", sender)
    nexus.add_producer(Burst(count, sender))
    return nexus
