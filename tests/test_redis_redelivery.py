"""What counts as a delivery of a Redis stream entry, and entries lost from the stream while pending.

Against real redis-server processes: one of the test's own where connections are cut and writes
paused, the shared one (``REDIS_URL``) otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer
from support import Collector, Hook
from test_redis import until

from async_nexus import AsyncEventNexus, Event
from async_nexus.codec import EventCodec
from async_nexus.transports.redis import DeadLetteredEntry, RedisStreamReceiver, TrimmedEntry

TOTAL = 20
CUTS = 12  # more than max_deliveries (10 by default) lost connections


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of the test's own: cutting connections must not disturb anyone else's."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.from_url(server.url)
    yield connection
    await connection.aclose()


async def add_events(client: aioredis.Redis, stream: str, count: int) -> list[bytes]:
    codec = EventCodec()
    return [await client.xadd(stream, {"event": codec.encode(Event(i, "e"))}) for i in range(count)]


class Stuck:
    """A handler that records each event, then waits until released."""

    def __init__(self) -> None:
        self.seen = Collector()
        self.released = asyncio.Event()

    async def __call__(self, event: Event, queue: Any) -> None:
        self.seen(event, queue)
        await self.released.wait()


def recoveries(caplog: pytest.LogCaptureFixture) -> int:
    """How often a receiver's reading has worked again after failing."""
    return sum("reading works again" in record.getMessage() for record in caplog.records)


