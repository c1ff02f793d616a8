"""A sync handler or filter that holds the event loop is named in a warning, from outside the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import Collector

from async_nexus import AsyncEventNexus, Event

THIS_FILE = "test_watchdog.py"


class Warnings(logging.Handler):
    """The async_nexus logger's warnings, and an event set at the first one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.first = threading.Event()  # set from the watchdog's thread

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.first.set()

    async def wait(self, timeout: float = 5) -> str:
        if not await asyncio.to_thread(self.first.wait, timeout):
            raise TimeoutError(f"no warning within {timeout}s")
        return self.messages[0]


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("async_nexus")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "async_nexus watchdog"]


def slow_handler(event: Event, queue: Any) -> None:
    time.sleep(0.3)


def slow_filter(event: Event, queue: Any) -> bool:
    time.sleep(0.3)
    return False


async def test_a_sync_handler_that_holds_the_loop_is_named(warnings: Warnings) -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(1, slow_handler)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        message = await warnings.wait()
    assert message.startswith("async_nexus: slow_handler (")
    line = slow_handler.__code__.co_firstlineno + 1  # the time.sleep() line
    assert f"{THIS_FILE}:{line}) has held the event loop for " in message
    assert "(slow_callback_warning=0.1)" in message
    assert len(warnings.messages) == 1  # once per hold


async def test_a_filter_is_named_too_and_the_threshold_is_configurable(warnings: Warnings) -> None:
    nexus = AsyncEventNexus(slow_callback_warning=0.05)
    nexus.add_filter(slow_filter)
    nexus.add_handler(1, lambda event, queue: None)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        message = await warnings.wait()
    assert message.startswith("async_nexus: slow_filter (")
    assert "(slow_callback_warning=0.05)" in message


async def test_the_watchdog_runs_with_the_loop_and_stops_with_it() -> None:
    assert not watchdogs()
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler(1, collector)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await collector.wait(1)  # the loop runs
        assert len(watchdogs()) == 1
    assert not watchdogs()  # stop() waited for it


async def test_none_runs_no_watchdog() -> None:
    nexus = AsyncEventNexus(slow_callback_warning=None)
    collector = Collector()
    nexus.add_handler(1, collector)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await collector.wait(1)
        assert not watchdogs()


async def test_an_async_handler_that_awaits_holds_nothing(warnings: Warnings) -> None:
    done = asyncio.Event()

    async def patient(event: Event, queue: Any) -> None:
        await asyncio.sleep(0.3)
        done.set()

    nexus = AsyncEventNexus()
    nexus.add_handler(1, patient)
    async with nexus:
        await nexus.ingest(Event(1, 1))
        await asyncio.wait_for(done.wait(), 5)
    assert warnings.messages == []


@pytest.mark.parametrize("bad", [0, -1, "0.1", True])
def test_the_threshold_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="slow_callback_warning is a number of seconds > 0, or None"):
        AsyncEventNexus(slow_callback_warning=bad)
