"""The ZeroMQ transport, over real sockets: tcp on 127.0.0.1, ipc and inproc."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from support import Collector, Hook

from async_nexus import AsyncEventNexus, Event, NamedEvent
from async_nexus.codec import EventCodec
from async_nexus.errors import BadType, DecodeError, NoMoreEvents
from async_nexus.testing import Recorder
from async_nexus.transports.zmq import ZmqEventConverter, ZmqEventReceiver, ZmqEventSender, send_event

ROOT = Path(__file__).resolve().parent.parent
V1_SENDER = ROOT / "tests" / "programs" / "v1_zmq_sender.py"


class Treacle(NamedEvent):
    pass


class Custard(NamedEvent):
    pass


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


def connected(
    ctx: zmq.asyncio.Context, send_kind: int = zmq.PUSH, recv_kind: int = zmq.PULL
) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
    """(sending, receiving) sockets over tcp on a random port of 127.0.0.1."""
    receiving = ctx.socket(recv_kind)
    port = receiving.bind_to_random_port("tcp://127.0.0.1")
    sending = ctx.socket(send_kind)
    sending.connect(f"tcp://127.0.0.1:{port}")
    return sending, receiving


async def next_event(converter: Any, timeout: float = 5) -> Event:
    event: Event = await asyncio.wait_for(converter.obtain_event(), timeout)
    return event


def varied_events() -> list[Event]:
    return [
        Event(1, 7, 0, "plain"),
        Event("order-2", "sensor.temp", 3, {"celsius": 21.5, "ok": True, "tags": ["a", "b"], "none": None}),
        Event(3, 7, -2, [1, 2.25, "three", {"four": [4]}], {"trace": "abc", "origin": "unit"}),
        Treacle(4, "sticky", priority=1, headers={"correlation": "c-4"}),
        Custard(5, {"lumps": 0}),
        Event(6, 7, 0, None, {}),
        Event(7, 7, 0, "ünïcødé ✓"),
    ]


# -- events cross intact and in order ---------------------------------------------------------


@pytest.mark.parametrize("format", ["json", "msgpack"])
async def test_push_pull_events_cross_intact_and_in_order(ctx: zmq.asyncio.Context, format: Any) -> None:
    push, pull = connected(ctx)
    codec = EventCodec(named_events=[Treacle, Custard], format=format)
    receiver = ZmqEventReceiver(pull, codec=codec)
    sent = varied_events()
    for event in sent:
        await send_event(event, push, codec=codec)
    received = [await next_event(receiver) for _ in sent]
    assert received == sent
    assert [type(event) for event in received] == [type(event) for event in sent]


async def test_pub_sub_events_cross_filtered_by_topic(ctx: zmq.asyncio.Context) -> None:
    pub, sub = connected(ctx, zmq.PUB, zmq.SUB)
    sub.subscribe(b"wanted")
    codec = EventCodec(named_events=[Treacle])
    sender = ZmqEventSender(pub, codec=codec, topic=lambda event: str(event.type))
    receiver = ZmqEventReceiver(sub, codec=codec)

    # PUB drops what it sends before the subscription reaches it: probe until one arrives.
    probe = Event(0, "wanted.probe", 0, "probe")

    async def until_subscribed() -> None:
        while True:
            await sender.handle(probe, None)
            try:
                await asyncio.wait_for(receiver.obtain_event(), 0.05)
                return
            except asyncio.TimeoutError:
                continue

    await asyncio.wait_for(until_subscribed(), 5)

    unwanted = Event(99, "other", 0, "must not arrive")
    wanted = [Event(n, "wanted.reading", 0, n, {"n": str(n)}) for n in range(1, 6)]
    await sender.handle(unwanted, None)  # sent first: on one connection it would arrive first
    for event in wanted:
        await sender.handle(event, None)
    received: list[Event] = []
    while len(received) < len(wanted):
        event = await next_event(receiver)
        if event != probe:  # late copies of the probe may still be on their way
            received.append(event)
    assert received == wanted


async def test_dealer_router_and_inproc_envelope_frames_are_skipped(ctx: zmq.asyncio.Context) -> None:
    router = ctx.socket(zmq.ROUTER)
    router.bind("inproc://events")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect("inproc://events")
    receiver = ZmqEventReceiver(router)  # ROUTER prefixes each message with the peer's identity
    sent = [Event(n, 5, 0, f"#{n}", {"h": "v"}) for n in range(3)]
    for event in sent:
        await send_event(event, dealer, topic=b"an envelope frame")
    assert [await next_event(receiver) for _ in sent] == sent


async def test_sender_in_one_nexus_receiver_in_another(ctx: zmq.asyncio.Context, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/events.sock"
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    codec = EventCodec(named_events=[Treacle])

    sending, receiving = AsyncEventNexus(), AsyncEventNexus()
    sending_hook, receiving_hook = Hook(), Hook()
    sending.on_error(sending_hook)
    receiving.on_error(receiving_hook)
    sender = ZmqEventSender(push, codec=codec)
    sending.add_handler(7, sender)
    sending.add_handler(Treacle, sender)
    stays = Collector()
    sending.add_handler(8, stays)
    receiver = ZmqEventReceiver(pull, codec=codec)
    receiving.add_converter(receiver)
    arrived = Collector()
    receiving.add_handler(-1, arrived)

    crossing = [
        Event(1, 7, 0, "one", {"trace": "t-1"}),
        Treacle(3, {"grams": 250}, headers={"correlation": "c-3"}),
        Event(4, 7, 0, "four"),
    ]
    local = Event(2, 8, 0, "stays here")
    receiving_task, sending_task = receiving.start(), sending.start()
    for event in (crossing[0], local, *crossing[1:]):
        await sending.ingest(event)
    await arrived.wait(len(crossing))
    await asyncio.wait_for(sending.join(), 5)
    sending.stop()
    receiving.stop()
    await asyncio.wait_for(asyncio.gather(sending_task, receiving_task), 10)

    assert arrived.events == crossing
    assert isinstance(arrived.events[1], Treacle)
    assert stays.events == [local]
    assert sending_hook.calls == [] and receiving_hook.calls == []
    assert pull.closed  # the stopping nexus closed its converter, which closed its socket


# -- strings become events ----------------------------------------------------------------------


async def test_zmq_event_converter_makes_events_of_its_type(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    nexus = AsyncEventNexus()
    by_nexus = ZmqEventConverter(pull, event_type=50, event_factory=nexus)
    await push.send_string("hi")
    await push.send_multipart([b"topic", b"there"])  # one event: the last frame
    first, second = await next_event(by_nexus), await next_event(by_nexus)
    assert (first.type, first.payload, second.type, second.payload) == (50, "hi", 50, "there")
    assert type(first) is Event
    assert (first.id, second.id) == (1, 2)  # the nexus's sequential ids
    assert nexus.next_id() == 3

    named = ZmqEventConverter(pull, event_type=Treacle, event_factory=nexus)
    await push.send_string("sticky")
    treacle = await next_event(named)
    assert isinstance(treacle, Treacle) and treacle.payload == "sticky" and treacle.id == 4


async def test_zmq_event_converter_without_factory_uses_random_ids(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    converter = ZmqEventConverter(pull, event_type="line")
    for text in ("a", "b", "c"):
        await push.send_string(text)
    events = [await next_event(converter) for _ in range(3)]
    assert [(e.type, e.payload) for e in events] == [("line", "a"), ("line", "b"), ("line", "c")]
    ids = {event.id for event in events}
    assert len(ids) == 3 and all(isinstance(i, int) and i > 1000 for i in ids)


async def test_zmq_event_converter_overridden_convert_to_event(ctx: zmq.asyncio.Context) -> None:
    class CsvConverter(ZmqEventConverter):
        def convert_to_event(self, s: str) -> Event:
            if "," not in s:
                raise DecodeError(f"not CSV: {s!r}", s)
            return super().convert_to_event(s.split(","))  # type: ignore[arg-type]

    push, pull = connected(ctx)
    converter = CsvConverter(pull, event_type=9)
    await push.send_string("no commas")
    await push.send_string("a,b")
    with pytest.raises(DecodeError, match="not CSV"):
        await next_event(converter)
    assert (await next_event(converter)).payload == ["a", "b"]


# -- bad input: reported, and receiving goes on ---------------------------------------------------


async def test_bad_frames_raise_decode_error_and_the_next_message_still_arrives(
    ctx: zmq.asyncio.Context,
) -> None:
    push, pull = connected(ctx)
    receiver = ZmqEventReceiver(pull)
    await push.send(b"\x80garbage")
    await send_event(Event(1, 2, 0, "fine"), push)
    with pytest.raises(DecodeError) as caught:
        await next_event(receiver)
    assert caught.value.raw == b"\x80garbage"
    assert await next_event(receiver) == Event(1, 2, 0, "fine")

    strings = ZmqEventConverter(pull, event_type=1)
    await push.send(b"\xff\xfe not utf-8")
    await push.send_string("text")
    with pytest.raises(DecodeError, match="not UTF-8") as caught:
        await next_event(strings)
    assert caught.value.raw == b"\xff\xfe not utf-8"
    assert (await next_event(strings)).payload == "text"


async def test_garbage_goes_to_the_error_hook_and_later_events_arrive(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    codec = EventCodec(named_events=[Treacle])
    receiver = ZmqEventReceiver(pull, codec=codec)
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    arrived = Collector()
    nexus.add_handler(-1, arrived)
    nexus.add_converter(receiver)
    garbage = [
        b"not json at all",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'{"v": 1, "id": 1}',
        EventCodec(named_events=[Custard]).encode(Custard(1, "not registered on this side")),
        EventCodec(format="msgpack").encode(Event(1, 2)),
    ]
    good = [Event(10, 7, 0, "after the garbage", {"trace": "t"}), Treacle(11, "still sticky")]
    task = nexus.start()
    await send_event(good[0], push, codec=codec)
    for frame in garbage:
        await push.send(frame)
    await send_event(good[1], push, codec=codec)
    await arrived.wait(2)
    nexus.stop()
    await asyncio.wait_for(task, 5)

    assert arrived.events == good
    assert [type(exc) for exc, _ in hook.calls] == [DecodeError] * len(garbage)
    assert all(subject is receiver for _, subject in hook.calls)
    assert [exc.raw for exc, _ in hook.calls] == garbage  # type: ignore[attr-defined]
    assert "register it" in str(hook.calls[4][0])


async def test_zmq_event_converter_in_a_nexus_reports_non_text(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    arrived = Collector()
    nexus.add_handler(50, arrived)
    converter = ZmqEventConverter(pull, event_type=50, event_factory=nexus)
    nexus.add_converter(converter)
    task = nexus.start()
    await push.send_string("before")
    await push.send(b"\xc3\x28")
    await push.send_string("after")
    await arrived.wait(2)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert [event.payload for event in arrived.events] == ["before", "after"]
    assert len(hook.calls) == 1
    assert isinstance(hook.calls[0][0], DecodeError) and hook.calls[0][1] is converter


async def test_sender_failures_go_to_the_error_hook_and_dispatch_goes_on(ctx: zmq.asyncio.Context) -> None:
    push = ctx.socket(zmq.PUSH)  # connected to no peer: a send cannot complete
    push.sndtimeo = 1  # ms: give up instead of holding up dispatch
    sender = ZmqEventSender(push)
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    nexus.add_handler(1, sender)
    after = Collector()
    nexus.add_handler(2, after)
    unencodable, unsendable = Event(1, 1, 0, object()), Event(2, 1, 0, "no peer")
    task = nexus.start()
    for event in (unencodable, unsendable, Event(3, 2)):
        await nexus.ingest(event)
    await after.wait(1)
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert [(type(exc), subject) for exc, subject in hook.calls] == [
        (BadType, unencodable),
        (zmq.Again, unsendable),
    ]


async def test_a_full_receiving_nexus_holds_the_sender_back_and_loses_nothing(
    ctx: zmq.asyncio.Context,
) -> None:
    pull = ctx.socket(zmq.PULL)
    pull.rcvhwm = 1
    pull.bind("inproc://backpressure")
    push = ctx.socket(zmq.PUSH)
    push.sndhwm = 1
    push.sndtimeo = 0  # refuse at once when ZeroMQ holds as much as it may
    push.connect("inproc://backpressure")
    gate = asyncio.Event()
    arrived = Collector()

    async def slow(event: Event, queue: Any) -> None:
        await gate.wait()
        arrived(event, queue)

    nexus = AsyncEventNexus(maxsize=1)
    nexus.add_handler(1, slow)
    nexus.add_converter(ZmqEventReceiver(pull))
    task = nexus.start()
    accepted: list[int] = []

    async def send_until_refused() -> None:
        for n in range(10_000):
            try:
                await send_event(Event(n, 1), push)
            except zmq.Again:
                return
            accepted.append(n)

    await asyncio.wait_for(send_until_refused(), 10)
    assert 0 < len(accepted) < 10_000  # held back: the stalled nexus stopped reading
    gate.set()
    await arrived.wait(len(accepted))
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert [event.id for event in arrived.events] == accepted


# -- sockets: the right kind, closed when done -------------------------------------------------


async def test_closed_socket_retires_the_converter_quietly(ctx: zmq.asyncio.Context) -> None:
    _, pull = connected(ctx)
    receiver = ZmqEventReceiver(pull)
    waiting = asyncio.ensure_future(receiver.obtain_event())
    await asyncio.sleep(0)  # let it start waiting: the close must meet a pending receive
    receiver.close()
    with pytest.raises(NoMoreEvents):
        await asyncio.wait_for(waiting, 5)
    with pytest.raises(NoMoreEvents):  # and once closed, at the next call too
        await receiver.obtain_event()


async def test_cancelling_the_pump_is_still_a_cancellation(ctx: zmq.asyncio.Context) -> None:
    _, pull = connected(ctx)
    receiver = ZmqEventReceiver(pull)
    waiting = asyncio.ensure_future(receiver.obtain_event())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not pull.closed


async def test_context_managers_close_their_sockets(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    with ZmqEventReceiver(pull) as receiver:
        assert receiver.socket is pull and not pull.closed
    assert pull.closed
    with ZmqEventSender(push) as sender:
        assert sender.socket is push and not push.closed
    assert push.closed
    strings = ctx.socket(zmq.SUB)
    with ZmqEventConverter(strings, event_type=1) as converter:
        assert converter.socket is strings
    assert strings.closed


async def test_nexus_stop_closes_a_receiver_that_never_received(ctx: zmq.asyncio.Context) -> None:
    _, pull = connected(ctx)
    nexus = AsyncEventNexus()
    nexus.add_converter(ZmqEventReceiver(pull))
    task = nexus.start()
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert pull.closed


async def test_wrong_sockets_and_arguments_are_refused_clearly(ctx: zmq.asyncio.Context) -> None:
    push, pull = connected(ctx)
    with pytest.raises(ValueError, match="cannot use a PUSH socket: PUSH sockets only send"):
        ZmqEventReceiver(push)
    with pytest.raises(ValueError, match="cannot use a PUB socket"):
        ZmqEventConverter(ctx.socket(zmq.PUB), event_type=1)
    with pytest.raises(ValueError, match="cannot use a REP socket"):
        ZmqEventReceiver(ctx.socket(zmq.REP))
    with pytest.raises(ValueError, match="cannot use a PULL socket"):
        ZmqEventSender(pull)
    with pytest.raises(ValueError, match="cannot use a SUB socket"):
        send_event(Event(1, 1), ctx.socket(zmq.SUB))
    plain = zmq.Context()
    try:
        with pytest.raises(TypeError, match=r"zmq\.asyncio\.Context"):
            ZmqEventReceiver(plain.socket(zmq.PULL))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"zmq\.asyncio\.Context"):
            ZmqEventSender(plain.socket(zmq.PUSH))  # type: ignore[arg-type]
    finally:
        plain.destroy(linger=0)
    with pytest.raises(TypeError, match="needs a ZeroMQ socket, got str"):
        ZmqEventReceiver("tcp://127.0.0.1:5555")  # type: ignore[arg-type]
    closed = ctx.socket(zmq.PULL)
    closed.close()
    with pytest.raises(ValueError, match="closed socket"):
        ZmqEventReceiver(closed)
    with pytest.raises(TypeError, match="event_type must be"):
        ZmqEventConverter(pull, event_type=Event)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_factory must be"):
        ZmqEventConverter(pull, event_type=1, event_factory="nexus")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="topic must be"):
        ZmqEventSender(push, topic=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="topic function returned int"):
        send_event(Event(1, 1), push, topic=lambda event: 7)  # type: ignore[arg-type,return-value]


async def test_send_event_on_a_plain_socket_sends_at_once(ctx: zmq.asyncio.Context) -> None:
    plain = zmq.Context()
    try:
        pull = plain.socket(zmq.PULL)
        pull.bind("inproc://plain")
        push = plain.socket(zmq.PUSH)
        push.connect("inproc://plain")
        pull.rcvtimeo = 5000
        event = Event(1, "t", 0, {"k": "v"}, {"h": "1"})
        assert send_event(event, push) is None
        assert EventCodec().decode(pull.recv()) == event
    finally:
        plain.destroy(linger=0)


def test_the_1_0_import_path_still_works() -> None:
    import async_nexus.transports.zmq as transport
    import async_nexus.zmq as legacy

    for name in legacy.__all__:
        assert getattr(legacy, name) is getattr(transport, name)


# -- senders written for async-nexus 1.0 ---------------------------------------------------------


@dataclasses.dataclass
class OldEvent:
    """Shaped like async-nexus 1.0's Event, which 1.0's send_event sent with send_json."""

    id: int
    type: int | str
    priority: int
    payload: object


@pytest.fixture
def old_sender(ctx: zmq.asyncio.Context) -> Iterator[tuple[zmq.Socket[bytes], zmq.asyncio.Socket]]:
    """(sending, receiving): a plain PUSH socket, as 1.0's demos used, to an asyncio PULL over tcp."""
    plain = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = plain.socket(zmq.PUSH)
    push.sndtimeo = 5000  # ms: a send that cannot complete fails the test instead of hanging it
    push.connect(f"tcp://127.0.0.1:{port}")
    yield push, pull
    plain.destroy(linger=0)


