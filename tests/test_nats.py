"""The NATS JetStream transport against real nats-server processes (Debian's and the current release)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats_server import NatsServer
from support import Collector, Hook

from async_nexus import AsyncEventNexus, Event
from async_nexus.codec import EventCodec
from async_nexus.errors import AsyncNexusError, BadCall, BadValue, LoopStopped, RequestTimeout
from async_nexus.events import CORRELATION_ID, IN_REPLY_TO, REPLY_TO
from async_nexus.transports.nats import (
    JetStreamReceiver,
    JetStreamSender,
    MalformedMessage,
    StreamMismatch,
    StuckMessage,
    UndeliverableMessage,
    ensure_stream,
)

pytestmark = pytest.mark.timeout(30)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms, for at most ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@dataclasses.dataclass
class Names:
    """A fresh stream of one test: its name, its subject, its dead-letter subject and stream."""

    stream: str
    subject: str
    dead_subject: str
    dead_stream: str


async def fresh_stream(url: str) -> Names:
    tag = uuid.uuid4().hex[:12]
    names = Names(f"S{tag}", f"s{tag}.events", f"s{tag}.dead", f"S{tag}-dead")
    await ensure_stream(url, names.stream, [names.subject], dead_letter_subject=names.dead_subject)
    return names


@pytest.fixture
async def admin(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def stored(client: Client, stream: str) -> int:
    info = await client.jetstream().stream_info(stream)
    return int(info.state.messages)


class Blocked:
    """A handler that takes events and never finishes them, until released."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.release = asyncio.Event()

    async def __call__(self, event: Event, queue: Any) -> None:
        self.events.append(event)
        await self.release.wait()


# -- events cross -------------------------------------------------------------------------------


