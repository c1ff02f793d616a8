"""What the errors and the default error hook say: how a hook is called, instances for
classes, and a source that reports an error and goes on apart from one that failed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from support import Collector

from async_nexus import (
    AsyncEventNexus,
    Event,
    EventConsumer,
    EventDiscarder,
    EventFanout,
    EventProducer,
    SimpleEventConverter,
    Timer,
    errors,
)


class Converter(SimpleEventConverter):
    async def obtain_event(self) -> Event:
        await asyncio.get_running_loop().create_future()
        raise AssertionError("never")


def test_the_on_error_arity_message_says_how_the_hook_is_called() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer) as caught:
        nexus.on_error(lambda exc: None)
    message = str(caught.value)
    assert message.startswith("an error hook is called as hook(exception, subject), but ")
    assert "(event, queue)" not in message
    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"taking \(exception, subject\), got 3"):
        nexus.on_error(3)  # type: ignore[type-var]


def test_handler_messages_still_say_event_and_queue() -> None:
    refused = errors.MisconfiguredEventConsumer
    with pytest.raises(refused, match=r"a handler is called as handler\(event, queue\)"):
        AsyncEventNexus().add_handler(1, lambda event: None)
    with pytest.raises(refused, match=r"a filter is called as filter\(event, queue\)"):
        AsyncEventNexus().add_filter(lambda event: None)


@pytest.mark.parametrize(
    ("register", "cls"),
    [
        (lambda nexus, cls: nexus.register(cls), Converter),
        (lambda nexus, cls: nexus.register(cls), Timer),
        (lambda nexus, cls: nexus.add_producer(cls), Timer),
        (lambda nexus, cls: nexus.add_converter(cls), Converter),
    ],
)
def test_a_source_class_is_refused_with_register_an_instance(register: Any, cls: type) -> None:
    name = cls.__name__
    with pytest.raises(errors.BadCall, match=rf"got the class {name}; register an instance: {name}\(\)"):
        register(AsyncEventNexus(), cls)


def test_a_source_class_of_the_other_kind_is_also_told_where_it_goes() -> None:
    where = r"register an instance: Timer\(\); producers go to add_producer\(\)"
    with pytest.raises(errors.BadCall, match=where):
        AsyncEventNexus().add_converter(Timer)  # type: ignore[arg-type]
    with pytest.raises(errors.BadCall, match=r"got Converter; converters go to add_converter\(\)"):
        AsyncEventNexus().add_producer(Converter())  # type: ignore[arg-type]


def test_a_handler_or_filter_class_is_refused_with_register_an_instance() -> None:
    class Callable_:
        def __call__(self, event: Event, queue: Any) -> None:
            pass

    nexus = AsyncEventNexus()
    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"register an instance: EventDiscarder\(\)"):
        nexus.add_handler(1, EventDiscarder)
    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"register an instance: Callable_\(\)"):
        nexus.add_filter(Callable_)
    with pytest.raises(errors.MisconfiguredEventConsumer) as caught:
        nexus.add_handler(1, int)  # its instances are no handlers: no advice to make one
    assert "register an instance" not in str(caught.value)


def _source_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "async_nexus" and "source" in r.getMessage()]


async def test_a_converter_that_goes_on_after_bad_input_reported_it(caplog: pytest.LogCaptureFixture) -> None:
    class Garbled(SimpleEventConverter):
        def __init__(self) -> None:
            self.calls = 0

        async def obtain_event(self) -> Event:
            self.calls += 1
            if self.calls == 1:
                raise errors.DecodeError("not an event")
            if self.calls == 2:
                return Event(2, "ok")
            raise errors.NoMoreEvents()

    caplog.set_level(logging.ERROR, "async_nexus")
    nexus = AsyncEventNexus()
    collector = Collector()
    nexus.add_handler("ok", collector)
    nexus.add_converter(Garbled())
    async with nexus:
        await collector.wait(1)  # the bad input was reported before this event was obtained
    lines = _source_lines(caplog)
    assert len(lines) == 1
    assert "reported an error and goes on" in lines[0] and "failed" not in lines[0]


async def test_a_producer_report_says_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "async_nexus")
    producer = EventProducer()
    nexus = AsyncEventNexus()
    nexus.add_producer(producer)
    await producer.report(errors.DecodeError("garbled"))  # the default hook has run when it returns
    lines = _source_lines(caplog)
    assert len(lines) == 1
    assert "reported an error and goes on" in lines[0] and "failed" not in lines[0]


async def test_a_source_that_stopped_on_its_error_failed(caplog: pytest.LogCaptureFixture) -> None:
    closed = asyncio.Event()

    class Broken(SimpleEventConverter):
        async def obtain_event(self) -> Event:
            raise RuntimeError("the device is gone")

        def close(self) -> None:
            closed.set()  # retired after its failure was reported

    caplog.set_level(logging.ERROR, "async_nexus")
    nexus = AsyncEventNexus()
    nexus.add_converter(Broken())
    async with nexus:
        await asyncio.wait_for(closed.wait(), 5)
    lines = _source_lines(caplog)
    assert len(lines) == 1
    assert "failed" in lines[0] and "reported" not in lines[0]


async def test_a_consumer_class_in_a_fanout_is_refused_too() -> None:
    class Shout(EventConsumer):
        def handle(self, event: Any, queue: Any) -> None:
            pass

    with pytest.raises(errors.MisconfiguredEventConsumer, match=r"register an instance: Shout\(\)"):
        EventFanout().register(Shout)
