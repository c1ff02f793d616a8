"""``wire="raw"``: the NATS transport and other NATS programs on the same subjects.

Both directions, with plain nats-py and with a FastStream application, on real servers of
both builds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from itertools import takewhile
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from support import Collector, Hook

from async_nexus import AsyncEventNexus, Event
from async_nexus.codec import EventCodec
from async_nexus.errors import BadType, BadValue
from async_nexus.testing import running
from async_nexus.transports.nats import JetStreamReceiver, JetStreamSender, MalformedMessage, ensure_stream

pytestmark = pytest.mark.timeout(30)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms, for at most ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@dataclasses.dataclass
class Names:
    stream: str
    subject: str
    dead_subject: str
    dead_stream: str


async def fresh_stream(url: str) -> Names:
    tag = uuid.uuid4().hex[:12]
    names = Names(f"R{tag}", f"r{tag}.orders.created", f"r{tag}.dead", f"R{tag}-dead")
    await ensure_stream(url, names.stream, [f"r{tag}.orders.*"], dead_letter_subject=names.dead_subject)
    return names


def raw_receiver(url: str, names: Names, group: str) -> JetStreamReceiver:
    return JetStreamReceiver(
        url, names.stream, group=group, wire="raw", dead_letter_subject=names.dead_subject
    )


@pytest.fixture
async def admin(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@dataclasses.dataclass
class Order:
    sku: str
    count: int


# -- other programs -> the receiver ------------------------------------------------------------


async def test_messages_published_by_plain_nats_py_become_events(nats_url: str, admin: Client) -> None:
    names = await fresh_stream(nats_url)
    js = admin.jetstream()
    other = names.subject.replace("created", "cancelled")
    await js.publish(names.subject, b'{"sku": "T-1", "count": 2}', headers={"origin": "shop", "Trace": "x1"})
    await js.publish(other, b"not json at all")
    await js.publish(names.subject, b"\xff\xfe binary")
    await js.publish(names.subject, b"")
    await js.publish(names.subject, b'"just a string"')
    collector = Collector()
    nexus = AsyncEventNexus()
    nexus.add_handler(-1, collector)
    nexus.add_producer(raw_receiver(nats_url, names, "raw"))
    async with running(nexus):
        events = await collector.wait(5)
    first, second, third, fourth, fifth = events
    assert (first.type, first.payload) == (names.subject, {"sku": "T-1", "count": 2})
    assert first.headers is not None
    assert (first.headers["origin"], first.headers["Trace"]) == ("shop", "x1")
    assert first.id == f"{names.stream}:1" and first.priority == 0
    assert (second.type, second.payload) == (other, b"not json at all")
    assert third.payload == b"\xff\xfe binary"
    assert fourth.payload == b"" and fourth.headers is None
    assert fifth.payload == "just a string"
    assert [event.id for event in events] == [f"{names.stream}:{n}" for n in range(1, 6)]


async def test_a_raw_body_nested_too_deeply_is_a_dead_letter_and_receiving_goes_on(
    nats_url: str, admin: Client
) -> None:
    names = await fresh_stream(nats_url)
    js = admin.jetstream()
    await js.publish(names.subject, b"[" * 100_000 + b"]" * 100_000)
    await js.publish(names.subject, b'{"after": true}')
    collector, hook = Collector(), Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler(-1, collector)
    nexus.add_producer(raw_receiver(nats_url, names, "raw"))
    async with running(nexus):
        (event,) = await collector.wait(1)
        await until(lambda: len(hook.calls) == 1)
        record = await admin.jetstream().get_last_msg(names.dead_stream, names.dead_subject)
    assert event.payload == {"after": True}
    assert isinstance(hook.calls[0][0], MalformedMessage)
    assert record.headers is not None
    assert record.headers["Nexus-Reason"] == "the body is JSON nested too deeply to decode"


# -- the sender -> other programs ------------------------------------------------------------


async def test_the_raw_sender_publishes_the_payload_as_json_and_headers_as_nats_headers(
    nats_url: str, admin: Client
) -> None:
    names = await fresh_stream(nats_url)
    subscription = await admin.jetstream().pull_subscribe(names.subject, durable="plain", stream=names.stream)
    async with JetStreamSender(nats_url, names.subject, wire="raw") as sender:
        await sender.send(Event(1, "order", 0, {"sku": "T-1", "count": 2}, {"origin": "shop"}))
        await sender.send(Event(2, "order", 0, Order("T-2", 5)))
        await sender.send(Event(3, "order", 0, b"\x00raw bytes"))
        await sender.send(Event(4, "order", 0, None))
        await sender.flush(timeout=10)
    messages = await subscription.fetch(4, timeout=5)
    assert [json.loads(msg.data) for msg in messages[:2]] == [
        {"sku": "T-1", "count": 2},
        {"sku": "T-2", "count": 5},
    ]
    assert messages[2].data == b"\x00raw bytes"
    assert messages[3].data == b"null"
    assert messages[0].headers is not None and messages[0].headers["origin"] == "shop"
    # The only header of the sender's own is the one JetStream deduplicates by.
    assert set(messages[1].headers or {}) == {"Nats-Msg-Id"}


async def test_the_raw_wire_round_trips_between_two_nexuses(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    collector = Collector()
    receiving = AsyncEventNexus()
    receiving.add_handler(names.subject, collector)
    receiving.add_producer(raw_receiver(nats_url, names, "g"))
    sending = AsyncEventNexus()
    sending.add_handler("order", JetStreamSender(nats_url, names.subject, wire="raw"))
    async with running(receiving), running(sending):
        await sending.ingest(Event(9, "order", 3, {"n": [1, 2.5, None]}, {"k": "v"}))
        (event,) = await collector.wait(1)
    assert (event.type, event.payload, event.priority) == (names.subject, {"n": [1, 2.5, None]}, 0)
    assert event.headers is not None and event.headers["k"] == "v"


async def test_headers_nats_cannot_carry_are_refused_with_the_reason_and_nothing_is_published(
    nats_url: str, admin: Client
) -> None:
    names = await fresh_stream(nats_url)
    hook, collector = Hook(), Collector()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    sender = JetStreamSender(nats_url, names.subject, wire="raw")
    nexus.add_handler("order", sender)
    nexus.add_handler("done", collector)
    async with running(nexus):
        await nexus.ingest(Event(1, "order", 0, 1, {"X-Injected": "a\r\nNats-Msg-Id: forged"}))
        await nexus.ingest(Event(2, "order", 0, 2, {"bad:name": "v"}))
        await nexus.ingest(Event(3, "order", 0, 3, {"fine": "v"}))
        await nexus.ingest(Event(4, "done"))
        await collector.wait(1)
        await sender.flush(timeout=10)
        info = await admin.jetstream().stream_info(names.stream)
    assert info.state.messages == 1
    assert [type(error) for error, _ in hook.calls] == [BadValue, BadValue]
    assert "cannot be a NATS header" in str(hook.calls[0][0])


def test_the_raw_wire_is_json_and_names_are_checked() -> None:
    with pytest.raises(BadValue, match="wire='raw' carries JSON bodies"):
        JetStreamSender("nats://127.0.0.1:1", "a.b", wire="raw", codec=EventCodec(format="msgpack"))
    with pytest.raises(BadValue, match="wire must be 'nexus'"):
        JetStreamReceiver("nats://127.0.0.1:1", "S", wire="json")


async def test_a_payload_the_codec_cannot_encode_is_refused_with_its_type(nats_url: str) -> None:
    names = await fresh_stream(nats_url)
    async with JetStreamSender(nats_url, names.subject, wire="raw") as sender:
        with pytest.raises(BadType, match="object"):
            await sender.send(Event(1, "order", 0, object()))
        assert sender.pending == 0


# -- FastStream ------------------------------------------------------------------------------


async def test_a_faststream_subscriber_reads_what_the_raw_sender_publishes(nats_url: str) -> None:
    from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

    names = await fresh_stream(nats_url)
    got: list[tuple[Any, dict[str, str]]] = []
    broker = NatsBroker(nats_url)

    @broker.subscriber(
        names.subject,
        stream=JStream(names.stream, declare=False),
        durable="faststream",
        pull_sub=PullSub(batch_size=10, timeout=0.5),
    )
    async def on_order(body: dict[str, Any], msg: NatsMessage) -> None:
        got.append((body, dict(msg.headers)))

    async with broker:
        await broker.start()
        async with JetStreamSender(nats_url, names.subject, wire="raw") as sender:
            await sender.send(Event(1, "order", 0, {"sku": "T-1", "count": 2}, {"origin": "nexus"}))
            await sender.send(Event(2, "order", 0, Order("T-2", 5)))
        await until(lambda: len(got) == 2, timeout=20)
    # FastStream may handle the messages of one pull side by side: their order is its own.
    got.sort(key=lambda pair: str(pair[0]["sku"]))
    assert [body for body, _ in got] == [{"sku": "T-1", "count": 2}, {"sku": "T-2", "count": 5}]
    assert got[0][1]["origin"] == "nexus"


async def test_what_a_faststream_publisher_sends_reaches_the_raw_receiver(nats_url: str) -> None:
    from faststream.nats import NatsBroker
    from pydantic import BaseModel

    class Shipment(BaseModel):
        order: str
        parcels: int

    names = await fresh_stream(nats_url)
    collector = Collector()
    nexus = AsyncEventNexus()
    nexus.add_handler(names.subject, collector)
    receiver = raw_receiver(nats_url, names, "from-faststream")
    nexus.add_producer(receiver)
    broker = NatsBroker(nats_url)
    async with broker, running(nexus):
        await broker.connect()
        await broker.publish(
            {"sku": "T-1"}, names.subject, headers={"origin": "faststream"}, stream=names.stream
        )
        await broker.publish(Shipment(order="T-1", parcels=2), names.subject, stream=names.stream)
        await broker.publish(b"\x00\x01", names.subject, stream=names.stream)
        await broker.publish("plain text", names.subject, stream=names.stream, correlation_id="c-1")
        events = await collector.wait(4)
        await until(lambda: receiver.acknowledged == 4)
    assert [event.payload for event in events] == [
        {"sku": "T-1"},
        {"order": "T-1", "parcels": 2},
        b"\x00\x01",
        b"plain text",  # FastStream sends a str as text, not as JSON
    ]
    assert events[0].headers is not None and events[0].headers["origin"] == "faststream"
    assert events[3].headers is not None and events[3].headers["correlation_id"] == "c-1"


# -- the examples of the transports page -----------------------------------------------------


def nats_examples() -> list[str]:
    """The whole programs of the page's NATS JetStream section, in order."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "transports.rst").read_text()
    section = page.split("NATS JetStream\n--------------\n", 1)[1].split("ZeroMQ\n------\n", 1)[0]
    programs = []
    for block in section.split(".. code-block:: python\n\n")[1:]:
        lines = takewhile(
            lambda line: line.startswith("   ") or line == "\n", block.splitlines(keepends=True)
        )
        code = textwrap.dedent("".join(lines))
        if "asyncio.run(main())" in code:
            programs.append(code)
    return programs


@pytest.mark.parametrize("index, prints", [(0, ["billing {'sku': 'tea', 'qty': 2}"]),
                                           (1, ["FastStream ships tea", "the nexus hears orders.shipped "
                                                "{'sku': 'tea', 'parcel': 'P-1'}"])])  # fmt: skip
def test_the_pages_nats_examples_run_as_they_stand(
    nats_url: str, tmp_path: Path, index: int, prints: list[str]
) -> None:
    # A stream of its own: the server may hold the other example's ORDERS already.
    tag = uuid.uuid4().hex[:8]
    code = nats_examples()[index].replace("nats://127.0.0.1:4222", nats_url)
    code = code.replace('"ORDERS', f'"ORDERS{tag}').replace('"orders.', f'"orders{tag}.')
    program = tmp_path / "example.py"
    program.write_text(code)
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    # FastStream logs to standard output too, each line from a time stamp.
    printed = [line.replace(tag, "") for line in done.stdout.splitlines() if not line[:4].isdigit()]
    assert printed == prints
