"""request() from inside handlers: it never waits for itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, EventProducer, errors
from async_nexus.events import CORRELATION_ID, IN_REPLY_TO
from async_nexus.testing import Recorder


async def test_a_concurrent_handler_gets_its_answer_in_the_same_nexus() -> None:
    nexus = AsyncEventNexus()
    answers = Recorder()
    nexus.add_handler("price?", lambda e, q: Event(0, "price", 0, len(e.payload)))

    async def order(event: Event, queue: Any) -> Event:
        answer = await nexus.request(Event(event.id, "price?", 0, event.payload), timeout=5)
        return Event(event.id, "priced", 0, answer.payload)

    nexus.add_handler("order", order, concurrency=4)
    nexus.add_handler("priced", answers)
    async with nexus:
        for i, item in enumerate(["tea", "scone", "jam"]):
            await nexus.ingest(Event(i, "order", 0, item))
        await answers.wait_for(3)
    assert sorted((e.id, e.payload) for e in answers.events) == [(0, 3), (1, 5), (2, 3)]


async def test_requests_from_a_full_registration_are_still_answered() -> None:
    # N handlers in flight each await a request, while more events of the same
    # registration are queued ahead of those requests. Waiting only for room would
    # deadlock: the requests must not queue behind the events that wait for their callers.
    limit = 3
    nexus = AsyncEventNexus()
    done = Recorder()
    in_flight = 0
    peak = 0

    async def asks(event: Event, queue: Any) -> Event:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            answer = await nexus.request(Event(event.id, "echo?", 0, event.id), timeout=5)
        finally:
            in_flight -= 1
        return Event(event.id, "done", 0, answer.payload)

    async def echo(event: Event, queue: Any) -> Event:
        return Event(0, "echo", 0, event.payload)

    nexus.add_handler("asks", asks, concurrency=limit)
    nexus.add_handler("echo?", echo, concurrency=limit)
    nexus.add_handler("done", done)
    async with nexus:
        for i in range(limit * 4):
            nexus.ingest_nowait(Event(i, "asks"))
        await done.wait_for(limit * 4, timeout=5)
    assert sorted(e.payload for e in done.events) == list(range(limit * 4))
    assert peak == limit


async def test_requests_to_the_same_full_registration_are_answered() -> None:
    nexus = AsyncEventNexus()
    done = Recorder()

    async def handler(event: Event, queue: Any) -> Event | None:
        if event.payload == "question":
            return Event(0, "answer", 0, event.id)
        answer = await nexus.request(Event(event.id, "work", 0, "question"), timeout=5)
        return Event(event.id, "done", 0, answer.payload)

    nexus.add_handler("work", handler, concurrency=2)
    nexus.add_handler("done", done)
    async with nexus:
        for i in range(6):
            nexus.ingest_nowait(Event(i, "work", 0, "task"))
        await done.wait_for(6, timeout=5)
    assert sorted(e.payload for e in done.events) == list(range(6))


async def test_a_concurrent_handler_gets_its_answer_across_a_boundary() -> None:
    front, back = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    front.add_handler("stock?", boundary)
    back.add_producer(boundary)
    back.add_handler("stock?", lambda e, q: Event(0, "stock", 0, {"item": e.payload, "count": 7}))
    done = Recorder()

    async def check(event: Event, queue: Any) -> Event:
        answer = await front.request(Event(event.id, "stock?", 0, event.payload), timeout=5)
        return Event(event.id, "checked", 0, answer.payload["count"])

    front.add_handler("check", check, concurrency=2)
    front.add_handler("checked", done)
    async with back, front:
        for i in range(5):
            await front.ingest(Event(i, "check", 0, f"item-{i}"))
        await done.wait_for(5)
    assert [e.payload for e in done.events] == [7] * 5


async def test_an_answer_from_a_transport_reaches_a_full_registration() -> None:
    # Answers that arrive through a source go to their request at once: they do not
    # queue behind events waiting for room that the askers hold.
    nexus = AsyncEventNexus()
    feeder = EventProducer()
    nexus.add_producer(feeder)
    outbox: asyncio.Queue[Event] = asyncio.Queue()
    nexus.add_handler("remote?", lambda e, q: outbox.put_nowait(e))
    done = Recorder()

    async def asks(event: Event, queue: Any) -> None:
        answer = await nexus.request(Event(event.id, "remote?"), timeout=5)
        done(answer, queue)

    nexus.add_handler("asks", asks, concurrency=2)
    acked: list[Event] = []
    async with nexus:
        for i in range(4):
            nexus.ingest_nowait(Event(i, "asks"))
        for _ in range(4):
            request = await asyncio.wait_for(outbox.get(), 5)
            correlation = (request.headers or {})[CORRELATION_ID]
            answer = Event(request.id, "remote!", 0, request.id, {IN_REPLY_TO: correlation})
            await feeder.distribute_event(answer, on_dispatched=acked.append)
        await done.wait_for(4)
    assert sorted(e.payload for e in done.events) == [0, 1, 2, 3]
    assert len(acked) == 4


async def test_request_from_a_sequential_handler_is_a_bad_call_at_once() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("price?", lambda e, q: Event(0, "price"))

    async def order(event: Event, queue: Any) -> None:
        await nexus.request(Event(1, "price?"), timeout=30)

    nexus.add_handler("order", order)
    async with nexus:
        await nexus.ingest(Event(1, "order"))
        await asyncio.wait_for(hook.called.wait(), 5)
    exc = hook.calls[0][0]
    assert isinstance(exc, errors.BadCall)
    assert "would wait for itself" in str(exc)
    assert "concurrency=N" in str(exc)


async def test_request_from_a_filter_is_a_bad_call_too() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)

    async def filter(event: Event, queue: Any) -> bool:
        await nexus.request(Event(1, "price?"), timeout=30)
        return False

    nexus.add_filter(filter)
    nexus.add_handler(-1, lambda e, q: None)
    async with nexus:
        await nexus.ingest(Event(1, "order"))
        await asyncio.wait_for(hook.called.wait(), 5)
    assert isinstance(hook.calls[0][0], errors.BadCall)


async def test_request_timeout_names_the_real_causes() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler("nobody?", lambda e, q: None)
    async with nexus:
        with pytest.raises(errors.RequestTimeout) as caught:
            await nexus.request(Event(1, "nobody?"), timeout=0.01)
    message = str(caught.value)
    assert "returned an Event or called nexus.reply" in message
    assert "waits, directly or not, for the one that asked" in message
    assert "key=" in message


async def test_a_handler_in_flight_at_a_graceful_stop_still_gets_its_answer() -> None:
    nexus = AsyncEventNexus()
    release = asyncio.Event()
    done = Recorder()

    async def asks(event: Event, queue: Any) -> Event:
        await release.wait()
        answer = await nexus.request(Event(event.id, "echo?", 0, event.id), timeout=5)
        return Event(event.id, "done", 0, answer.payload)

    nexus.add_handler("asks", asks, concurrency=2)
    nexus.add_handler("echo?", lambda e, q: Event(0, "echo", 0, e.payload))
    nexus.add_handler("done", done)
    task = nexus.start()
    await nexus.ingest(Event(7, "asks"))
    await asyncio.sleep(0)
    nexus.stop()
    with pytest.raises(errors.LoopStopped):
        await nexus.request(Event(8, "echo?"))  # from outside: refused
    release.set()
    await asyncio.wait_for(task, 5)
    assert [e.payload for e in done.events] == [7]
