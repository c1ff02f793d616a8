"""Every misuse is a BadCall, and also the builtin exception the call raised before.

Each case calls one public entry wrongly and checks both classes, so code written as
``except BadCall`` and code written as ``except ValueError`` (or ``TypeError``,
``LookupError``) both keep catching it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, EventFanout, NexusGroup, Retry, Timer, errors
from async_nexus._core.queue import EventQueue
from async_nexus.testing import Recorder


def handler(event: Any, queue: Any) -> None:
    return None


def other(event: Any, queue: Any) -> None:
    return None


def second_handler_for_a_type() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(1, handler)
    nexus.add_handler(1, other)


def remove_unregistered_handler() -> None:
    nexus = AsyncEventNexus()
    nexus.add_handler(1, handler)
    nexus.remove_handler(1, other)


def remove_unregistered_filter() -> None:
    AsyncEventNexus().remove_filter(handler)


def deregister_from_fanout() -> None:
    fanout = EventFanout()
    fanout.register(handler)
    fanout.deregister(other)


def wait_for_nonsense() -> None:
    asyncio.run(Recorder().wait_for("three"))  # type: ignore[call-overload]


CASES: list[tuple[str, Callable[[], object], type[errors.BadCall], type[Exception]]] = [
    ("second handler", second_handler_for_a_type, errors.AlreadyRegistered, LookupError),
    ("remove_handler", remove_unregistered_handler, errors.NotRegistered, LookupError),
    ("remove_filter", remove_unregistered_filter, errors.NotRegistered, LookupError),
    ("fanout.deregister", deregister_from_fanout, errors.NotRegistered, ValueError),
    ("Timer interval", lambda: Timer(0, event_type=1), errors.BadValue, ValueError),
    ("Timer type", lambda: Timer(1, event_type=1, type="often"), errors.BadValue, ValueError),  # type: ignore[arg-type]
    (
        "Timer count",
        lambda: Timer(1, event_type=1, type=Timer.COUNT_UP, count=0),
        errors.BadValue,
        ValueError,
    ),
    ("Retry attempts", lambda: Retry(attempts=0), errors.BadValue, ValueError),
    ("Retry backoff", lambda: Retry(backoff=-1), errors.BadValue, ValueError),
    ("Retry max_backoff", lambda: Retry(max_backoff=-1), errors.BadValue, ValueError),
    ("Retry on", lambda: Retry(on=3), errors.BadType, TypeError),  # type: ignore[arg-type]
    ("queue maxsize", lambda: EventQueue(-1), errors.BadValue, ValueError),
    ("nexus maxsize", lambda: AsyncEventNexus(maxsize=-1), errors.BadValue, ValueError),
    (
        "slow_callback_warning",
        lambda: AsyncEventNexus(slow_callback_warning=0),
        errors.BadValue,
        ValueError,
    ),
    ("NexusGroup empty", lambda: NexusGroup(), errors.BadValue, ValueError),
    ("NexusGroup not a nexus", lambda: NexusGroup(object()), errors.BadType, TypeError),  # type: ignore[arg-type]
    ("wait_for", wait_for_nonsense, errors.BadType, TypeError),
]


def nexus_given_twice() -> None:
    nexus = AsyncEventNexus()
    NexusGroup(nexus, nexus)


def names_that_do_not_fit() -> None:
    NexusGroup(AsyncEventNexus(), AsyncEventNexus(), names=["same", "same"])


CASES += [
    ("NexusGroup twice", nexus_given_twice, errors.BadValue, ValueError),
    ("NexusGroup names", names_that_do_not_fit, errors.BadValue, ValueError),
]


@pytest.mark.parametrize(("call", "expected", "builtin"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_misuse_is_a_badcall_and_the_old_builtin(
    call: Callable[[], object], expected: type[errors.BadCall], builtin: type[Exception]
) -> None:
    with pytest.raises(expected) as info:
        call()
    assert isinstance(info.value, errors.BadCall)
    assert isinstance(info.value, builtin)
    assert str(info.value)  # says what was wrong


def test_redis_sizes_are_bad_values() -> None:
    redis_transport = pytest.importorskip("async_nexus.transports.redis")
    for wrong in (
        lambda: redis_transport.RedisStreamSender("redis://localhost", "s", batch_size=0),
        lambda: redis_transport.RedisStreamSender("redis://localhost", "s", buffer_size=2.5),
        lambda: redis_transport.RedisStreamReceiver("redis://localhost", "s", group="g", max_in_flight=-1),
    ):
        with pytest.raises(errors.BadValue) as info:
            wrong()
        assert isinstance(info.value, errors.BadCall)
        assert isinstance(info.value, ValueError)


def test_already_registered_says_what_to_do() -> None:
    with pytest.raises(errors.AlreadyRegistered, match="multiple=True"):
        second_handler_for_a_type()
