"""Acknowledgements that follow the outcome, against a real redis-server.

An entry is acknowledged when its event was handled, or when it was moved to
``<stream>:dead`` with the reason; a failure alone never acknowledges it, and a retry
keeps it pending until it is over.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from support import Collector, Hook
from test_redis import ROOT, pending_count, until

from async_nexus import AsyncEventNexus, Event, Retry, current_attempt
from async_nexus.codec import EventCodec
from async_nexus.transports.redis import RedisStreamReceiver, RedisStreamSender, StuckEntry


async def send(url: str, stream: str, *events: Event) -> None:
    sender = RedisStreamSender(url, stream)
    for event in events:
        await sender.send(event)
    await sender.close()


async def dead_records(client: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    entries = await client.xrange(f"{stream}:dead")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def test_a_failed_event_is_moved_to_the_dead_letters_with_its_reason(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    hook, handled, dead = Hook(), Collector(), []

    def picky(event: Event, queue: Any) -> None:
        if event.id == 1:
            raise RuntimeError("cannot handle 1")
        handled(event, queue)

    receiver = RedisStreamReceiver(redis_url, stream, group="g")
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.on_dead_letter(lambda event, exc: dead.append(event.id))
        nexus.add_handler("e", picky)
        nexus.add_producer(receiver)
        await send(redis_url, stream, Event(0, "e"), Event(1, "e"), Event(2, "e"), Event(3, "nobody"))
        await handled.wait(2, timeout=10)
        await until(lambda: receiver.dead_lettered == 2)
    assert [(str(exc), subject.id) for exc, subject in hook.calls][0] == ("cannot handle 1", 1)
    assert sorted(dead) == [1, 3]
    codec = EventCodec()
    records = {
        codec.decode(record["field:event"]).id: record for record in await dead_records(client, stream)
    }
    failed, unhandled = records[1], records[3]
    assert failed["exception"] == "builtins.RuntimeError"
    assert failed["message"] == "cannot handle 1" and failed["attempts"] == "1"
    assert failed["reason"] == "handling failed after 1 attempt: RuntimeError: cannot handle 1"
    assert failed["stream"] == stream and failed["group"] == "g"
    assert unhandled["exception"] == "async_nexus.errors.UnhandledEvent"
    assert await pending_count(client, stream, "g") == 0


async def test_an_entry_stays_pending_while_its_event_waits_for_a_retry(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    attempts: list[int] = []
    release = asyncio.Event()

    async def flaky(event: Event, queue: Any) -> None:
        attempts.append(current_attempt())
        if not release.is_set():
            raise ConnectionError("not yet")

    async with AsyncEventNexus() as nexus:
        nexus.add_handler("e", flaky, retry=Retry(attempts=3, backoff=0.3, jitter=False))
        nexus.add_producer(RedisStreamReceiver(redis_url, stream, group="g"))
        await send(redis_url, stream, Event(1, "e"))
        await until(lambda: nexus.stats()["retrying"] == 1)
        assert await pending_count(client, stream, "g") == 1  # the failure did not acknowledge it
        release.set()
        await until(lambda: len(attempts) == 2)
        await nexus.join()
    assert attempts == [1, 2]
    assert await pending_count(client, stream, "g") == 0
    assert await dead_records(client, stream) == []


async def test_an_event_that_fails_every_attempt_is_dead_lettered_once_with_the_count(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    hook = Hook()
    receiver = RedisStreamReceiver(redis_url, stream, group="g")

    async def broken(event: Event, queue: Any) -> None:
        raise ConnectionError(f"attempt {current_attempt()}")

    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler("e", broken, concurrency=4, retry=Retry(attempts=3, backoff=0.01))
        nexus.add_producer(receiver)
        await send(redis_url, stream, Event(1, "e"))
        await until(lambda: receiver.dead_lettered == 1)
    ((record),) = await dead_records(client, stream)
    assert record["attempts"] == "3" and record["message"] == "attempt 3"
    assert record["exception"] == "builtins.ConnectionError"
    assert len(hook.calls) == 1
    assert await pending_count(client, stream, "g") == 0


async def test_a_hung_handler_with_a_timeout_is_cut_off_and_its_entry_dead_lettered(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    receiver = RedisStreamReceiver(redis_url, stream, group="g")

    async def hangs(event: Event, queue: Any) -> None:
        await asyncio.get_running_loop().create_future()

    async with AsyncEventNexus() as nexus:
        nexus.on_error(Hook())
        nexus.add_handler("e", hangs, timeout=0.1)
        nexus.add_producer(receiver)
        await send(redis_url, stream, Event(1, "e"))
        await until(lambda: receiver.dead_lettered == 1)
    ((record),) = await dead_records(client, stream)
    assert record["exception"] == "async_nexus.errors.HandlerTimeout"
    assert "ran longer than timeout=0.1s" in record["message"]
    assert await pending_count(client, stream, "g") == 0


async def test_an_entry_held_too_long_without_a_timeout_is_reported_once(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    hook = Hook()
    receiver = RedisStreamReceiver(redis_url, stream, group="g", claim_idle=0.3, stuck_after=0.2)
    release = asyncio.Event()

    async def slow(event: Event, queue: Any) -> None:
        await release.wait()

    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler("e", slow, concurrency=2)
        nexus.add_producer(receiver)
        await send(redis_url, stream, Event(1, "e"))
        await asyncio.wait_for(hook.called.wait(), 10)
        # Four more rounds of looking (one every claim_idle / 3 s): still one report.
        await asyncio.sleep(0.4)
        release.set()
        await nexus.join()
    ((exc, subject),) = hook.calls
    assert isinstance(exc, StuckEntry) and subject is receiver
    assert exc.seconds >= 0.2 and "timeout=" in str(exc)
    assert await pending_count(client, stream, "g") == 0


async def test_an_entry_whose_process_dies_between_attempts_is_delivered_again(
    redis_url: str, stream: str, client: aioredis.Redis, tmp_path: Path
) -> None:
    record = tmp_path / "attempts.txt"
    record.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.daemons.failing_receiver",
            redis_url,
            stream,
            "g",
            "victim",
            str(record),
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        await send(redis_url, stream, Event(7, "e"))
        await until(lambda: record.read_text() == "7 1\n", timeout=20)  # failed once, waits a minute
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    assert await pending_count(client, stream, "g") == 1

    rescued = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, rescued)
        nexus.add_producer(
            RedisStreamReceiver(
                redis_url, stream, group="g", consumer="rescuer", claim_idle=0.2, claim_interval=0.1
            )
        )
        await rescued.wait(1, timeout=20)
    assert [e.id for e in rescued.events] == [7]
    assert await pending_count(client, stream, "g") == 0
    assert await dead_records(client, stream) == []


@pytest.mark.parametrize("bad", [0, -1, "1"])
def test_stuck_after_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="stuck_after must be a positive number"):
        RedisStreamReceiver("redis://localhost", "s", stuck_after=bad)
