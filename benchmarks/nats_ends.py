"""The two ends of scenario 11, one process each: ``python nats_ends.py ROLE URL STREAM N``.

ROLE is ``<side>-send`` or ``<side>-receive`` with side ``plain`` (nats-py alone),
``faststream`` or ``nexus``. The stream ``STREAM`` holds the subject ``STREAM.events``
(and ``STREAM.dead`` in a stream of its own); the scenario creates both. A sender prints
the wall-clock time just before its first event and returns once every event has its
publish acknowledgement; a receiver prints ``ready`` once its consumer fetches, then the
time at which its handler got the last event.

Every side publishes with acknowledgement, up to ``WINDOW`` publishes awaiting theirs at
once (what :class:`~async_nexus.transports.nats.JetStreamSender` does by default), and
pulls in batches of ``BATCH`` from a durable consumer, acknowledging each message after
its handler.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import nats

from async_nexus import AsyncEventNexus, Event

WINDOW = 256
BATCH = 100
GROUP = "bench"
PAYLOAD = "x" * 32


def subject(stream: str) -> str:
    return f"{stream}.events"


async def plain_send(url: str, stream: str, n: int) -> None:
    client = await nats.connect(url)
    js = client.jetstream()
    body = f'{{"payload":"{PAYLOAD}"}}'.encode()
    print(time.time(), flush=True)
    for first in range(0, n, WINDOW):
        await asyncio.gather(
            *(js.publish(subject(stream), body) for _ in range(first, min(first + WINDOW, n)))
        )
    await client.close()


async def plain_receive(url: str, stream: str, n: int) -> None:
    client = await nats.connect(url)
    js = client.jetstream()
    subscription = await js.pull_subscribe(subject(stream), durable=GROUP, stream=stream)
    print("ready", flush=True)
    seen = 0
    while seen < n:
        try:
            msgs = await subscription.fetch(BATCH, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for msg in msgs:
            Event(seen, 1, 0, msg.data)
            seen += 1
            await msg.ack()
    print(time.time(), flush=True)
    await client.close()


async def faststream_send(url: str, stream: str, n: int) -> None:
    from faststream.nats import NatsBroker

    broker = NatsBroker(url, logger=None)  # measured without its log line per message
    await broker.connect()
    publisher = broker.publisher(subject(stream), stream=stream)
    print(time.time(), flush=True)
    message = {"payload": PAYLOAD}
    for first in range(0, n, WINDOW):
        await asyncio.gather(*(publisher.publish(message) for _ in range(first, min(first + WINDOW, n))))
    await broker.stop()


async def faststream_receive(url: str, stream: str, n: int) -> None:
    from faststream.nats import JStream, NatsBroker, PullSub

    broker = NatsBroker(url, logger=None)  # measured without its log line per message
    done = asyncio.get_running_loop().create_future()
    seen = 0

    @broker.subscriber(
        subject(stream),
        stream=JStream(stream, declare=False),
        durable=GROUP,
        pull_sub=PullSub(batch_size=BATCH, timeout=1.0),
    )
    async def handle(body: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set_result(time.time())

    await broker.start()
    print("ready", flush=True)
    print(await done, flush=True)
    await broker.stop()


async def nexus_send(url: str, stream: str, n: int) -> None:
    from async_nexus.transports.nats import JetStreamSender

    nexus, sender = AsyncEventNexus(), JetStreamSender(url, subject(stream), max_pending_acks=WINDOW)
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
    from async_nexus.transports.nats import JetStreamReceiver

    nexus = AsyncEventNexus()
    receiver = JetStreamReceiver(
        url, stream, group=GROUP, fetch_batch=BATCH, dead_letter_subject=f"{stream}.dead"
    )
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
    "faststream-send": faststream_send,
    "faststream-receive": faststream_receive,
    "nexus-send": nexus_send,
    "nexus-receive": nexus_receive,
}

if __name__ == "__main__":
    role, url, stream, count = sys.argv[1:5]
    asyncio.run(ROLES[role](url, stream, int(count)))
