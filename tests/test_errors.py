"""Errors: misconfigured handlers, the error hook, unhandled events, runaway chains, fail_fast."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import run_events

from async_nexus import AsyncEventNexus, Event, EventConsumer, errors


class MyConsumer(EventConsumer):
    def handle(self, event: Any, queue: Any) -> None:
        return None


def test_consumer_class_not_instance_is_misconfigured() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer) as info:
        nexus.add_handler(1, MyConsumer)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, errors.BadCall)
    assert "instance" in str(info.value)


@pytest.mark.parametrize("thing", [42, "not callable", None])
def test_non_callable_handler_is_type_error_naming_it(thing: Any) -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(TypeError) as info:
        nexus.add_handler(1, thing)
    assert repr(thing) in str(info.value)


def test_non_callable_filter_is_type_error_naming_it() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(TypeError) as info:
        nexus.add_filter(12345)
    assert "12345" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [lambda: None, lambda e: None, lambda e, q, extra: None],
    ids=["zero", "one", "three"],
)
def test_wrong_arity_rejected_at_registration(bad: Any) -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer):
        nexus.add_handler(1, bad)
    with pytest.raises(TypeError):
        nexus.add_filter(bad)


def test_optional_extra_params_accepted() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(1, lambda e, q, extra=None: None)
    nexus.add_handler(2, lambda *args: None)


def test_error_hierarchy() -> None:
    for cls in (
        errors.LoopAlreadyStarted,
        errors.LoopStopped,
        errors.InvalidLoopState,
        errors.MisconfiguredEventProducer,
        errors.MisconfiguredEventConsumer,
        errors.NotAnEvent,
    ):
        assert issubclass(cls, errors.BadCall), cls
    assert issubclass(errors.QueueFull, asyncio.QueueFull)
    assert issubclass(errors.NotAnEvent, TypeError)


async def test_unhandled_event_reaches_hook_positionally() -> None:
    nexus = AsyncEventNexus()
    calls: list[tuple[BaseException, Any]] = []

    def hook(exc: BaseException, subject: Any, /) -> None:
        calls.append((exc, subject))

    nexus.on_error(hook)
    event = Event(1, 77)
    await run_events(nexus, event)
    assert len(calls) == 1
    exc, subject = calls[0]
    assert isinstance(exc, errors.UnhandledEvent)
    assert exc.event is event
    assert subject is event


async def test_async_error_hook_is_awaited() -> None:
    nexus = AsyncEventNexus()
    calls: list[Any] = []

    async def hook(exc: BaseException, subject: Any, /) -> None:
        await asyncio.sleep(0)
        calls.append((type(exc), subject.id))

    nexus.on_error(hook)

    def failing(e: Event, q: Any) -> None:
        raise ValueError("bad payload")

    nexus.add_handler(3, failing)
    await run_events(nexus, Event(1, 3), Event(2, 99))
    assert calls == [(ValueError, 1), (errors.UnhandledEvent, 2)]


async def test_handler_failure_does_not_stop_loop() -> None:
    nexus = AsyncEventNexus()
    errs: list[BaseException] = []
    got: list[int] = []
    nexus.on_error(lambda exc, s: errs.append(exc))

    def handler(e: Event, q: Any) -> None:
        if e.id == 1:
            raise RuntimeError("first")
        got.append(e.id)  # type: ignore[arg-type]

    nexus.add_handler(1, handler)
    await run_events(nexus, Event(1, 1), Event(2, 1))
    assert got == [2]
    assert [str(e) for e in errs] == ["first"]


async def test_failing_filter_reported_and_event_goes_on() -> None:
    nexus = AsyncEventNexus()
    errs: list[Any] = []
    got: list[int] = []
    nexus.on_error(lambda exc, s: errs.append((exc, s)))

    def flt(e: Event, q: Any) -> bool:
        raise KeyError("f")

    nexus.add_filter(flt)
    nexus.add_handler(1, lambda e, q: got.append(e.id))
    await run_events(nexus, Event(5, 1))
    assert got == [5]
    assert len(errs) == 1 and isinstance(errs[0][0], KeyError) and errs[0][1].id == 5


async def test_runaway_chain_reported_and_loop_keeps_running() -> None:
    nexus = AsyncEventNexus(max_chain=50)
    errs: list[BaseException] = []
    nexus.on_error(lambda exc, s: errs.append(exc))
    counter = {"n": 0}
    other: list[int] = []

    def forever(e: Event, q: Any) -> Event:
        counter["n"] += 1
        return Event(e.id, 1)  # type: ignore[arg-type]

    nexus.add_handler(1, forever)
    nexus.add_handler(2, lambda e, q: other.append(e.id))
    task = nexus.start()
    await nexus.ingest(Event(1, 1))
    await asyncio.wait_for(nexus.join(), 5)
    await nexus.ingest(Event(2, 2))
    await asyncio.wait_for(nexus.join(), 5)
    assert nexus.state is AsyncEventNexus.LOOPING
    nexus.stop()
    await asyncio.wait_for(task, 5)
    assert any(isinstance(e, errors.RunawayChain) for e in errs)
    assert 1 < counter["n"] <= 52
    assert other == [2]


async def test_runaway_chain_default_limit() -> None:
    nexus = AsyncEventNexus()
    errs: list[BaseException] = []
    nexus.on_error(lambda exc, s: errs.append(exc))
    nexus.add_handler(1, lambda e, q: Event(e.id, 1))
    await asyncio.wait_for(run_events(nexus, Event(1, 1)), 10)
    assert len(errs) == 1 and isinstance(errs[0], errors.RunawayChain)


async def test_fail_fast_makes_loop_forever_raise() -> None:
    nexus = AsyncEventNexus(fail_fast=True)

    def handler(e: Event, q: Any) -> None:
        raise ZeroDivisionError("fail fast")

    nexus.add_handler(1, handler)
    await nexus.ingest(Event(1, 1))
    with pytest.raises(ZeroDivisionError, match="fail fast"):
        await asyncio.wait_for(nexus.loop_forever(), 5)
    assert nexus.state is AsyncEventNexus.STOPPED


async def test_fail_fast_task_from_start_raises() -> None:
    nexus = AsyncEventNexus(fail_fast=True)
    task = nexus.start()
    await nexus.ingest(Event(1, 404))
    with pytest.raises(errors.UnhandledEvent):
        await asyncio.wait_for(task, 5)


async def test_not_an_event_refused() -> None:
    nexus = AsyncEventNexus()
    for bad in ("x", 1, {"id": 1}):
        with pytest.raises(errors.NotAnEvent) as info:
            await nexus.ingest(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError) and isinstance(info.value, errors.BadCall)
        with pytest.raises(errors.NotAnEvent):
            nexus.ingest_nowait(bad)  # type: ignore[arg-type]


async def test_handler_putting_non_event_is_reported() -> None:
    nexus = AsyncEventNexus()
    errs: list[BaseException] = []
    nexus.on_error(lambda exc, s: errs.append(exc))
    nexus.add_handler(1, lambda e, q: q.put_nowait("nope"))
    await run_events(nexus, Event(1, 1))
    assert len(errs) == 1 and isinstance(errs[0], errors.NotAnEvent)


async def test_raising_error_hook_does_not_kill_loop() -> None:
    nexus = AsyncEventNexus()
    got: list[int] = []

    def hook(exc: BaseException, s: Any) -> None:
        raise RuntimeError("hook broke")

    nexus.on_error(hook)
    nexus.add_handler(2, lambda e, q: got.append(e.id))
    await run_events(nexus, Event(1, 404), Event(2, 2))
    assert got == [2]


def test_bad_event_type_spec_is_bad_call() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall):
        nexus.add_handler((5, 1), lambda e, q: None)
    with pytest.raises(errors.BadCall):
        nexus.add_handler(1.5, lambda e, q: None)
    with pytest.raises(errors.BadCall):
        nexus.add_handler(int, lambda e, q: None)