async def test_events_cross_with_fields_headers_and_order_intact(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    varied = [
        Event(1, 7, 3, None),
        Event("two", "str.type", -2, {"nested": [1, 2.5, True, None, "x"]}, {"trace": "abc"}),
        Event(3, 7, 0, "Ünïcode ✓", {"origin": "kitchen", "correlation": "c-1"}),
    ]
    ordered = [Event(i, "seq", 0, i) for i in range(100, 400)]
    sender = JetStreamSender(nats_url, names.subject)
    collector = Collector()
    async with AsyncEventNexus() as source, AsyncEventNexus() as target:
        source.add_handler(-1, sender)
        target.add_handler(-1, collector)
        receiver = JetStreamReceiver(
            nats_url, names.stream, group="g", dead_letter_subject=names.dead_subject
        )
        target.add_producer(receiver)
        for event in [*varied, *ordered]:
            await source.ingest(event)
        await source.join()
        await sender.flush(timeout=10)
        assert sender.sent == len(varied) + len(ordered) and sender.pending == 0
        received = await collector.wait(len(varied) + len(ordered), timeout=10)
        await until(lambda: receiver.acknowledged == len(received))
    await sender.close()
    by_id = {event.id: event for event in received}
    assert [by_id[event.id] for event in varied] == varied
    assert by_id["two"].headers == {"trace": "abc"}
    assert [event.id for event in received if event.type == "seq"] == [event.id for event in ordered]
    assert len(received) == len(varied) + len(ordered)


async def test_one_group_shares_the_events_and_each_group_gets_all(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    total = 300
    workers = [Collector(), Collector()]
    audit = Collector()
    async with AsyncEventNexus() as one, AsyncEventNexus() as two, AsyncEventNexus() as three:
        receivers = []
        for nexus, handler, group in [
            (one, workers[0], "work"),
            (two, workers[1], "work"),
            (three, audit, "audit"),
        ]:
            nexus.add_handler(-1, handler)
            # Small fetches, so that both workers get a turn while the events arrive.
            receiver = JetStreamReceiver(
                nats_url, names.stream, group=group, fetch_batch=5, dead_letter_subject=names.dead_subject
            )
            nexus.add_producer(receiver)
            receivers.append(receiver)
        for receiver in receivers:
            await receiver.wait_ready(10)
        async with JetStreamSender(nats_url, names.subject) as sender:
            for i in range(total):
                await sender.send(Event(i, "job", 0, i))
                if i % 20 == 19:
                    await asyncio.sleep(0.01)  # a trickle, not one burst that one worker takes whole
            await sender.flush(timeout=10)
        await until(lambda: len(workers[0]) + len(workers[1]) >= total and len(audit) >= total)
    shared = sorted(event.id for worker in workers for event in worker.events)
    assert shared == list(range(total))  # each once, between them
    assert len(workers[0]) > 0 and len(workers[1]) > 0
    assert sorted(event.id for event in audit.events) == list(range(total))


# -- request/reply ------------------------------------------------------------------------------


async def test_request_reply_across_nats_and_timeout(nats_url: str, admin: Client) -> None:
    commands, replies = await fresh_stream(nats_url), await fresh_stream(nats_url)
    to_worker = JetStreamSender(nats_url, commands.subject, reply_subject=replies.subject)
    # The asking nexus reads its answers from a stream of their own.
    answers = JetStreamReceiver(nats_url, replies.stream, dead_letter_subject=replies.dead_subject)
    worker = JetStreamReceiver(
        nats_url, commands.stream, group="adders", dead_letter_subject=commands.dead_subject
    )

    def add_up(event: Event, queue: Any) -> Event | None:
        if event.payload == "ignore me":
            return None
        return Event(event.id, "sum", 0, sum(event.payload))

    async with AsyncEventNexus() as asking, AsyncEventNexus() as working:
        asking.add_handler("sum?", to_worker)
        asking.add_producer(answers)
        working.add_handler("sum?", add_up)
        working.add_producer(worker)
        await answers.wait_ready(10)

        answer = await asking.request(Event(1, "sum?", 0, [1, 2, 3]), timeout=10)
        assert (answer.type, answer.payload) == ("sum", 6)
        assert IN_REPLY_TO in (answer.headers or {})

        many = await asyncio.gather(
            *(asking.request(Event(n, "sum?", 0, list(range(n))), timeout=10) for n in range(20))
        )
        assert [a.payload for a in many] == [sum(range(n)) for n in range(20)]

        with pytest.raises(RequestTimeout):
            await asking.request(Event(99, "sum?", 0, "ignore me"), timeout=0.5)
        # Every request was acknowledged, after its answer was stored: nothing is held.
        await until(lambda: worker.acknowledged == 22 and worker.in_flight == 0)
    await to_worker.close()
    assert await stored(admin, replies.stream) == 21
    ids = {
        (await admin.jetstream().get_msg(replies.stream, seq)).headers["Nats-Msg-Id"] for seq in range(1, 22)
    }
    assert f"answer-{commands.stream}-adders-1-1" in ids and len(ids) == 21


async def test_a_request_is_acknowledged_only_once_its_answer_is_stored(nats_url: str, admin: Client) -> None:
    """No stream holds the reply subject yet: the answer is retried, the request is kept
    (alive, and reported as stuck), and both go on once the reply stream exists."""
    commands = await fresh_stream(nats_url)
    tag = uuid.uuid4().hex[:12]
    reply_subject, reply_stream = f"r{tag}.answers", f"R{tag}"
    hook = Hook()
    worker = JetStreamReceiver(
        nats_url, commands.stream, group="g", stuck_after=0.3, retry_initial=0.05,
        retry_max=0.2, dead_letter_subject=commands.dead_subject,
    )  # fmt: skip
    async with AsyncEventNexus() as working:
        working.on_error(hook)
        working.add_handler("ping?", lambda event, queue: Event(event.id, "pong"))
        working.add_producer(worker)
        async with JetStreamSender(nats_url, commands.subject, reply_subject=reply_subject) as sender:
            await sender.send(Event(1, "ping?", 0, None, {CORRELATION_ID: "c1"}))
        await asyncio.wait_for(hook.called.wait(), 10)
        assert worker.acknowledged == 0 and worker.in_flight == 1
        await ensure_stream(nats_url, reply_stream, [reply_subject])
        await until(lambda: worker.acknowledged == 1 and worker.in_flight == 0)
    ((exc, _),) = hook.calls
    assert isinstance(exc, StuckMessage) and exc.sequence == 1
    answer = await admin.jetstream().get_msg(reply_stream, 1)
    decoded = EventCodec().decode(answer.data)
    assert (decoded.type, decoded.headers) == ("pong", {IN_REPLY_TO: "c1"})


async def test_an_answer_to_a_reply_to_that_is_no_subject_is_dropped_and_the_request_handled(
    nats_url: str, admin: Client, caplog: pytest.LogCaptureFixture
) -> None:
    names = await fresh_stream(nats_url)
    codec = EventCodec()
    js = admin.jetstream()
    for number, reply_to in enumerate(["has space", "wild.*", "a..b"], 1):
        headers = {CORRELATION_ID: f"c{number}", REPLY_TO: reply_to}
        await js.publish(names.subject, codec.encode(Event(number, "ping?", 0, None, headers)))
    receiver = JetStreamReceiver(nats_url, names.stream, group="g", dead_letter_subject=names.dead_subject)
    async with AsyncEventNexus() as working:
        working.add_handler("ping?", lambda event, queue: Event(event.id, "pong"))
        working.add_producer(receiver)
        await until(lambda: receiver.acknowledged == 3 and receiver.in_flight == 0)
    assert caplog.text.count("which is no subject to publish to; its answer is dropped") == 3
    assert receiver.dead_lettered == 0


async def test_sender_stamps_reply_to_and_refuses_a_request_without_a_reply_subject(
    nats_url: str,
) -> None:
    request = Event(1, "q", 0, None, {CORRELATION_ID: "c1"})
    without = JetStreamSender(nats_url, "nowhere.at.all")
    with pytest.raises(BadCall, match="reply_subject="):
        await without.handle(request, None)
    assert without.pending == 0
    await without.close()

    stamped = JetStreamSender(nats_url, "q.x", reply_subject="answers.me").stamped(request)
    assert stamped.headers == {CORRELATION_ID: "c1", REPLY_TO: "answers.me"}
    assert request.headers == {CORRELATION_ID: "c1"}  # the caller's event is left alone
    # A request forwarded from another process keeps the requester's reply subject.
    forwarded = Event(2, "q", 0, None, {CORRELATION_ID: "c2", REPLY_TO: "first.asker"})
    assert JetStreamSender(nats_url, "q.x").stamped(forwarded).headers == forwarded.headers
    # An answer is no request.
    answer = Event(3, "a", 0, None, {CORRELATION_ID: "c3", IN_REPLY_TO: "c0"})
    assert JetStreamSender(nats_url, "q.x").stamped(answer) is answer
    assert EventCodec().decode(EventCodec().encode(stamped)).headers == stamped.headers
    with pytest.raises(BadValue):
        JetStreamSender(nats_url, "q.x", reply_subject="answers.*")


# -- the sender: flush and close ---------------------------------------------------------------


async def test_close_publishes_what_is_buffered(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    sender = JetStreamSender(nats_url, names.subject)
    for i in range(500):
        await sender.send(Event(i, "x"))
    assert sender.pending > 0  # nothing has had time to go out yet
    await sender.close()
    assert sender.left == 0 and sender.sent == 500
    assert await stored(admin, names.stream) == 500
    with pytest.raises(LoopStopped):
        await sender.send(Event(501, "x"))


async def test_a_graceful_stop_of_the_sending_nexus_flushes_its_sender(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    sender = JetStreamSender(nats_url, names.subject)
    nexus = AsyncEventNexus()
    nexus.add_handler(-1, sender)
    task = nexus.start()
    for i in range(300):
        await nexus.ingest(Event(i, "x"))
    nexus.stop()
    await asyncio.wait_for(task, 15)
    assert sender.left == 0
    assert await stored(admin, names.stream) == 300


async def test_close_says_how_many_were_left_when_the_server_is_gone(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    names = await fresh_stream(nats_server.url)
    sender = JetStreamSender(nats_server.url, names.subject, close_timeout=0.5, publish_timeout=0.2)
    await sender.send(Event(0, "x"))
    await sender.flush(timeout=10)
    nats_server.stop()
    for i in range(1, 21):
        await sender.send(Event(i, "x"))
    with pytest.raises(asyncio.TimeoutError):
        await sender.flush(timeout=0.3)  # flush() waits for acknowledgements, which cannot come
    await sender.close()
    assert sender.left == 20 and sender.sent == 1
    assert "closed with 20 events not acknowledged" in caplog.text


async def test_a_sender_keeps_what_it_buffered_through_a_server_restart(nats_server: NatsServer) -> None:
    names = await fresh_stream(nats_server.url)
    sender = JetStreamSender(nats_server.url, names.subject, publish_timeout=0.5)
    for i in range(100):
        await sender.send(Event(i, "x"))
    await sender.flush(timeout=10)
    nats_server.stop()
    for i in range(100, 200):
        await sender.send(Event(i, "x"))
    await asyncio.sleep(0.3)  # let it try and fail while the server is down
    assert sender.pending == 100
    nats_server.start()
    await sender.flush(timeout=20)
    await sender.close()
    client = await nats.connect(nats_server.url)
    try:
        assert await stored(client, names.stream) == 200
        ids = []
        subscription = await client.jetstream().pull_subscribe(
            names.subject, durable="check", stream=names.stream
        )
        while len(ids) < 200:
            ids += [
                int(m.data.split(b'"id":')[1].split(b",")[0])
                for m in await subscription.fetch(200, timeout=5)
            ]
    finally:
        await client.close()
    assert sorted(ids) == list(range(200))


async def test_a_publish_whose_acknowledgement_was_late_is_stored_once(nats_server: NatsServer) -> None:
    """The server pauses (SIGSTOP): publishes time out and are sent again with the same
    ``Nats-Msg-Id``; once it resumes it has both tries of each and keeps one."""
    names = await fresh_stream(nats_server.url)
    sender = JetStreamSender(nats_server.url, names.subject, publish_timeout=0.2, retry_initial=0.05)
    await sender.send(Event(0, "x"))
    await sender.flush(timeout=10)
    assert nats_server.process is not None
    os.kill(nats_server.process.pid, signal.SIGSTOP)
    try:
        for i in range(1, 51):
            await sender.send(Event(i, "x"))
        await asyncio.sleep(0.8)  # several tries of each time out meanwhile
    finally:
        os.kill(nats_server.process.pid, signal.SIGCONT)
    await sender.flush(timeout=15)
    await sender.close()
    assert sender.sent == 51
    assert sender.duplicates > 0  # the server said so: a retry it had stored already
    client = await nats.connect(nats_server.url)
    try:
        assert await stored(client, names.stream) == 51
    finally:
        await client.close()


# -- the receiver: outcomes --------------------------------------------------------------------


async def dead_letters(client: Client, names: Names, count: int) -> list[Any]:
    js = client.jetstream()
    await until_async(lambda: stored(client, names.dead_stream), count)
    return [await js.get_msg(names.dead_stream, seq) for seq in range(1, count + 1)]


async def until_async(value: Callable[[], Any], wanted: int, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while await value() < wanted:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_finally_failed_event_is_recorded_then_terminated(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    calls: list[Event] = []

    def fails(event: Event, queue: Any) -> None:
        calls.append(event)
        if event.id == 1:
            raise RuntimeError("the printer\nis on fire")

    hook = Hook()
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_handler(-1, fails)
        receiver = JetStreamReceiver(
            nats_url, names.stream, group="g", ack_wait=1.0, dead_letter_subject=names.dead_subject
        )
        target.add_producer(receiver)
        async with JetStreamSender(nats_url, names.subject) as sender:
            await sender.send(Event(1, "x", 0, "boom"))
            await sender.send(Event(2, "x"))
        (record,) = await dead_letters(admin, names, 1)
        await until(lambda: receiver.dead_lettered == 1 and receiver.acknowledged == 1)
        await asyncio.sleep(1.5)  # past ack_wait: a message not settled would come again now
        info = await admin.jetstream().consumer_info(names.stream, "g")
    assert [event.id for event in calls] == [1, 2]  # the failed one was not delivered again
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    headers = record.headers
    assert headers["Nexus-Exception"] == "builtins.RuntimeError"
    assert headers["Nexus-Message"] == "the printer is on fire"  # one line
    assert headers["Nexus-Reason"].startswith("handling failed after 1 attempt: RuntimeError")
    assert headers["Nexus-Attempts"] == "1"
    assert headers["Nexus-Stream"] == names.stream and headers["Nexus-Sequence"] == "1"
    assert headers["Nexus-Deliveries"] == "1" and headers["Nexus-Consumer"] == "g"
    assert headers["Nats-Msg-Id"] == f"dead-{names.stream}-g-1"
    assert b'"id":1' in record.data  # the original body
    assert [type(error) for error, _ in hook.calls] == [RuntimeError]


async def test_a_malformed_message_is_recorded_and_the_receiver_goes_on(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    js = admin.jetstream()
    await js.publish(names.subject, b"\xff not an event {")
    await js.publish(names.subject, b'{"id": 1}')
    hook, collector = Hook(), Collector()
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_handler(-1, collector)
        receiver = JetStreamReceiver(
            nats_url, names.stream, group="g", dead_letter_subject=names.dead_subject
        )
        target.add_producer(receiver)
        async with JetStreamSender(nats_url, names.subject) as sender:
            await sender.send(Event(7, "good"))
        await collector.wait(1, timeout=10)
        records = await dead_letters(admin, names, 2)
        await until(lambda: len(hook.calls) == 2)
    assert [event.id for event in collector.events] == [7]
    assert [record.data for record in records] == [b"\xff not an event {", b'{"id": 1}']
    assert all(record.headers["Nexus-Reason"] for record in records)
    assert all(isinstance(error, MalformedMessage) and subject is receiver for error, subject in hook.calls)
    info = await admin.jetstream().consumer_info(names.stream, "g")
    assert info.num_ack_pending == 0 and info.num_pending == 0


@pytest.fixture(scope="module")
def roomy_nats_url(nats_binary: str) -> Iterator[str]:
    """A JetStream server that takes messages of up to 32 MB (the default is 1 MB)."""
    server = NatsServer(nats_binary, config="max_payload: 33554432\n").start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.mark.timeout(60)
async def test_hostile_messages_are_dead_lettered_and_the_receiver_goes_on(roomy_nats_url: str) -> None:
    """Published with plain nats-py: each hostile message is recorded with a reason, and a
    good event published after it still arrives."""
    url = roomy_nats_url
    names = await fresh_stream(url)
    codec = EventCodec()
    odd_event_headers = (
        b'{"v":1,"id":1,"type":"x","priority":0,"payload":null,"headers":{"k":[1]},"named":false}'
    )
    hostile = [
        (b"\x00\xff\xfe\x80 garbage \xc3\x28" * 64, None, "not valid UTF-8"),
        (b'"' + b"x" * (20 * 1024 * 1024) + b'"', None, "event must be an object"),
        (b"[" * 100_000, None, "nested too deeply"),
        (
            odd_event_headers,
            {"Odd-Key": "\x00\x01\x7f \u00e9 \u2713 \t tab", "X-Escape": "\x1b[31m\x7f"},
            "event headers must map strings to strings",
        ),
    ]
    hook, collector = Hook(), Collector()
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        async with AsyncEventNexus() as target:
            target.on_error(hook)
            target.add_handler(-1, collector)
            receiver = JetStreamReceiver(url, names.stream, group="g", dead_letter_subject=names.dead_subject)
            target.add_producer(receiver)
            for number, (body, headers, _) in enumerate(hostile, 1):
                await js.publish(names.subject, body, headers=headers, timeout=10)
                await js.publish(names.subject, codec.encode(Event(number, "good")))
                await collector.wait(number, timeout=15)  # it goes on after each
            records = await dead_letters(client, names, len(hostile))
            await until(lambda: len(hook.calls) == len(hostile) and receiver.acknowledged == len(hostile))
        info = await js.consumer_info(names.stream, "g")
    finally:
        await client.close()
    assert [event.id for event in collector.events] == [1, 2, 3, 4]
    for record, (body, _, reason), (error, subject) in zip(records, hostile, hook.calls, strict=True):
        assert record.data == body  # the original body, 20 MB included
        assert reason in record.headers["Nexus-Reason"]
        assert isinstance(error, MalformedMessage) and subject is receiver and reason in error.reason
    assert [int(record.headers["Nexus-Sequence"]) for record in records] == [1, 3, 5, 7]
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_message_delivered_too_often_is_dead_lettered(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    async with JetStreamSender(nats_url, names.subject) as sender:
        await sender.send(Event(1, "poison"))
    # The first receiver's nexus is hard-stopped holding it: one delivery, handed back.
    first = JetStreamReceiver(
        nats_url,
        names.stream,
        group="g",
        ack_wait=60.0,
        max_deliveries=1,
        dead_letter_subject=names.dead_subject,
    )
    blocked = Blocked()
    nexus = AsyncEventNexus()
    nexus.add_handler(-1, blocked)
    nexus.add_producer(first)
    task = nexus.start()
    try:
        await until(lambda: len(blocked.events) == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    hook, collector = Hook(), Collector()
    second = JetStreamReceiver(
        nats_url, names.stream, group="g", max_deliveries=1, dead_letter_subject=names.dead_subject
    )
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_handler(-1, collector)
        target.add_producer(second)
        (record,) = await dead_letters(admin, names, 1)
        await until(lambda: len(hook.calls) == 1)
    await first.close()
    assert collector.events == []
    ((error, _),) = hook.calls
    assert isinstance(error, UndeliverableMessage) and error.deliveries == 2
    assert record.headers["Nexus-Deliveries"] == "2"


async def test_a_message_held_too_long_is_reported_once(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    hook = Hook()
    receiver = JetStreamReceiver(
        nats_url, names.stream, group="g", stuck_after=0.2, dead_letter_subject=names.dead_subject
    )
    blocked = Blocked()
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_handler("e", blocked, concurrency=2)
        target.add_producer(receiver)
        async with JetStreamSender(nats_url, names.subject) as sender:
            await sender.send(Event(1, "e"))
        await asyncio.wait_for(hook.called.wait(), 10)
        # Several more rounds of looking (one every stuck_after / 4 s): still one report.
        await asyncio.sleep(0.5)
        blocked.release.set()
        await until(lambda: receiver.acknowledged == 1)
    ((exc, subject),) = hook.calls
    assert isinstance(exc, StuckMessage) and isinstance(exc, AsyncNexusError) and subject is receiver
    assert exc.sequence == 1 and exc.stream == names.stream and exc.seconds >= 0.2
    assert "message 1 of stream" in str(exc) and "timeout=" in str(exc)
    info = await admin.jetstream().consumer_info(names.stream, "g")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


@pytest.mark.parametrize("bad", [0, -1, "1"])
def test_stuck_after_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="stuck_after must be a positive number"):
        JetStreamReceiver("nats://127.0.0.1:1", "S", stuck_after=bad)


# -- the receiver: redelivery ------------------------------------------------------------------


async def test_what_a_hard_stopped_receiver_held_goes_to_another_of_its_group(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    total = 20
    async with JetStreamSender(nats_url, names.subject) as sender:
        for i in range(total):
            await sender.send(Event(i, "x"))
    first = JetStreamReceiver(
        nats_url, names.stream, group="g", ack_wait=60.0, dead_letter_subject=names.dead_subject
    )
    blocked = Blocked()
    nexus = AsyncEventNexus()
    nexus.add_handler(-1, blocked)
    nexus.add_producer(first)
    task = nexus.start()
    try:
        await until(lambda: first.in_flight == total)
    finally:
        task.cancel()  # a hard stop: the receiver closes and hands back what it held
        await asyncio.gather(task, return_exceptions=True)
    collector = Collector()
    second = JetStreamReceiver(nats_url, names.stream, group="g", dead_letter_subject=names.dead_subject)
    async with AsyncEventNexus() as target:
        target.add_handler(-1, collector)
        target.add_producer(second)
        await collector.wait(total, timeout=10)
        await until(lambda: second.acknowledged == total)
    await first.close()
    assert sorted(event.id for event in collector.events) == list(range(total))


async def test_a_receiver_closed_mid_handling_hands_its_messages_back_at_once(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    total = 10
    async with JetStreamSender(nats_url, names.subject) as sender:
        for i in range(total):
            await sender.send(Event(i, "x"))
    blocked = Blocked()
    # ack_wait is long: only the hand-back (nak) makes them come again within the test.
    first = JetStreamReceiver(
        nats_url, names.stream, group="g", ack_wait=60.0, dead_letter_subject=names.dead_subject
    )
    collector = Collector()
    second = JetStreamReceiver(
        nats_url, names.stream, group="g", ack_wait=60.0, dead_letter_subject=names.dead_subject
    )
    async with AsyncEventNexus() as one, AsyncEventNexus() as two:
        one.add_handler(-1, blocked)
        one.add_producer(first)
        await until(lambda: first.in_flight == total)
        await first.close()
        two.add_handler(-1, collector)
        two.add_producer(second)
        await collector.wait(total, timeout=10)
        blocked.release.set()
    assert sorted(event.id for event in collector.events) == list(range(total))


async def test_a_handler_that_runs_past_ack_wait_is_kept_alive_not_redelivered(
    nats_url: str, admin: Client
) -> None:
    names = await fresh_stream(nats_url)
    async with JetStreamSender(nats_url, names.subject) as sender:
        await sender.send(Event(1, "slow"))
    blocked = Blocked()
    receiver = JetStreamReceiver(
        nats_url, names.stream, group="g", ack_wait=1.2, dead_letter_subject=names.dead_subject
    )
    async with AsyncEventNexus() as target:
        target.add_handler(-1, blocked)
        target.add_producer(receiver)
        await until(lambda: len(blocked.events) == 1)
        # Well past ack_wait: signs of life every 0.4 s keep it here, with room for a slow loop.
        await asyncio.sleep(3.0)
        blocked.release.set()
        await until(lambda: receiver.acknowledged == 1)
    info = await admin.jetstream().consumer_info(names.stream, "g")
    assert len(blocked.events) == 1 and info.num_redelivered == 0


# -- streams on purpose, and misuse --------------------------------------------------------------


async def test_ensure_stream_checks_an_existing_stream_and_says_what_differs(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    await ensure_stream(nats_url, names.stream, [names.subject], dead_letter_subject=names.dead_subject)
    with pytest.raises(StreamMismatch) as caught:
        await ensure_stream(
            nats_url, names.stream, [names.subject, "other.x"], replicas=3, retention="interest"
        )
    message = str(caught.value)
    assert "subjects" in message and "replicas" in message and "retention" in message
    assert set(caught.value.differences) == {"subjects", "replicas", "retention"}
    assert isinstance(caught.value, BadValue)
    with pytest.raises(BadValue, match="taken by the stream's own subject"):
        await ensure_stream(nats_url, "X", ["a.>"], dead_letter_subject="a.dead")


async def test_a_receiver_without_its_streams_reports_how_to_make_them(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    hook = Hook()
    async with AsyncEventNexus() as target:
        target.on_error(hook)
        target.add_producer(JetStreamReceiver(nats_url, "NOSUCH", group="g"))
        target.add_producer(JetStreamReceiver(nats_url, names.stream, group="g"))  # no stream for S.dead
        await until(lambda: len(hook.calls) == 2)
    messages = " | ".join(str(error) for error, _ in hook.calls)
    assert all(isinstance(error, BadCall) for error, _ in hook.calls)
    assert f"no stream holds the dead-letter subject '{names.stream}.dead'" in messages
    assert "stream 'NOSUCH' does not exist; create it with ensure_stream(" in messages


def test_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(BadValue):
        JetStreamSender("nats://127.0.0.1:1", "a.*")
    with pytest.raises(BadValue):
        JetStreamReceiver("nats://127.0.0.1:1", "S", max_in_flight=0)
    with pytest.raises(BadCall):
        JetStreamReceiver("nats://127.0.0.1:1", "has.dot")


async def test_logs_name_the_sender_while_it_retries(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="async_nexus.nats")
    names = await fresh_stream(nats_server.url)
    nats_server.stop()
    sender = JetStreamSender(nats_server.url, names.subject, close_timeout=0.3)
    await sender.send(Event(1, "x"))
    await until(lambda: "cannot reach NATS" in caplog.text)
    await sender.close()
    assert f"JetStreamSender({names.subject!r})" in caplog.text


async def test_a_receiver_without_a_group_gets_what_is_published_after_it_started(
    nats_url: str, admin: Client
) -> None:
    names = await fresh_stream(nats_url)
    async with JetStreamSender(nats_url, names.subject) as sender:
        await sender.send(Event(1, "before"))
        await sender.flush(timeout=10)
        collector = Collector()
        receiver = JetStreamReceiver(nats_url, names.stream, dead_letter_subject=names.dead_subject)
        async with AsyncEventNexus() as target:
            target.add_handler(-1, collector)
            target.add_producer(receiver)
            await receiver.wait_ready(10)
            await sender.send(Event(2, "after"))
            await collector.wait(1, timeout=10)
            await until(lambda: receiver.acknowledged == 1)
    assert [event.id for event in collector.events] == [2]
    consumers = await admin.jetstream().consumers_info(names.stream)
    assert consumers == []  # its consumer went with it


async def test_a_receiver_goes_on_after_a_server_restart(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="async_nexus.nats")
    names = await fresh_stream(nats_server.url)
    collector = Collector()
    receiver = JetStreamReceiver(
        nats_server.url, names.stream, group="g", fetch_wait=0.5, dead_letter_subject=names.dead_subject
    )
    sender = JetStreamSender(nats_server.url, names.subject, publish_timeout=0.5)
    async with AsyncEventNexus() as target:
        target.add_handler(-1, collector)
        target.add_producer(receiver)
        for i in range(50):
            await sender.send(Event(i, "x"))
        await collector.wait(50, timeout=10)
        await until(lambda: receiver.acknowledged == 50)
        nats_server.stop()
        nats_server.start()  # the same port and store: the stream and the group are kept
        for i in range(50, 100):
            await sender.send(Event(i, "x"))
        await sender.flush(timeout=15)
        await until(lambda: {event.id for event in collector.events} >= set(range(100)), timeout=15)
    await sender.close()
    assert "reconnected to NATS" in caplog.text
