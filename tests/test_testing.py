"""async_nexus.testing: running(), Recorder and feed(), the helpers for users' tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, NexusState
from async_nexus.consumers import as_callable
from async_nexus.testing import Recorder, feed, running

WAIT = 10.0  # upper bound for waits that succeed; they finish far sooner


# -- running() -----------------------------------------------------------------------------


async def test_running_starts_the_nexus_and_drains_it_on_exit() -> None:
    nexus = AsyncEventNexus()
    recorder = Recorder()
    nexus.add_handler(1, recorder)
    async with running(nexus) as entered:
        assert entered is nexus
        assert nexus.state in (NexusState.STARTING, NexusState.LOOPING)
        for number in range(3):
            nexus.ingest_nowait(Event(number, 1))
        # No wait here: leaving the block is a graceful stop, which dispatches what is queued.
    assert [event.id for event in recorder.events] == [0, 1, 2]
    assert nexus.state is NexusState.STOPPED


async def test_running_interrupts_the_body_with_the_loop_failure() -> None:
    nexus = AsyncEventNexus(fail_fast=True)

    def broken(event: Event, queue: Any) -> None:
        raise ZeroDivisionError(f"cannot handle {event.id}")

    nexus.add_handler(1, broken)
    never = Recorder(name="never")
    nexus.add_handler(2, never)
    with pytest.raises(ZeroDivisionError, match="cannot handle 7"):
        async with running(nexus):
            await nexus.ingest(Event(7, 1))
            # Without the interruption this would wait out its (long) timeout and raise
            # TimeoutError instead of the handler's error.
            await never.wait_for(1, timeout=WAIT * 3)
    assert nexus.state is NexusState.STOPPED
    await asyncio.sleep(0)  # the caller's task is not left cancelled


async def test_running_raises_the_loop_failure_when_the_body_swallowed_the_interruption() -> None:
    nexus = AsyncEventNexus(fail_fast=True)
    nexus.add_handler(1, lambda event, queue: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        async with running(nexus):
            await nexus.ingest(Event(1, 1))
            try:
                await asyncio.sleep(WAIT * 3)
            except asyncio.CancelledError:
                pass  # a body that swallows cancellation still sees the failure on exit
    await asyncio.sleep(0)  # and no cancellation is left pending for the caller
    current = asyncio.current_task()
    assert current is not None and not getattr(current, "cancelling", lambda: 0)()


async def test_running_raises_a_failure_that_came_after_the_body_finished() -> None:
    nexus = AsyncEventNexus(fail_fast=True)
    nexus.add_handler(1, lambda event, queue: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        async with running(nexus):
            nexus.ingest_nowait(Event(1, 1))  # dispatched during the graceful stop on exit


async def test_running_passes_the_body_error_on_and_still_stops_the_nexus() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(KeyError, match="from the body"):
        async with running(nexus):
            raise KeyError("from the body")
    assert nexus.state is NexusState.STOPPED


async def test_running_times_out_on_a_blocked_handler_and_says_so() -> None:
    nexus = AsyncEventNexus()
    entered = asyncio.Event()

    async def blocked(event: Event, queue: Any) -> None:
        entered.set()
        await asyncio.Event().wait()  # never set

    nexus.add_handler(1, blocked)
    stuck = r"did not stop within 0\.2s of stop\(\) \(1 events still queued\)"
    with pytest.raises(TimeoutError, match=stuck):
        async with running(nexus, timeout=0.2):
            nexus.ingest_nowait(Event(1, 1))
            nexus.ingest_nowait(Event(2, 1))
            await asyncio.wait_for(entered.wait(), WAIT)
    assert nexus.state is NexusState.STOPPED  # the loop task was cancelled


# -- Recorder ------------------------------------------------------------------------------


async def test_recorder_waits_for_a_count_and_returns_the_events() -> None:
    recorder = Recorder()
    async with running(AsyncEventNexus()) as nexus:
        nexus.add_handler(5, recorder)
        waiting = asyncio.create_task(recorder.wait_for(3, timeout=WAIT))
        for number in range(4):
            await nexus.ingest(Event(number, 5))
        events = await waiting
    assert [event.id for event in events[:3]] == [0, 1, 2]
    assert len(recorder) == 4 and [event.id for event in recorder.events] == [0, 1, 2, 3]


async def test_recorder_waits_for_a_predicate_and_returns_the_matching_event() -> None:
    recorder = Recorder()
    async with running(AsyncEventNexus()) as nexus:
        nexus.add_handler(-1, recorder)
        await nexus.ingest(Event("early", 1, 0, "yes"))
        await feed(nexus, [Event("a", 2), Event("b", 3, 0, "yes")])
        # Already recorded: returned at once, the first that matches.
        assert (await recorder.wait_for(lambda event: event.payload == "yes")).id == "early"
        waiting = asyncio.create_task(recorder.wait_for(lambda event: event.type == 9, timeout=WAIT))
        await nexus.ingest(Event("late", 9))
        assert (await waiting).id == "late"


async def test_recorder_timeout_says_what_was_awaited_and_what_arrived() -> None:
    recorder = Recorder(name="orders")
    async with running(AsyncEventNexus()) as nexus:
        nexus.add_handler(5, recorder)
        await feed(nexus, [Event(1, 5)])
        with pytest.raises(TimeoutError) as info:
            await recorder.wait_for(3, timeout=0.1)
    assert str(info.value) == "orders: waited 0.1s for 3 events; 1 arrived (Event(id=1, type=5))"


async def test_recorder_timeout_names_the_predicate() -> None:
    recorder = Recorder()

    def is_reply(event: Event) -> bool:
        return event.type == "reply"

    with pytest.raises(TimeoutError) as info:
        await recorder.wait_for(is_reply, timeout=0.05)
    message = str(info.value)
    assert "an event matching " in message and "is_reply" in message and "test_testing.py" in message
    assert message.endswith("none arrived")


async def test_recorder_refuses_a_condition_it_cannot_wait_for() -> None:
    with pytest.raises(TypeError, match="number of events or a predicate"):
        await Recorder().wait_for("three")  # type: ignore[call-overload]


async def test_recorder_wrapping_an_async_handler_is_async_and_records_after_it() -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    echoes = Recorder()

    async def slow(event: Event, queue: Any) -> Event:
        entered.set()
        await gate.wait()
        return Event(f"echo {event.id}", 2)

    recorder = Recorder(slow)
    assert as_callable(recorder)[1] is True  # the nexus awaits it
    assert as_callable(Recorder(lambda event, queue: None))[1] is False
    async with running(AsyncEventNexus()) as nexus:
        nexus.add_handler(1, recorder)
        nexus.add_handler(2, echoes)
        await nexus.ingest(Event(1, 1))
        await asyncio.wait_for(entered.wait(), WAIT)
        assert recorder.events == []  # still inside the wrapped handler
        gate.set()
        await recorder.wait_for(1, timeout=WAIT)
        # What the wrapped handler returned was passed on as a secondary event.
        assert (await echoes.wait_for(1, timeout=WAIT))[0].id == "echo 1"


async def test_recorder_records_even_when_the_wrapped_handler_raises() -> None:
    failures: list[BaseException] = []

    def fails(event: Event, queue: Any) -> None:
        raise ValueError(f"bad {event.id}")

    recorder = Recorder(fails)
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: failures.append(exc))
    nexus.add_handler(1, recorder)
    async with running(nexus):
        await feed(nexus, [Event(1, 1), Event(2, 1)])
    assert [event.id for event in recorder.events] == [1, 2]
    assert [str(exc) for exc in failures] == ["bad 1", "bad 2"]


async def test_recorder_as_a_filter_sees_every_event_and_consumes_none() -> None:
    seen, handled = Recorder(), Recorder()
    nexus = AsyncEventNexus()
    nexus.add_filter(seen)
    nexus.add_handler(-1, handled)
    async with running(nexus):
        await feed(nexus, [Event(1, 1), Event(2, "two")])
    assert [event.id for event in seen.events] == [1, 2]
    assert [event.id for event in handled.events] == [1, 2]


# -- feed() --------------------------------------------------------------------------------


async def test_feed_returns_once_everything_including_secondary_events_is_handled() -> None:
    firsts, seconds = Recorder(), Recorder()

    def first(event: Event, queue: Any) -> Event:
        firsts.handle(event, queue)
        return Event(f"{event.id}'", 2)

    nexus = AsyncEventNexus()
    nexus.add_handler(1, first)
    nexus.add_handler(2, seconds)
    async with running(nexus):
        await feed(nexus, [Event(n, 1) for n in range(50)], timeout=WAIT)
        # No further waiting: feed() returned only after the secondary events too.
        assert len(firsts) == 50
        assert [event.id for event in seconds.events] == [f"{n}'" for n in range(50)]


async def test_feed_needs_a_running_nexus() -> None:
    with pytest.raises(RuntimeError, match="needs a running nexus, but it is READY"):
        await feed(AsyncEventNexus(), [Event(1, 1)])


async def test_feed_timeout_says_the_queue_stayed_full() -> None:
    entered = asyncio.Event()

    async def blocked(event: Event, queue: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    nexus = AsyncEventNexus(maxsize=2)
    nexus.add_handler(1, blocked)
    task = nexus.start()
    try:
        with pytest.raises(TimeoutError, match=r"only 3 of 5 events were ingested: the queue stayed full"):
            await feed(nexus, [Event(n, 1) for n in range(5)], timeout=0.2)
        assert entered.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_feed_timeout_says_how_much_is_still_queued() -> None:
    async def blocked(event: Event, queue: Any) -> None:
        await asyncio.Event().wait()

    nexus = AsyncEventNexus()
    nexus.add_handler(1, blocked)
    task = nexus.start()
    try:
        with pytest.raises(TimeoutError, match=r"all 3 events were ingested but 2 are still queued"):
            await feed(nexus, [Event(n, 1) for n in range(3)], timeout=0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_feed_raises_the_failure_of_a_fail_fast_loop() -> None:
    nexus = AsyncEventNexus(fail_fast=True)
    nexus.add_handler(1, lambda event, queue: 1 / 0)
    task = nexus.start()
    # The first event kills the loop; the ones after it are refused. feed() reports the
    # cause, not the refusal.
    with pytest.raises(ZeroDivisionError):
        await feed(nexus, [Event(n, 1) for n in range(3)])
    with pytest.raises(ZeroDivisionError):
        await task


async def test_feed_into_a_stopped_nexus_is_refused() -> None:
    nexus = AsyncEventNexus()
    async with running(nexus):
        pass
    with pytest.raises(RuntimeError, match="STOPPED"):
        await feed(nexus, [Event(1, 1)])
