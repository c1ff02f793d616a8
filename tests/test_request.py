"""Request/reply, and the hooks transports build on: on_dispatched, reply routes, report()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Collector, Hook

from async_nexus import AsyncEventBoundary, AsyncEventNexus, Event, EventProducer, NamedEvent, errors
from async_nexus.events import CORRELATION_ID, IN_REPLY_TO
from async_nexus.testing import Recorder


class Query(NamedEvent):
    pass


async def test_request_answered_in_the_same_nexus() -> None:
    async with AsyncEventNexus() as nexus:
        nexus.add_handler("sum?", lambda e, q: Event(0, "sum", 0, sum(e.payload)))
        original = Event(1, "sum?", 0, [1, 2, 3], {"origin": "test"})
        answer = await nexus.request(original, timeout=5)
    assert answer.payload == 6
    assert answer.headers is not None and IN_REPLY_TO in answer.headers
    assert original.headers == {"origin": "test"}  # the caller's event is not changed


async def test_request_across_a_boundary_and_back() -> None:
    front, back = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    front.add_handler(Query, boundary)
    back.add_producer(boundary)
    seen: list[Event] = []

    async def answer(event: Event, queue: Any) -> Event:
        seen.append(event)
        await asyncio.sleep(0)
        return Event(0, "answer", 0, event.payload.upper(), {"by": "back"})

    back.add_handler(Query, answer)
    async with back, front:
        replies = await asyncio.gather(*(front.request(Query(i, f"q{i}"), timeout=5) for i in range(20)))
    assert [r.payload for r in replies] == [f"Q{i}" for i in range(20)]
    assert all(r.headers and r.headers["by"] == "back" for r in replies)
    # the answer carries the request's correlation id, and each request had its own
    ids = {e.headers[CORRELATION_ID] for e in seen if e.headers}
    assert len(ids) == 20
    assert {r.headers[IN_REPLY_TO] for r in replies if r.headers} == ids


async def test_reply_helper_answers_while_handling() -> None:
    async with AsyncEventNexus() as nexus:

        async def handler(event: Event, queue: Any) -> None:
            nexus.reply(event, Event(0, "pong", 0, event.payload))

        nexus.add_handler("ping", handler)
        answer = await nexus.request(Event(1, "ping", 0, 42), timeout=5)
    assert (answer.type, answer.payload) == ("pong", 42)


async def test_reply_outside_a_request_is_a_bad_call() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)

    def handler(event: Event, queue: Any) -> None:
        nexus.reply(event, Event(0, "pong"))

    nexus.add_handler("ping", handler)
    async with nexus:
        await nexus.ingest(Event(1, "ping"))
        await asyncio.wait_for(hook.called.wait(), 5)
    assert isinstance(hook.calls[0][0], errors.BadCall)
    assert "not a request" in str(hook.calls[0][0])


async def test_request_timeout_leaves_no_waiter_and_late_answer_is_dispatched() -> None:
    front, back = AsyncEventNexus(), AsyncEventNexus()
    boundary = AsyncEventBoundary()
    front.add_handler("slow?", boundary)
    back.add_producer(boundary)
    release = asyncio.Event()

    async def slow(event: Event, queue: Any) -> Event:
        await release.wait()
        return Event(0, "late", 0, "too late")

    back.add_handler("slow?", slow)
    late = Collector()
    front.add_handler("late", late)
    async with back, front:
        with pytest.raises(errors.RequestTimeout, match="no answer to request 1 of type 'slow\\?'"):
            await front.request(Event(1, "slow?"), timeout=0.05)
        assert front._requests.waiters == {}
        release.set()
        await late.wait(1)
    assert late.events[0].payload == "too late"


async def test_unhandled_request_fails_at_once() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    async with nexus:
        with pytest.raises(errors.UnhandledEvent):
            await nexus.request(Event(1, "nobody"), timeout=30)
    assert isinstance(hook.calls[0][0], errors.UnhandledEvent)


async def test_failing_handler_of_request_raises_in_requester() -> None:
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: None)

    def broken(event: Event, queue: Any) -> Event:
        raise KeyError("no such account")

    nexus.add_handler("balance?", broken)
    async with nexus:
        with pytest.raises(KeyError, match="no such account"):
            await nexus.request(Event(1, "balance?"), timeout=30)


async def test_request_after_stop_refused() -> None:
    nexus = AsyncEventNexus()
    task = nexus.start()
    nexus.stop()
    with pytest.raises(errors.LoopStopped):
        await nexus.request(Event(1, "x"), timeout=1)
    await asyncio.wait_for(task, 5)


async def test_request_answer_with_a_list_and_bad_answer() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    extra = Collector()
    nexus.add_handler("extra", extra)
    nexus.add_handler("two?", lambda e, q: [Event(0, "first"), Event(0, "extra")])
    nexus.add_handler("bad?", lambda e, q: ["not an event"])
    async with nexus:
        first = await nexus.request(Event(1, "two?"), timeout=5)
        # the second answer finds nobody waiting: it is dispatched as an ordinary event
        await extra.wait(1)
        with pytest.raises(errors.NotAnEvent, match="can only answer with an Event"):
            await nexus.request(Event(2, "bad?"), timeout=5)
    assert first.type == "first"


class Feeder(EventProducer):
    """A producer that the test drives by hand."""


async def test_on_dispatched_after_every_handler_and_once_per_event() -> None:
    order: list[str] = []
    nexus = AsyncEventNexus()

    async def handler(event: Event, queue: Any) -> None:
        await asyncio.sleep(0)
        order.append(f"handled {event.id}")

    nexus.add_handler(1, handler)
    nexus.add_filter(lambda e, q: e.type == 2)  # filtered events count as dispatched
    feeder = Feeder()
    nexus.add_producer(feeder)

    def record(event: Event) -> None:
        order.append(f"done {event.id}")

    async with nexus:
        for i, kind in enumerate((1, 2, 1)):
            await feeder.distribute_event(Event(i, kind), on_dispatched=record)
        await asyncio.wait_for(nexus.join(), 5)
    assert order == ["handled 0", "done 0", "done 1", "handled 2", "done 2"]


async def test_on_dispatched_waits_for_every_nexus() -> None:
    first, second = AsyncEventNexus(), AsyncEventNexus()
    gate = asyncio.Event()

    async def slow(event: Event, queue: Any) -> None:
        await gate.wait()

    first.add_handler(1, lambda e, q: None)
    second.add_handler(1, slow)
    feeder = Feeder()
    first.add_producer(feeder)
    second.add_producer(feeder)
    done = asyncio.Event()
    async with first, second:
        assert await feeder.distribute_event(Event(1, 1), on_dispatched=lambda e: done.set()) == 2
        await asyncio.wait_for(first.join(), 5)
        assert not done.is_set()
        gate.set()
        await asyncio.wait_for(done.wait(), 5)


async def test_on_dispatched_not_called_for_undispatched_events() -> None:
    nexus = AsyncEventNexus(drain_timeout=0.01)

    async def stuck(event: Event, queue: Any) -> None:
        # Hold the loop on event 0 until the drain timeout has cut the rest off.
        while event.id == 0 and not nexus._life.halted:
            await asyncio.sleep(0.005)

    nexus.add_handler(1, stuck)
    feeder = Feeder()
    nexus.add_producer(feeder)
    acked: list[Any] = []
    task = nexus.start()
    for i in range(3):
        await feeder.distribute_event(Event(i, 1), on_dispatched=lambda e: acked.append(e.id))
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert acked == [0]  # 1 and 2 were cut off by the drain timeout: never acknowledged


async def test_failing_on_dispatched_reaches_the_hook() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler(1, lambda e, q: None)
    feeder = Feeder()
    nexus.add_producer(feeder)

    def broken(event: Event) -> None:
        raise RuntimeError("ack failed")

    async with nexus:
        await feeder.distribute_event(Event(1, 1), on_dispatched=broken)
        await asyncio.wait_for(hook.called.wait(), 5)
    assert str(hook.calls[0][0]) == "ack failed"


async def test_reply_route_given_by_a_producer() -> None:
    answers: list[Event] = []
    nexus = AsyncEventNexus()
    nexus.add_handler("q", lambda e, q: Event(0, "a", 0, e.payload * 2))
    feeder = Feeder()
    nexus.add_producer(feeder)
    async with nexus:
        request = Event(1, "q", 0, 21, {CORRELATION_ID: "c-1"})
        await feeder.distribute_event(request, reply=answers.append)
        await asyncio.wait_for(nexus.join(), 5)
    assert [(a.payload, a.headers) for a in answers] == [(42, {IN_REPLY_TO: "c-1"})]


async def test_answer_arriving_from_a_transport_resolves_the_request() -> None:
    # A transport delivers answers as ordinary events with in-reply-to; the nexus matches them.
    nexus = AsyncEventNexus()
    feeder = Feeder()
    nexus.add_producer(feeder)
    sent = Recorder(name="remote? handler")
    nexus.add_handler("remote?", sent)
    async with nexus:
        pending = asyncio.ensure_future(nexus.request(Event(1, "remote?"), timeout=5))
        (request,) = await sent.wait_for(1)
        correlation = request.headers[CORRELATION_ID] if request.headers else ""
        await feeder.distribute_event(Event(2, "remote!", 0, "ok", {IN_REPLY_TO: correlation}))
        answer = await pending
    assert answer.payload == "ok"


async def test_producer_report_reaches_every_hook() -> None:
    hooks = [Hook(), Hook()]
    nexuses = [AsyncEventNexus(), AsyncEventNexus()]
    feeder = Feeder()
    for nexus, hook in zip(nexuses, hooks, strict=True):
        nexus.on_error(hook)
        nexus.add_producer(feeder)
    problem = errors.DecodeError("garbage entry", raw=b"\xff")
    await feeder.report(problem)
    assert [h.calls for h in hooks] == [[(problem, feeder)], [(problem, feeder)]]


async def test_converter_with_bad_input_is_reported_and_keeps_going() -> None:
    from async_nexus import SimpleEventConverter

    class Lines(SimpleEventConverter):
        def __init__(self) -> None:
            self.lines = iter(["1", "garbage", "3"])

        async def obtain_event(self) -> Event:
            line = next(self.lines, None)
            if line is None:
                raise errors.NoMoreEvents()
            if not line.isdigit():
                raise errors.DecodeError(f"not a number: {line!r}", raw=line)
            return Event(int(line), "n")

    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    collector = Collector()
    nexus.add_handler("n", collector)
    converter = Lines()
    nexus.add_converter(converter)
    async with nexus:
        await collector.wait(2)
    assert [e.id for e in collector.events] == [1, 3]
    assert [(type(exc), subject) for exc, subject in hook.calls] == [(errors.DecodeError, converter)]


async def test_an_answer_delivered_by_a_transport_is_acknowledged_too() -> None:
    nexus = AsyncEventNexus()
    feeder = Feeder()
    nexus.add_producer(feeder)
    sent = Recorder(name="remote? handler")
    nexus.add_handler("remote?", sent)
    acked: list[Event] = []
    async with nexus:
        pending = asyncio.ensure_future(nexus.request(Event(1, "remote?"), timeout=5))
        (request,) = await sent.wait_for(1)
        correlation = request.headers[CORRELATION_ID] if request.headers else ""
        answer = Event(2, "remote!", 0, "ok", {IN_REPLY_TO: correlation})
        await feeder.distribute_event(answer, on_dispatched=acked.append)
        assert (await pending).payload == "ok"
        await asyncio.wait_for(nexus.join(), 5)
    assert acked == [answer]
