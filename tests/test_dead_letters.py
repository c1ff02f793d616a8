"""nexus.on_dead_letter(callback): events whose handling finally failed, in one process.

The Redis transport's dead letters (the ``<stream>:dead`` stream) are in test_redis.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventNexus, Event, errors


class Dead:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, BaseException]] = []

    def __call__(self, event: Event, exc: BaseException) -> None:
        self.calls.append((event.id, exc))


async def test_a_failed_event_goes_to_the_dead_letter_callback_after_the_error_hook() -> None:
    order: list[str] = []
    nexus = AsyncEventNexus()
    nexus.on_error(lambda exc, subject: order.append(f"hook {subject.id}"))
    nexus.on_dead_letter(lambda event, exc: order.append(f"dead {event.id} {exc}"))

    @nexus.on("job")
    def fails(event: Event, queue: Any) -> None:
        raise KeyError("boom")

    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert order == ["hook 1", "dead 1 'boom'"]


async def test_an_event_no_handler_takes_is_a_dead_letter() -> None:
    dead = Dead()
    nexus = AsyncEventNexus()
    nexus.on_error(Hook())
    nexus.on_dead_letter(dead)
    async with nexus:
        await nexus.ingest(Event(5, "nobody"))
        await nexus.join()
    ((event_id, exc),) = dead.calls
    assert event_id == 5 and isinstance(exc, errors.UnhandledEvent)


async def test_a_filter_that_raises_makes_no_dead_letter() -> None:
    dead, hook = Dead(), Hook()
    handled: list[int] = []
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.on_dead_letter(dead)
    nexus.add_filter(lambda event, queue: 1 / 0)
    nexus.add_handler("job", lambda event, queue: handled.append(event.id))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert handled == [1] and dead.calls == [] and len(hook.calls) == 1


async def test_each_registration_that_fails_makes_one_call() -> None:
    dead = Dead()
    nexus = AsyncEventNexus(multiple=True)
    nexus.on_error(Hook())
    nexus.on_dead_letter(dead)

    async def fails(event: Event, queue: Any) -> None:
        raise ValueError("no")

    nexus.add_handler("job", fails)
    nexus.add_handler("job", fails, concurrency=2)
    nexus.add_handler("job", lambda event, queue: None)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.join()
    assert [event_id for event_id, _ in dead.calls] == [1, 1]


async def test_a_dead_letter_callback_that_raises_is_reported_and_the_loop_goes_on() -> None:
    hook = Hook()
    handled: list[int] = []
    nexus = AsyncEventNexus()
    nexus.on_error(hook)

    @nexus.on_dead_letter
    async def broken(event: Event, exc: BaseException) -> None:
        raise RuntimeError("the dead-letter store is down")

    nexus.add_handler("bad", lambda event, queue: 1 / 0)
    nexus.add_handler("good", lambda event, queue: handled.append(event.id))
    async with nexus:
        await nexus.ingest(Event(1, "bad"))
        await nexus.ingest(Event(2, "good"))
        await nexus.join()
    assert handled == [2]
    kinds = [(type(exc).__name__, subject) for exc, subject in hook.calls]
    assert kinds[0][0] == "ZeroDivisionError"
    assert kinds[1] == ("RuntimeError", broken)


def test_the_dead_letter_callback_must_take_event_and_exception() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"dead-letter hook.*\(event, exception\)"):
        nexus.on_dead_letter(42)  # type: ignore[arg-type]


async def test_without_a_dead_letter_callback_the_error_hook_alone_sees_the_failure() -> None:
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("job", lambda event, queue: 1 / 0)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(nexus.join(), 5)
    assert len(hook.calls) == 1