async def test_events_from_a_1_0_sender_reach_their_handlers(
    old_sender: tuple[zmq.Socket[bytes], zmq.asyncio.Socket],
) -> None:
    push, pull = old_sender
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    teapots, sensors, others = Recorder(name="teapots"), Recorder(name="sensors"), Recorder(name="others")
    nexus.add_handler(99, teapots)
    nexus.add_handler("sensor.temp", sensors)
    nexus.add_handler(-1, others)
    receiver = ZmqEventReceiver(pull)
    nexus.add_converter(receiver)
    task = nexus.start()

    # As 1.0.2's demo sent an event, and as its send_event() did.
    push.send_json(OldEvent(1001, 99, 0, "TEAPOT!"), default=dataclasses.asdict)
    push.send_json(dataclasses.asdict(OldEvent(1002, "sensor.temp", 1, {"celsius": 21.5})))
    push.send(b'{"id": 1003, "type": 7, "priority": -2, "payload": null}')
    send_event(Event(1004, 7, 0, "today's form", {"trace": "t-4"}), push)  # side by side

    teapot = await teapots.wait_for(1)
    sensor = await sensors.wait_for(1)
    rest = await others.wait_for(2)
    nexus.stop()
    await asyncio.wait_for(task, 5)

    assert teapot == [Event(1001, 99, 0, "TEAPOT!")]
    assert sensor == [Event(1002, "sensor.temp", 1, {"celsius": 21.5})]
    assert rest == [Event(1003, 7, -2, None), Event(1004, 7, 0, "today's form", {"trace": "t-4"})]
    assert all(type(event) is Event for event in teapot + sensor + rest)
    assert teapot[0].headers is None and sensor[0].headers is None
    assert hook.calls == []


