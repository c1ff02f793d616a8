"""Sources have names: the class name and a number in registration order, or one of their own."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import Collector

from async_nexus import AsyncEventNexus, Event, EventProducer, SimpleEventConverter, Timer, errors
from async_nexus.metrics import register_nexus


def fresh_class(name: str, base: type = EventProducer) -> Any:
    """A source class of a name no other test uses: default numbers count per class name."""
    return type(name, (base,), {})


def test_default_names_count_per_class_in_registration_order() -> None:
    Tail = fresh_class("NamingTail")
    first, second, third = Tail(), Tail(), Tail()
    nexus = AsyncEventNexus()
    nexus.add_producer(second)  # registered first: number 1, whatever the order of creation
    nexus.register(first)
    AsyncEventNexus().add_producer(third)  # the count is the process's, not one nexus's
    assert (second.name, first.name, third.name) == ("NamingTail-1", "NamingTail-2", "NamingTail-3")
    assert second.name == "NamingTail-1"  # asked again, the name stays


def test_a_name_can_be_set_and_is_checked() -> None:
    Tail = fresh_class("NamingSettable")
    source = Tail()
    source.name = "orders"
    assert source.name == "orders"
    for bad in ("", "secondary", "ingest()", 7):
        with pytest.raises(errors.BadCall, match="a source name is a non-empty str"):
            source.name = bad


def test_two_sources_of_one_name_are_refused_by_one_nexus() -> None:
    Tail = fresh_class("NamingTwins")
    a, b = Tail(), Tail()
    a.name = b.name = "twin"
    nexus = AsyncEventNexus()
    nexus.add_producer(a)
    with pytest.raises(errors.BadCall, match="named 'twin', like"):
        nexus.add_producer(b)
    AsyncEventNexus().add_producer(b)  # another nexus keeps its own names


async def test_stats_metrics_and_task_names_use_the_name() -> None:
    class Three(SimpleEventConverter):
        sent = 0

        async def obtain_event(self) -> Event:
            if self.sent == 3:
                raise errors.NoMoreEvents()
            self.sent += 1
            return Event(self.sent, "n")

    converter = Three()
    converter.name = "three"
    timer = Timer(0.001, event_type="n", type=Timer.COUNT_UP, count=2)
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("n", collector)
    nexus.add_converter(converter)
    nexus.add_producer(timer)
    registry = CollectorRegistry()
    register_nexus(nexus, registry)
    async with nexus:
        await collector.wait(5)
        await asyncio.wait_for(nexus.join(), 5)
        stats = nexus.stats()
        exported = generate_latest(registry).decode()
    assert re.fullmatch(r"Timer-\d+", timer.name)
    assert stats["by_source"] == {"three": 3, timer.name: 2, "secondary": 0, "ingest()": 0}
    labels = {
        sample.labels.get("source")
        for family in text_string_to_metric_families(exported)
        for sample in family.samples
        if "by_source" in sample.name
    }
    assert {"three", timer.name} <= labels
    assert not any(label and " at 0x" in label for label in labels)


async def test_a_source_task_is_named_after_its_source() -> None:
    class Idle(SimpleEventConverter):
        async def obtain_event(self) -> Event:
            await asyncio.get_running_loop().create_future()
            raise AssertionError("never")

    idle = Idle()
    idle.name = "idle"
    timer = Timer(60, event_type="n")
    nexus = AsyncEventNexus()
    nexus.add_converter(idle)
    nexus.add_producer(timer)
    wanted = {"async_nexus source idle", f"async_nexus source {timer.name}"}

    async def named_tasks_run() -> None:
        while not wanted <= {task.get_name() for task in asyncio.all_tasks()}:
            await asyncio.sleep(0.01)

    async with nexus:
        await asyncio.wait_for(named_tasks_run(), 5)


async def test_the_default_hook_names_the_source(caplog: pytest.LogCaptureFixture) -> None:
    closed = asyncio.Event()

    class Broken(SimpleEventConverter):
        async def obtain_event(self) -> Event:
            raise RuntimeError("the device is gone")

        def close(self) -> None:
            closed.set()

    caplog.set_level(logging.ERROR, "async_nexus")
    broken = Broken()
    broken.name = "device"
    nexus = AsyncEventNexus()
    nexus.add_converter(broken)
    async with nexus:
        await asyncio.wait_for(closed.wait(), 5)
    assert "async_nexus: source device failed" in [r.getMessage() for r in caplog.records]
