"""The Redis Streams transport against a real redis-server, with real processes where they matter."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer
from support import Collector, Hook

from async_nexus import AsyncEventNexus, Event, NamedEvent
from async_nexus.codec import EventCodec
from async_nexus.errors import BadCall, LoopStopped, RequestTimeout
from async_nexus.events import CORRELATION_ID, IN_REPLY_TO, REPLY_TO
from async_nexus.transports.redis import (
    DeadLetteredEntry,
    MalformedEntry,
    RedisStreamReceiver,
    RedisStreamSender,
    UndeliverableEntry,
)

ROOT = Path(__file__).resolve().parent.parent
RECEIVER_PROCESS = ROOT / "tests" / "redis_receiver_process.py"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms, for at most ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def pending_count(client: aioredis.Redis, stream: str, group: str) -> int:
    summary = await client.xpending(stream, group)
    return int(summary["pending"])


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


class Treacle(NamedEvent):
    """A named event, rebuilt on the far side through the codec registry."""


# -- events cross intact -----------------------------------------------------------------------


async def test_events_cross_with_fields_headers_payloads_and_named_classes_intact(
    redis_url: str, stream: str
) -> None:
    varied = [
        Event(1, 7, 3, None),
        Event("two", "str.type", -2, {"nested": [1, 2.5, True, None, "x", {"deep": []}]}, {"trace": "abc"}),
        Event(3, 7, 0, Reading("t1", 21.5)),
        Treacle(4, "sticky", priority=1, headers={"origin": "kitchen"}),
        Event(5, 7, 0, "Ünïcode ✓"),
    ]
    ordered = [Event(i, "seq", 0, i) for i in range(100, 600)]
    sender = RedisStreamSender(redis_url, stream, batch_size=64)
    collector = Collector()
    async with AsyncEventNexus() as source, AsyncEventNexus() as target:
        source.add_handler(-1, sender)
        target.add_handler(-1, collector)
        receiver = RedisStreamReceiver(redis_url, stream, codec=EventCodec(named_events=[Treacle]))
        target.add_producer(receiver)
        await receiver.wait_ready(10)  # a group of its own starts with the entries added from now on
        for event in [*varied, *ordered]:
            await source.ingest(event)
        await source.join()
        await sender.flush(timeout=10)
        received = await collector.wait(len(varied) + len(ordered), timeout=10)
    await sender.close()

    by_id = {event.id: event for event in received}
    assert by_id[1] == varied[0]
    assert by_id["two"] == varied[1]
    assert by_id[3] == Event(3, 7, 0, {"sensor": "t1", "value": 21.5})  # dataclasses arrive as data
    assert type(by_id[4]) is Treacle and by_id[4] == varied[3]
    assert by_id[5].payload == "Ünïcode ✓"
    assert [event.id for event in received if event.type == "seq"] == [event.id for event in ordered]
    assert len(received) == len(varied) + len(ordered)


async def test_unregistered_named_event_is_dead_lettered_not_guessed(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    sender = RedisStreamSender(redis_url, stream)
    hook, collector = Hook(), Collector()
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_handler(-1, collector)
        target.add_producer(RedisStreamReceiver(redis_url, stream, group="g"))
        await sender.send(Treacle(1, "sticky"))
        await sender.send(Event(2, 7))
        await collector.wait(1)
        await asyncio.wait_for(hook.called.wait(), 10)
    await sender.close()
    assert [event.id for event in collector.events] == [2]
    ((error, subject),) = hook.calls
    assert isinstance(error, MalformedEntry) and "unknown named event type 'Treacle'" in str(error)


# -- request/reply ------------------------------------------------------------------------------


async def test_request_reply_across_redis_and_timeout(redis_url: str, stream: str) -> None:
    commands, replies = stream, f"{stream}:replies"
    to_worker = RedisStreamSender(redis_url, commands, reply_stream=replies)
    answers = RedisStreamReceiver(redis_url, replies)  # a group of its own, on its own stream

    def add_up(event: Event, queue: Any) -> Event | None:
        if event.payload == "ignore me":
            return None
        return Event(event.id, "sum", 0, sum(event.payload))

    async with AsyncEventNexus() as requester, AsyncEventNexus() as worker:
        requester.add_handler("sum?", to_worker)
        requester.add_producer(answers)
        worker.add_handler("sum?", add_up)
        worker.add_producer(RedisStreamReceiver(redis_url, commands, group="adders"))
        await answers.wait_ready(10)

        answer = await requester.request(Event(1, "sum?", 0, [1, 2, 3]), timeout=10)
        assert (answer.type, answer.payload) == ("sum", 6)
        assert IN_REPLY_TO in (answer.headers or {})

        many = await asyncio.gather(
            *(requester.request(Event(n, "sum?", 0, list(range(n))), timeout=10) for n in range(20))
        )
        assert [a.payload for a in many] == [sum(range(n)) for n in range(20)]

        with pytest.raises(RequestTimeout):
            await requester.request(Event(99, "sum?", 0, "ignore me"), timeout=0.5)
    await to_worker.close()


async def test_sender_stamps_reply_to_and_refuses_a_request_without_a_reply_stream(
    redis_url: str, stream: str
) -> None:
    request = Event(1, "q", 0, None, {CORRELATION_ID: "c1"})
    without = RedisStreamSender(redis_url, stream)
    with pytest.raises(BadCall, match="reply_stream="):
        await without.handle(request, None)
    assert without.pending == 0
    await without.close()

    stamped = RedisStreamSender(redis_url, stream, reply_stream="answers").entry(request)
    decoded = EventCodec().decode(stamped[b"event"])
    assert decoded.headers == {CORRELATION_ID: "c1", REPLY_TO: "answers"}
    assert request.headers == {CORRELATION_ID: "c1"}  # the caller's event is left alone

    # A request forwarded from another process keeps the requester's reply stream.
    forwarded = Event(2, "q", 0, None, {CORRELATION_ID: "c2", REPLY_TO: "first-asker"})
    decoded = EventCodec().decode(RedisStreamSender(redis_url, stream).entry(forwarded)[b"event"])
    assert decoded.headers == {CORRELATION_ID: "c2", REPLY_TO: "first-asker"}


# -- a receiver process killed, another takes over ----------------------------------------------


async def test_entries_of_a_killed_receiver_process_are_claimed_by_another(
    redis_url: str, stream: str, client: aioredis.Redis, tmp_path: Path
) -> None:
    total, group = 10_000, "workers"
    sender = RedisStreamSender(redis_url, stream)
    for i in range(total):
        await sender.send(Event(i, "job", 0, i))
    await sender.flush(timeout=20)
    await sender.close()

    record = tmp_path / "handled.txt"
    record.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(
        [sys.executable, str(RECEIVER_PROCESS), redis_url, stream, group, "victim", str(record), "0.0005"],
        env=env,
    )
    try:
        await until(lambda: record.read_text().count("\n") >= 300, timeout=20)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    handled_before = {int(line) for line in record.read_text().split("\n")[:-1]}
    assert len(handled_before) < total, "the receiver finished before it was killed"
    assert await pending_count(client, stream, group) > 0  # it died holding unacknowledged entries

    rescued = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, rescued)
        nexus.add_producer(
            RedisStreamReceiver(
                redis_url, stream, group=group, consumer="rescuer", claim_idle=0.2, claim_interval=0.1
            )
        )
        everything = set(range(total))
        await until(lambda: handled_before | {e.id for e in rescued.events} >= everything, timeout=30)
    # Stopped gracefully: everything it dispatched is acknowledged.
    assert await pending_count(client, stream, group) == 0


async def test_a_restarted_consumer_takes_up_its_own_unacknowledged_entries_at_once(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    sender = RedisStreamSender(redis_url, stream)
    for i in range(10):
        await sender.send(Event(i, "e"))
    await sender.flush(timeout=10)
    await sender.close()
    # An earlier run of consumer "c1" read five entries and died before acknowledging them.
    await client.xgroup_create(stream, "g", id="0")
    await client.xreadgroup("g", "c1", {stream: ">"}, count=5)
    collector = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, collector)
        # claim_idle is far away: only its own history brings the five back.
        nexus.add_producer(RedisStreamReceiver(redis_url, stream, group="g", consumer="c1", claim_idle=600))
        await collector.wait(10, timeout=10)
    assert [e.id for e in collector.events] == list(range(10))
    assert await pending_count(client, stream, "g") == 0


# -- the server restarted -----------------------------------------------------------------------


async def test_sender_and_receiver_recover_from_a_server_restart(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="async_nexus.redis")
    server = RedisServer(durable=True).start()
    try:
        options = {"retry_initial": 0.02, "retry_max": 0.2}
        sender = RedisStreamSender(server.url, stream, **options)  # type: ignore[arg-type]
        receiver = RedisStreamReceiver(server.url, stream, group="g", claim_idle=1.0, **options)  # type: ignore[arg-type]
        collector = Collector()
        total = 3000

        def failures(of: str) -> bool:
            return any(of in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)

        async with AsyncEventNexus() as source, AsyncEventNexus() as target:
            source.add_handler("e", sender)
            target.add_handler("e", collector)
            target.add_producer(receiver)
            for i in range(total // 2):
                await source.ingest(Event(i, "e", 0, i))
            await collector.wait(100, timeout=10)

            server.kill()
            for i in range(total // 2, total):
                await source.ingest(Event(i, "e", 0, i))
            await until(lambda: failures("RedisStreamSender") and failures("reading"), timeout=10)
            assert sender.pending > 0  # held while the server is away

            await asyncio.to_thread(server.start)
            await sender.flush(timeout=20)
            everything = set(range(total))
            await until(lambda: {e.id for e in collector.events} >= everything, timeout=20)
        await sender.close()
        assert any("works again" in r.getMessage() for r in caplog.records)
    finally:
        server.close()


async def test_sender_holds_events_while_redis_is_away_and_writes_them_when_it_comes(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="async_nexus.redis")
    server = RedisServer()  # not started yet: nothing listens on its port
    try:
        sender = RedisStreamSender(server.url, stream, buffer_size=5, retry_initial=0.02, retry_max=0.1)
        for i in range(5):
            await sender.send(Event(i, "e"))
        blocked = asyncio.create_task(sender.send(Event(5, "e")))
        await until(lambda: any("RedisStreamSender" in r.getMessage() for r in caplog.records))
        assert not blocked.done() and sender.pending == 5  # backpressure: the buffer is full

        await asyncio.to_thread(server.start)
        await asyncio.wait_for(blocked, 10)
        await sender.flush(timeout=10)
        assert sender.sent == 6
        connection = aioredis.from_url(server.url)
        try:
            entries = await connection.xrange(stream)
        finally:
            await connection.aclose()
        ids = [EventCodec().decode(fields[b"event"]).id for _, fields in entries]
        assert ids == list(range(6))
        await sender.close()
        with pytest.raises(LoopStopped):
            await sender.send(Event(6, "e"))
    finally:
        server.close()


# -- garbage ------------------------------------------------------------------------------------


async def test_garbage_is_dead_lettered_acknowledged_reported_and_reading_goes_on(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    group = "g"
    hook, collector = Hook(), Collector()
    receiver = RedisStreamReceiver(redis_url, stream, group=group)
    sender = RedisStreamSender(redis_url, stream)
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, collector)
        nexus.add_producer(receiver)
        await sender.send(Event(1, "ok"))
        bad_json = await client.xadd(stream, {"event": b"{not json"})
        no_field = await client.xadd(stream, {"something": b"else"})
        await sender.send(Event(2, "ok"))
        await sender.flush(timeout=10)
        await collector.wait(2, timeout=10)
        await until(lambda: len(hook.calls) == 2)
    await sender.close()

    assert [event.id for event in collector.events] == [1, 2]
    errors = [error for error, _ in hook.calls]
    assert all(isinstance(error, MalformedEntry) for error in errors)
    assert all(isinstance(error, DeadLetteredEntry) for error in errors)
    assert all(subject is receiver for _, subject in hook.calls)
    assert "not valid JSON" in str(errors[0]) and "no 'event' field" in str(errors[1])

    dead = await client.xrange(f"{stream}:dead")
    assert [fields[b"id"] for _, fields in dead] == [bad_json, no_field]
    assert b"not valid JSON" in dead[0][1][b"reason"]
    assert dead[0][1][b"field:event"] == b"{not json"
    assert dead[1][1][b"field:something"] == b"else"
    assert await pending_count(client, stream, group) == 0


async def test_an_event_whose_handler_fails_is_reported_and_dead_lettered(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    hook, collector = Hook(), Collector()

    def picky(event: Event, queue: Any) -> None:
        if event.id == 1:
            raise RuntimeError("cannot handle 1")
        collector(event, queue)

    sender = RedisStreamSender(redis_url, stream)
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, picky)
        nexus.add_producer(RedisStreamReceiver(redis_url, stream, group="g"))
        for i in range(3):
            await sender.send(Event(i, "e"))
        await collector.wait(2, timeout=10)
    await sender.close()
    assert [(str(exc), subject.id) for exc, subject in hook.calls] == [("cannot handle 1", 1)]
    # Handled, or moved to the dead letters with the reason (acknowledged with the move).
    (dead,) = await client.xrange(f"{stream}:dead")
    assert dead[1][b"message"] == b"cannot handle 1"
    assert await pending_count(client, stream, "g") == 0


async def _pending_with_a_poison_entry(
    client: aioredis.Redis, stream: str, consumer: str, deliveries: int
) -> list[bytes]:
    """Events 0, 1 and 2 read by ``consumer`` of group "g" and never acknowledged.

    Entry 1 has been delivered ``deliveries`` times, as if it had killed its consumer each time.
    """
    codec = EventCodec()
    ids = [await client.xadd(stream, {"event": codec.encode(Event(i, "e"))}) for i in range(3)]
    await client.xgroup_create(stream, "g", id="0")
    await client.xreadgroup("g", consumer, {stream: ">"})
    for _ in range(deliveries - 1):
        await client.xclaim(stream, "g", consumer, 0, [ids[1]])  # each claim is a delivery
    return ids


async def test_an_entry_claimed_once_too_often_is_dead_lettered_not_delivered(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    ids = await _pending_with_a_poison_entry(client, stream, "crashed", deliveries=3)
    hook, collector = Hook(), Collector()
    receiver = RedisStreamReceiver(
        redis_url, stream, group="g", claim_idle=0.001, claim_interval=0.05, max_deliveries=3
    )
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, collector)
        nexus.add_producer(receiver)
        await collector.wait(2, timeout=10)
        await until(lambda: len(hook.calls) == 1)
    # The claim was the fourth delivery of entry 1, and the second of the others.
    assert sorted(event.id for event in collector.events) == [0, 2]
    ((error, subject),) = hook.calls
    assert subject is receiver
    assert isinstance(error, UndeliverableEntry) and isinstance(error, DeadLetteredEntry)
    assert (error.entry_id, error.deliveries, error.dead_letter_stream) == (ids[1], 4, f"{stream}:dead")
    assert "delivered 4 times and never acknowledged" in str(error)
    dead = await client.xrange(f"{stream}:dead")
    assert [fields[b"id"] for _, fields in dead] == [ids[1]]
    assert dead[0][1][b"reason"] == b"delivered 4 times without being acknowledged (max_deliveries=3)"
    assert EventCodec().decode(dead[0][1][b"field:event"]).id == 1
    assert receiver.dead_lettered == 1
    assert await pending_count(client, stream, "g") == 0


async def test_a_restarted_consumer_dead_letters_the_entry_that_keeps_killing_it(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    ids = await _pending_with_a_poison_entry(client, stream, "c1", deliveries=5)
    hook, collector = Hook(), Collector()
    async with AsyncEventNexus() as nexus:
        nexus.on_error(hook)
        nexus.add_handler(-1, collector)
        # claim_idle is far away: its own history is what brings the entries back.
        nexus.add_producer(
            RedisStreamReceiver(redis_url, stream, group="g", consumer="c1", claim_idle=600, max_deliveries=5)
        )
        await collector.wait(2, timeout=10)
        await until(lambda: len(hook.calls) == 1)
    assert [event.id for event in collector.events] == [0, 2]
    assert [(type(error), error.entry_id) for error, _ in hook.calls] == [(UndeliverableEntry, ids[1])]
    assert await pending_count(client, stream, "g") == 0


async def test_without_a_limit_an_entry_is_delivered_however_often_it_was_before(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    await _pending_with_a_poison_entry(client, stream, "c1", deliveries=50)
    collector = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, collector)
        receiver = RedisStreamReceiver(
            redis_url, stream, group="g", consumer="c1", claim_idle=600, max_deliveries=None
        )
        nexus.add_producer(receiver)
        await collector.wait(3, timeout=10)
    assert [event.id for event in collector.events] == [0, 1, 2]
    assert await client.xlen(f"{stream}:dead") == 0


# -- competing consumers and broadcast ----------------------------------------------------------


async def test_competing_consumers_split_the_work_without_duplicates(redis_url: str, stream: str) -> None:
    total = 600
    first, second = Collector(), Collector()
    sender = RedisStreamSender(redis_url, stream)
    async with AsyncEventNexus() as a, AsyncEventNexus() as b:
        receivers = []
        for nexus, collector in ((a, first), (b, second)):

            async def slow(event: Event, queue: Any, collector: Collector = collector) -> None:
                collector(event, queue)
                await asyncio.sleep(0)

            nexus.add_handler(-1, slow)
            receiver = RedisStreamReceiver(redis_url, stream, group="shared", read_count=10, max_in_flight=10)
            nexus.add_producer(receiver)
            receivers.append(receiver)
        for receiver in receivers:
            await receiver.wait_ready(10)
        for i in range(total):
            await sender.send(Event(i, "job"))
        await sender.flush(timeout=10)
        await until(lambda: len(first.events) + len(second.events) >= total)
    await sender.close()
    ids_first = [e.id for e in first.events]
    ids_second = [e.id for e in second.events]
    assert ids_first and ids_second  # both got some
    assert sorted(ids_first + ids_second) == list(range(total))  # all, and nothing twice


async def test_broadcast_gives_every_receiver_everything(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    total = 200
    collectors = [Collector(), Collector()]
    receivers = [RedisStreamReceiver(redis_url, stream), RedisStreamReceiver(redis_url, stream)]
    assert receivers[0].group != receivers[1].group
    sender = RedisStreamSender(redis_url, stream)
    async with AsyncEventNexus() as a, AsyncEventNexus() as b:
        for nexus, collector, receiver in zip((a, b), collectors, receivers, strict=True):
            nexus.add_handler(-1, collector)
            nexus.add_producer(receiver)
            await receiver.wait_ready(10)
        for i in range(total):
            await sender.send(Event(i, "news"))
        for collector in collectors:
            await collector.wait(total, timeout=10)
    await sender.close()
    for collector in collectors:
        assert [e.id for e in collector.events] == list(range(total))
    # Groups of their own are removed when their receivers close.
    assert await client.xinfo_groups(stream) == []


# -- bounds, passwords --------------------------------------------------------------------------


async def test_in_flight_entries_are_bounded(redis_url: str, stream: str, client: aioredis.Redis) -> None:
    release = asyncio.Event()
    collector = Collector()

    async def stuck(event: Event, queue: Any) -> None:
        collector(event, queue)
        await release.wait()

    receiver = RedisStreamReceiver(redis_url, stream, group="g", max_in_flight=5)
    sender = RedisStreamSender(redis_url, stream)
    for i in range(50):
        await sender.send(Event(i, "e"))
    await sender.flush(timeout=10)
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, stuck)
        nexus.add_producer(receiver)
        try:
            await collector.wait(1)
            await until(lambda: receiver.in_flight == 5)
            delivered = await pending_count(client, stream, "g")
        finally:
            release.set()
        assert delivered == 5  # Redis delivered no more than that
        await collector.wait(50, timeout=10)
    await sender.close()
    assert [e.id for e in collector.events] == list(range(50))
    assert await pending_count(client, stream, "g") == 0


async def test_entries_still_being_dispatched_are_kept_from_other_consumers(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    claim_idle = 0.5
    release = asyncio.Event()
    collector = Collector()

    async def stuck(event: Event, queue: Any) -> None:
        collector(event, queue)
        await release.wait()

    sender = RedisStreamSender(redis_url, stream)
    for i in range(5):
        await sender.send(Event(i, "e"))
    await sender.flush(timeout=10)
    await sender.close()
    # Its own claimer runs once, at start, so only the refreshing can keep the entries young.
    receiver = RedisStreamReceiver(
        redis_url, stream, group="g", consumer="busy", claim_idle=claim_idle, claim_interval=600
    )
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, stuck)
        nexus.add_producer(receiver)
        try:
            await until(lambda: receiver.in_flight == 5)
            # Held well past claim_idle: the property itself is about time passing.
            await asyncio.sleep(2.5 * claim_idle)
            pending = await client.xpending_range(stream, "g", "-", "+", 10)
        finally:
            release.set()
        assert len(pending) == 5
        # Refreshed all along, so another consumer's claimer would not take them.
        assert all(entry["time_since_delivered"] < claim_idle * 1000 for entry in pending), pending
        await collector.wait(5)
    assert await pending_count(client, stream, "g") == 0


async def test_password_protected_server(stream: str) -> None:
    server = RedisServer(password="s3cret-pass").start()
    try:
        assert "s3cret-pass" in server.url
        sender = RedisStreamSender(server.url, stream)
        collector = Collector()
        async with AsyncEventNexus() as nexus:
            nexus.add_handler(-1, collector)
            nexus.add_producer(RedisStreamReceiver(server.url, stream, group="g"))
            await sender.send(Event(1, "secret"))
            await collector.wait(1, timeout=10)
        await sender.close()
    finally:
        server.close()


async def test_resp3_connections_work_too(redis_url: str, stream: str) -> None:
    sender = RedisStreamSender(redis_url, stream, protocol=3)
    collector = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, collector)
        nexus.add_producer(RedisStreamReceiver(redis_url, stream, group="g", protocol=3))
        for i in range(10):
            await sender.send(Event(i, "e"))
        await collector.wait(10, timeout=10)
    await sender.close()
    assert [e.id for e in collector.events] == list(range(10))


def test_options_are_checked_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        RedisStreamReceiver("redis://127.0.0.1:1/0", "s", max_in_flight=0)
    with pytest.raises(BadCall, match="socket_timeout"):
        RedisStreamReceiver("redis://127.0.0.1:1/0", "s", block=2.0, socket_timeout=1.0)
    with pytest.raises(BadCall, match="decode_responses"):
        RedisStreamSender("redis://127.0.0.1:1/0", "s", decode_responses=True)
    with pytest.raises(ValueError, match="maxlen"):
        RedisStreamSender("redis://127.0.0.1:1/0", "s", maxlen=-1)
    with pytest.raises(BadCall, match="group must be a non-empty str"):
        RedisStreamReceiver("redis://127.0.0.1:1/0", "s", group="")
    with pytest.raises(ValueError, match="max_deliveries"):
        RedisStreamReceiver("redis://127.0.0.1:1/0", "s", max_deliveries=0)


async def test_maxlen_trims_the_stream_approximately(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    sender = RedisStreamSender(redis_url, stream, maxlen=100)
    for i in range(2000):
        await sender.send(Event(i, "e"))
    await sender.flush(timeout=10)
    await sender.close()
    assert 100 <= await client.xlen(stream) < 1000


# -- the distributed demo -----------------------------------------------------------------------


def test_distributed_demo_sensor_and_worker_run_and_stop(redis_url: str) -> None:
    demo = ROOT / "demo" / "distributed"
    stream_args = ["--redis-url", redis_url, "--stream", f"demo:{uuid.uuid4().hex}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, str(demo / "worker.py"), *stream_args, "--seconds", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    sensor = subprocess.run(
        [sys.executable, str(demo / "sensor.py"), *stream_args, "--seconds", "2"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    out, err = worker.communicate(timeout=30)
    assert sensor.returncode == 0, sensor.stderr
    assert worker.returncode == 0, err
    sent = re.search(r"sent (\d+) readings", sensor.stdout)
    handled = re.search(r"handled (\d+) readings", out)
    assert sent and handled, (sensor.stdout, out)
    assert 0 < int(handled[1]) <= int(sent[1])
    assert "reading #" in out and "average sensor-1" in out
    assert "Traceback" not in err + sensor.stderr


# -- concurrent handlers: acknowledged after they finished, redelivered when killed ----------------


async def test_an_entry_is_acknowledged_only_after_its_concurrent_handler_finished(
    redis_url: str, stream: str, client: aioredis.Redis
) -> None:
    gates = {i: asyncio.Event() for i in range(4)}
    started: list[int] = []

    async def slow(event: Event, queue: Any) -> None:
        started.append(event.id)
        await gates[event.id].wait()

    sender = RedisStreamSender(redis_url, stream)
    for i in range(4):
        await sender.send(Event(i, "job"))
    await sender.flush(timeout=10)
    await sender.close()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler("job", slow, concurrency=4)
        nexus.add_producer(RedisStreamReceiver(redis_url, stream, group="g", consumer="c", claim_idle=600))
        await until(lambda: len(started) == 4)
        assert await pending_count(client, stream, "g") == 4  # all running, none acknowledged
        gates[2].set()
        await until_async(lambda: pending_count(client, stream, "g"), 3)
        pending = await client.xpending_range(stream, "g", "-", "+", 10)
        assert len(pending) == 3
        for gate in gates.values():
            gate.set()
        await until_async(lambda: pending_count(client, stream, "g"), 0)


async def until_async(count: Callable[[], Any], expected: int, timeout: float = 10.0) -> None:
    """Wait until the awaitable ``count()`` returns ``expected``, checking every 10 ms."""

    async def poll() -> None:
        while await count() != expected:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_entries_held_by_concurrent_handlers_of_a_killed_process_are_redelivered(
    redis_url: str, stream: str, client: aioredis.Redis, tmp_path: Path
) -> None:
    total, group, concurrency = 20, "workers", 5
    sender = RedisStreamSender(redis_url, stream)
    for i in range(total):
        await sender.send(Event(i, "job", 0, i))
    await sender.flush(timeout=10)
    await sender.close()

    record = tmp_path / "started.txt"
    record.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Each handler takes a minute: the victim dies with `concurrency` of them in flight.
    victim = subprocess.Popen(
        [sys.executable, str(RECEIVER_PROCESS), redis_url, stream, group, "victim", str(record), "60",
         str(concurrency)],
        env=env,
    )  # fmt: skip
    try:
        await until(lambda: record.read_text().count("\n") >= concurrency, timeout=20)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    in_flight = {int(line) for line in record.read_text().split("\n")[:-1]}
    assert len(in_flight) == concurrency  # the loop never let more run at once
    assert await pending_count(client, stream, group) == total  # none was acknowledged

    rescued = Collector()
    async with AsyncEventNexus() as nexus:
        nexus.add_handler(-1, rescued, concurrency=concurrency)
        nexus.add_producer(
            RedisStreamReceiver(
                redis_url, stream, group=group, consumer="rescuer", claim_idle=0.2, claim_interval=0.1
            )
        )
        await rescued.wait(total, timeout=30)
    assert in_flight <= {e.id for e in rescued.events}
    assert {e.id for e in rescued.events} == set(range(total))
    assert await pending_count(client, stream, group) == 0