async def test_malformed_1_0_style_dicts_go_to_the_error_hook_and_receiving_goes_on(
    old_sender: tuple[zmq.Socket[bytes], zmq.asyncio.Socket],
) -> None:
    push, pull = old_sender
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    arrived = Recorder()
    nexus.add_handler(-1, arrived)
    receiver = ZmqEventReceiver(pull)
    nexus.add_converter(receiver)
    malformed: list[tuple[dict[str, Any], str]] = [
        ({"id": 1, "type": 99, "priority": 0}, "it has id, priority, type"),
        ({"id": 2, "type": 99, "priority": 0, "payload": "x", "colour": "red"}, "it has colour, id, "),
        ({"id": 3, "type": 99, "priority": 0, "payload": "x", "headers": {"a": "b"}}, "never carried"),
        ({"id": 4, "type": 99, "priority": 0, "payload": "x", "headers": []}, "headers (list []), which"),
        ({}, "it has none"),
        ({"id": 5, "type": 1.5, "priority": 0, "payload": "x"}, "type must be an int or a str, got float"),
        ({"id": 6, "type": True, "priority": 0, "payload": "x"}, "type must be an int or a str, got bool"),
        ({"id": 7, "type": 99, "priority": "high", "payload": "x"}, "priority must be an int, got str"),
        ({"id": 8, "type": 99, "priority": False, "payload": "x"}, "priority must be an int, got bool"),
        ({"id": [9], "type": 99, "priority": 0, "payload": "x"}, "id must be an int or a str, got list"),
    ]
    task = nexus.start()
    for fields, _ in malformed:
        push.send_json(fields)
    push.send_json(OldEvent(10, 99, 0, "after the malformed ones"), default=dataclasses.asdict)
    await arrived.wait_for(1)
    nexus.stop()
    await asyncio.wait_for(task, 5)

    assert arrived.events == [Event(10, 99, 0, "after the malformed ones")]
    assert [type(exc) for exc, _ in hook.calls] == [DecodeError] * len(malformed)
    assert all(subject is receiver for _, subject in hook.calls)
    for (exc, _), (fields, reason) in zip(hook.calls, malformed, strict=True):
        assert reason in str(exc), (fields, str(exc))
        assert json.loads(exc.raw) == fields  # type: ignore[attr-defined]
    # What is neither form says what today's form lacks, too.
    assert "missing field(s): v, headers, named; nor is it" in str(hook.calls[1][0])