async def cut(admin: aioredis.Redis, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Kill the connections named ``name`` until the receiver has recovered from it once more."""
    before = recoveries(caplog)

    async def until_recovered() -> None:
        while True:
            for client in await admin.client_list():
                if client.get("name") == name:
                    await admin.client_kill_filter(_id=client["id"])
            try:  # a cut between two reads is healed by redis-py unnoticed: cut again
                await until(lambda: recoveries(caplog) > before, timeout=2)
                return
            except asyncio.TimeoutError:
                continue

    await asyncio.wait_for(until_recovered(), 30)


def receiver(url: str, stream: str, name: str, **options: Any) -> RedisStreamReceiver:
    """Consumer "worker" of group "g", retrying fast, its connections named ``name``."""
    return RedisStreamReceiver(
        url,
        stream,
        group="g",
        consumer="worker",
        claim_idle=600,  # only its own history brings entries back
        retry_initial=0.01,
        retry_max=0.05,
        client_name=name,
        **options,
    )


async def test_lost_connections_while_a_handler_is_stuck_count_as_no_delivery(
    server: RedisServer, admin: aioredis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="async_nexus.redis")
    await add_events(admin, stream, TOTAL)
    await admin.xgroup_create(stream, "g", id="0")
    name = f"worker-{uuid.uuid4().hex[:8]}"
    hook, handler = Hook(), Stuck()
    worker = receiver(server.url, stream, name)
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, handler)
        nexus.add_producer(worker)
        try:
            await until(lambda: worker.in_flight == TOTAL)
            for _ in range(CUTS):
                await cut(admin, name, caplog)
            pending = await admin.xpending_range(stream, "g", "-", "+", TOTAL)
        finally:
            handler.released.set()
        # Each entry was delivered once: re-reading what the worker holds is no delivery.
        assert [entry["times_delivered"] for entry in pending] == [1] * TOTAL
        await handler.seen.wait(TOTAL, timeout=10)
        await until(lambda: worker.acknowledged == TOTAL)
    assert sorted(event.id for event in handler.seen.events) == list(range(TOTAL))
    assert hook.calls == []
    assert await admin.xlen(f"{stream}:dead") == 0
    assert (await admin.xpending(stream, "g"))["pending"] == 0


async def test_a_consumer_restarted_after_lost_connections_dead_letters_no_healthy_entry(
    server: RedisServer, admin: aioredis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="async_nexus.redis")
    await add_events(admin, stream, TOTAL)
    await admin.xgroup_create(stream, "g", id="0")
    name = f"worker-{uuid.uuid4().hex[:8]}"
    handler = Stuck()
    first = receiver(server.url, stream, name)
    nexus = AsyncEventNexus()
    task = nexus.start()
    nexus.add_handler(-1, handler)
    nexus.add_producer(first)
    try:
        await until(lambda: first.in_flight == TOTAL)
        for _ in range(CUTS):
            await cut(admin, name, caplog)
    finally:
        task.cancel()  # the worker dies holding every entry
        await asyncio.gather(task, return_exceptions=True)
    assert (await admin.xpending(stream, "g"))["pending"] == TOTAL

    # Its restart is the second real delivery of each entry, far below max_deliveries=10.
    hook, collector = Hook(), Collector()
    again = receiver(server.url, stream, f"{name}-again")
    async with AsyncEventNexus() as restarted:
        restarted.on_error(hook)
        restarted.add_handler(-1, collector)
        restarted.add_producer(again)
        await collector.wait(TOTAL, timeout=10)
        await until(lambda: again.acknowledged == TOTAL)
    assert sorted(event.id for event in collector.events) == list(range(TOTAL))
    assert [type(error) for error, _ in hook.calls] == []
    assert await admin.xlen(f"{stream}:dead") == 0


# -- entries trimmed while pending ------------------------------------------------------------


@pytest.mark.parametrize("taken_by", ["its own consumer", "a claim"])
async def test_an_entry_trimmed_while_pending_is_reported_with_its_id(
    redis_url: str, stream: str, taken_by: str
) -> None:
    client = aioredis.from_url(redis_url)
    try:
        ids = await add_events(client, stream, 5)
        await client.xgroup_create(stream, "g", id="0")
        await client.xreadgroup("g", "crashed", {stream: ">"})  # read, then the consumer died
        await client.xtrim(stream, maxlen=2, approximate=False)  # entries 0, 1 and 2 are gone
        hook, collector = Hook(), Collector()
        if taken_by == "a claim":
            options: dict[str, Any] = {"consumer": "rescuer", "claim_idle": 0.001, "claim_interval": 0.05}
        else:
            options = {"consumer": "crashed", "claim_idle": 600}
        taker = RedisStreamReceiver(redis_url, stream, group="g", **options)
        async with AsyncEventNexus() as nexus:
            nexus.on_error(hook)
            nexus.add_handler(-1, collector)
            nexus.add_producer(taker)
            await collector.wait(2, timeout=10)
            await until(lambda: len(hook.calls) == 3)
        assert [event.id for event in collector.events] == [3, 4]
        assert all(subject is taker for _, subject in hook.calls)
        errors = [error for error, _ in hook.calls]
        assert all(isinstance(error, TrimmedEntry) for error in errors)
        assert not any(isinstance(error, DeadLetteredEntry) for error in errors)
        assert [error.entry_id for error in errors] == ids[:3]
        assert all(error.stream == stream and error.group == "g" for error in errors)
        assert ids[0].decode() in str(errors[0]) and "trimmed" in str(errors[0])
        assert (await client.xpending(stream, "g"))["pending"] == 0
    finally:
        await client.delete(stream, f"{stream}:dead")
        await client.aclose()


async def test_its_own_claims_after_a_stall_count_no_delivery_of_what_a_receiver_holds(
    server: RedisServer, admin: aioredis.Redis, stream: str
) -> None:
    await add_events(admin, stream, 5)
    await admin.xgroup_create(stream, "g", id="0")
    hook, handler = Hook(), Stuck()
    worker = RedisStreamReceiver(server.url, stream, group="g", claim_idle=0.2, claim_interval=0.05)
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, handler)
        nexus.add_producer(worker)
        try:
            await until(lambda: worker.in_flight == 5)
            for _ in range(CUTS):
                # Writes stall for longer than claim_idle: the held entries go idle, and the
                # receiver's claimer and its refresher both wait for the server.
                await admin.execute_command("CLIENT", "PAUSE", 400, "WRITE")
                await admin.xadd(f"{stream}:probe", {"x": "1"})  # returns once writes resume
            pending = await admin.xpending_range(stream, "g", "-", "+", 5)
        finally:
            handler.released.set()
        assert [entry["times_delivered"] for entry in pending] == [1] * 5
        await until(lambda: worker.acknowledged == 5)
    assert worker.claimed == 0
    assert hook.calls == [] and await admin.xlen(f"{stream}:dead") == 0
