"""The nexus's one way in, its one lifecycle, and the failures it no longer drops in silence."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, EventProducer, NexusState, SimpleEventConverter, errors

WAIT = 5


async def until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Wait until ``condition()`` is true, yielding while it is not; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.005)


class Feeder(EventProducer):
    """A producer the test drives by hand."""


class Tracer:
    """A tracer that only marks what it was asked to inject into."""

    def start(self, event: Event) -> None:
        return None

    def filtered(self, span: Any) -> None:
        pass

    def failed(self, span: Any, exc: BaseException) -> None:
        pass

    def release(self, span: Any) -> None:
        pass

    def end(self, span: Any) -> None:
        pass

    def inject(self, event: Event) -> None:
        event.headers = {**(event.headers or {}), "traced": "yes"}


# -- one way in --------------------------------------------------------------------------


async def test_every_way_in_gets_the_trace_context() -> None:
    nexus = AsyncEventNexus()
    nexus.trace_with(Tracer())
    seen: dict[Any, Any] = {}
    done = asyncio.Event()

    def record(event: Event, queue: Any) -> Event | None:
        seen[event.id] = (event.headers or {}).get("traced")
        if event.id == "parent":
            return Event("child", 1)  # a secondary event
        if len(seen) == 5:
            done.set()
        return None

    nexus.add_handler(1, record)
    feeder = Feeder()
    nexus.add_producer(feeder)
    task = nexus.start()
    await nexus.ingest(Event("ingest", 1))
    nexus.ingest_later(0, Event("later", 1))
    await feeder.distribute_event(Event("source", 1))
    await nexus.ingest(Event("parent", 1))
    await asyncio.wait_for(done.wait(), WAIT)
    nexus.stop()
    await asyncio.wait_for(task, WAIT)
    assert seen == {"ingest": "yes", "later": "yes", "source": "yes", "parent": "yes", "child": "yes"}


async def test_every_way_in_refuses_what_is_not_an_event() -> None:
    nexus = AsyncEventNexus()
    feeder = Feeder()
    nexus.add_producer(feeder)
    refused: list[BaseException] = []
    nexus.on_error(lambda exc, subject: refused.append(exc))

    def emits_garbage(event: Event, queue: Any) -> None:
        queue.put_nowait("not an event")

    nexus.add_handler(1, emits_garbage)
    task = nexus.start()
    with pytest.raises(errors.NotAnEvent, match="ingest"):
        await nexus.ingest("nope")  # type: ignore[arg-type]
    with pytest.raises(errors.NotAnEvent, match="ingest_nowait"):
        nexus.ingest_nowait(42)  # type: ignore[arg-type]
    with pytest.raises(errors.NotAnEvent, match="ingest_later"):
        nexus.ingest_later(1, None)  # type: ignore[arg-type]
    with pytest.raises(errors.NotAnEvent, match="source"):
        await feeder.distribute_event({"id": 1})  # type: ignore[arg-type]
    with pytest.raises(errors.NotAnEvent, match="boundary"):
        feeder.hand_over(3.5)  # type: ignore[arg-type]
    await nexus.ingest(Event(1, 1))
    await until(lambda: refused, "the handler's garbage to be reported")
    assert isinstance(refused[0], errors.NotAnEvent) and "secondary" in str(refused[0])
    nexus.stop()
    await asyncio.wait_for(task, WAIT)


async def test_every_way_in_is_refused_after_stop_saying_why() -> None:
    nexus = AsyncEventNexus()
    feeder = Feeder()
    nexus.add_producer(feeder)
    task = nexus.start()
    await asyncio.sleep(0)
    nexus.stop()
    await asyncio.wait_for(task, WAIT)
    for attempt in (
        lambda: nexus.ingest_nowait(Event(1, 1)),
        lambda: nexus.ingest_later(1, Event(2, 1)),
    ):
        with pytest.raises(errors.LoopStopped, match="STOPPED"):
            attempt()
    with pytest.raises(errors.LoopStopped, match="create a new AsyncEventNexus|Create a new"):
        await nexus.ingest(Event(3, 1))
    with pytest.raises(errors.MisconfiguredEventProducer):  # the stopped nexus let it go
        await feeder.distribute_event(Event(4, 1))


# -- one lifecycle -----------------------------------------------------------------------


async def test_dispatch_goes_on_while_the_sources_are_being_stopped() -> None:
    """Draining is a state of the one run: the loop dispatches while sources wind down."""
    nexus = AsyncEventNexus()
    handled: list[int] = []
    nexus.add_handler(1, lambda event, queue: handled.append(event.id))

    class SlowToStop(EventProducer):
        async def start(self) -> None:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                # It finishes its work before it goes, and that work needs the loop to
                # dispatch: a loop that paused while the sources stop would never let it.
                await until(lambda: len(handled) == 50, "the queued events to be dispatched")
                raise

    nexus.add_producer(SlowToStop())
    task = nexus.start()
    await asyncio.sleep(0)
    for number in range(50):
        nexus.ingest_nowait(Event(number, 1))
    nexus.stop()
    await asyncio.wait_for(task, WAIT)
    assert handled == list(range(50))


async def test_stop_before_start_dispatches_what_was_queued_once_started() -> None:
    nexus = AsyncEventNexus()
    handled: list[int] = []
    nexus.add_handler(1, lambda event, queue: handled.append(event.id))
    for number in range(3):
        nexus.ingest_nowait(Event(number, 1))
    nexus.stop()
    assert nexus.state is NexusState.READY
    with pytest.raises(errors.LoopStopped):
        nexus.ingest_nowait(Event(9, 1))
    task = nexus.start()
    assert nexus.state is NexusState.STOPPING
    await asyncio.wait_for(task, WAIT)
    assert handled == [0, 1, 2]
    assert nexus.state is NexusState.STOPPED


async def test_fail_fast_halts_at_once_and_refuses_what_comes_after() -> None:
    nexus = AsyncEventNexus(fail_fast=True)
    handled: list[int] = []

    def handler(event: Event, queue: Any) -> None:
        handled.append(event.id)
        if event.id == 1:
            raise RuntimeError("first failure")

    nexus.add_handler(1, handler)
    for number in range(5):
        nexus.ingest_nowait(Event(number, 1))
    with pytest.raises(RuntimeError, match="first failure"):
        await asyncio.wait_for(nexus.loop_forever(), WAIT)
    assert handled == [0, 1]  # nothing after the failure was dispatched
    with pytest.raises(errors.LoopStopped, match="fail_fast stopped it at the first failure, RuntimeError"):
        nexus.ingest_nowait(Event(6, 1))


# -- no error dropped --------------------------------------------------------------------


def test_run_off_the_main_thread_says_that_signals_cannot_stop_it(caplog: pytest.LogCaptureFixture) -> None:
    nexus = AsyncEventNexus()

    class StopSoon(EventProducer):
        async def start(self) -> None:
            nexus.stop()

    nexus.add_producer(StopSoon())
    failures: list[BaseException] = []

    def run() -> None:
        try:
            nexus.run()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(WAIT)
    assert not thread.is_alive() and not failures
    assert nexus.state is NexusState.STOPPED
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot stop the nexus on SIGINT/SIGTERM" in w and "Call stop()" in w for w in warnings), (
        warnings
    )


class Closing(SimpleEventConverter):
    def __init__(self, closed: list[str], name: str, fail: bool = False, is_async: bool = False) -> None:
        self.closed, self.label, self.fail, self.is_async = closed, name, fail, is_async
        self.name = name

    async def obtain_event(self) -> Event:
        raise errors.NoMoreEvents()

    def close(self) -> Any:
        if self.is_async:
            return self._close_async()
        self.closed.append(self.label)
        if self.fail:
            raise OSError(f"{self.label} would not close")
        return None

    async def _close_async(self) -> None:
        await asyncio.sleep(0)
        self.closed.append(self.label)
        if self.fail:
            raise OSError(f"{self.label} would not close")


def test_cleanup_closes_every_source_when_one_fails_to(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []
    nexus = AsyncEventNexus()
    nexus.add_converter(Closing(closed, "first", fail=True))
    nexus.add_converter(Closing(closed, "second"))
    with caplog.at_level(logging.ERROR, logger="async_nexus"):
        nexus.cleanup()
    assert closed == ["first", "second"]
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 1 and "closing source first failed" in errors_logged[0].getMessage()
    assert "first would not close" in str(errors_logged[0].exc_info[1])  # type: ignore[index]


async def test_cleanup_in_a_running_loop_keeps_and_reports_an_async_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []
    nexus = AsyncEventNexus()
    nexus.add_converter(Closing(closed, "async", fail=True, is_async=True))
    with caplog.at_level(logging.ERROR, logger="async_nexus"):
        nexus.cleanup()  # the close runs in this loop, in a task the nexus keeps
        await until(
            lambda: any("closing source async failed" in r.getMessage() for r in caplog.records), "the report"
        )
    assert closed == ["async"]


async def test_async_with_raises_the_loops_failure_chained_to_the_bodys() -> None:
    nexus = AsyncEventNexus(fail_fast=True)

    def handler(event: Event, queue: Any) -> None:
        raise RuntimeError("the handler failed")

    nexus.add_handler(1, handler)
    with pytest.raises(RuntimeError, match="the handler failed") as info:
        async with nexus:
            await nexus.ingest(Event(1, 1))
            await nexus.join()
            raise KeyError("the body failed too")
    context = info.value.__context__
    assert isinstance(context, KeyError) and "the body failed too" in str(context)


async def test_async_with_keeps_the_bodys_failure_when_the_loop_did_not_fail() -> None:
    with pytest.raises(KeyError, match="body"):
        async with AsyncEventNexus():
            raise KeyError("body")


async def test_request_from_a_loop_handler_names_the_real_cause_while_stopping() -> None:
    """In the usual ``async with`` pattern the handler runs during the drain, after stop()."""
    reported: list[BaseException] = []
    async with AsyncEventNexus() as nexus:
        nexus.on_error(lambda exc, subject: reported.append(exc))

        async def asks(event: Event, queue: Any) -> None:
            await nexus.request(Event(2, "question"))

        nexus.add_handler(1, asks)
        nexus.add_handler("question", lambda event, queue: Event(3, "answer"))
        await nexus.ingest(Event(1, 1))
    assert len(reported) == 1
    assert isinstance(reported[0], errors.BadCall)
    assert not isinstance(reported[0], errors.LoopStopped)
    assert "would wait for itself" in str(reported[0])