async def test_todays_event_sent_the_1_0_way_arrives_with_its_empty_headers_left_out(
    old_sender: tuple[zmq.Socket[bytes], zmq.asyncio.Socket],
) -> None:
    push, pull = old_sender
    receiver = ZmqEventReceiver(pull)
    # A 1.0 program run unchanged sends today's Event, whose headers field comes along.
    push.send_json(Event(1001, 99, 0, "TEAPOT!"), default=dataclasses.asdict)
    push.send_json(Event(1002, "sensor.temp", 1, {"celsius": 21.5}, {}), default=dataclasses.asdict)
    push.send_json(Treacle(1003, "sticky"), default=dataclasses.asdict)
    received = [await next_event(receiver) for _ in range(3)]
    assert received == [
        Event(1001, 99, 0, "TEAPOT!"),
        Event(1002, "sensor.temp", 1, {"celsius": 21.5}),
        Event(1003, "Treacle", 0, "sticky"),  # as in 1.0: named events arrive as plain ones
    ]
    assert all(type(event) is Event and event.headers is None for event in received)


async def test_a_1_0_program_run_unchanged_reaches_todays_receiver(ctx: zmq.asyncio.Context) -> None:
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    arrived = Recorder()
    nexus.add_handler(-1, arrived)
    nexus.add_converter(ZmqEventReceiver(pull))
    task = nexus.start()
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        str(V1_SENDER),
        f"tcp://127.0.0.1:{port}",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(sender.communicate(), 30)
    assert sender.returncode == 0 and out.decode().strip() == "sent 3", err.decode()
    events = await arrived.wait_for(3)
    nexus.stop()
    await asyncio.wait_for(task, 5)

    assert sorted(events, key=lambda event: event.id) == [  # by priority, if they queued together
        Event(1001, 99, 0, "TEAPOT!"),
        Event(1002, "sensor.temp", 1, {"celsius": 21.5}),
        Event(1003, "Kettle", 0, "boiling"),
    ]
    assert all(event.headers is None for event in events)
    assert hook.calls == []


async def test_a_1_0_event_to_a_string_converter_is_its_text_as_in_1_0(
    old_sender: tuple[zmq.Socket[bytes], zmq.asyncio.Socket],
) -> None:
    push, pull = old_sender
    converter = ZmqEventConverter(pull, event_type=50)
    push.send_json(OldEvent(1001, 99, 0, "TEAPOT!"), default=dataclasses.asdict)
    event = await next_event(converter)
    assert event.type == 50
    assert json.loads(event.payload) == {"id": 1001, "type": 99, "priority": 0, "payload": "TEAPOT!"}


async def test_a_msgpack_receiver_does_not_read_1_0_json(
    old_sender: tuple[zmq.Socket[bytes], zmq.asyncio.Socket],
) -> None:
    push, pull = old_sender
    receiver = ZmqEventReceiver(pull, codec=EventCodec(format="msgpack"))
    push.send_json(OldEvent(1001, 99, 0, "TEAPOT!"), default=dataclasses.asdict)
    with pytest.raises(DecodeError, match="not valid MessagePack"):
        await next_event(receiver)
