"""add_handler(..., retry=Retry(...)): failed handlers are called again after a backoff.

Each test waits on the condition it checks, with a timeout; none sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventNexus, Event, Retry, current_attempt, errors
from async_nexus.testing import Recorder

FAST = Retry(attempts=3, backoff=0.01, jitter=False)


class Flaky:
    """A handler failing its first ``failures`` attempts at each event, recording every call."""

    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.failures, self.exc = failures, exc
        self.calls: list[tuple[Any, int, float]] = []  # (event id, current_attempt(), loop time)
        self.handled: list[Any] = []
        self.done = asyncio.Event()

    async def __call__(self, event: Event, queue: Any) -> None:
        attempt = current_attempt()
        self.calls.append((event.id, attempt, asyncio.get_running_loop().time()))
        if attempt <= self.failures:
            raise self.exc(f"attempt {attempt} at {event.id} failed")
        self.handled.append(event.id)
        self.done.set()


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_a_handler_that_succeeds_on_the_third_attempt_is_not_reported(
    concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    hook, dead = Hook(), Recorder()
    flaky = Flaky(failures=2)
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.on_dead_letter(lambda event, exc: dead(event, None))
    nexus.add_handler("job", flaky, concurrency=concurrency, retry=FAST)
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        async with nexus:
            await nexus.ingest(Event(1, "job"))
            await asyncio.wait_for(flaky.done.wait(), 5)
            await asyncio.wait_for(nexus.join(), 5)
            stats = nexus.stats()
    assert [(event_id, attempt) for event_id, attempt, _ in flaky.calls] == [(1, 1), (1, 2), (1, 3)]
    assert flaky.handled == [1]
    assert hook.calls == [] and len(dead) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed on attempt 1 of 3 at event 1" in w and "ConnectionError" in w for w in warnings)
    assert any("failed on attempt 2 of 3 at event 1" in w for w in warnings)
    assert stats["by_type"]["job"]["failed"] == 0 and stats["retrying"] == 0


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_the_final_failure_is_reported_once_with_the_last_exception(concurrency: int) -> None:
    hook, dead = Hook(), []
    flaky = Flaky(failures=99)
    nexus = AsyncEventNexus()
    nexus.on_error(hook)

    @nexus.on_dead_letter
    async def parked(event: Event, exc: BaseException) -> None:
        dead.append((event.id, str(exc)))

    nexus.add_handler("job", flaky, concurrency=concurrency, retry=FAST)
    async with nexus:
        await nexus.ingest(Event(7, "job"))
        await asyncio.wait_for(hook.called.wait(), 5)
        await asyncio.wait_for(nexus.join(), 5)
        failed = nexus.stats()["by_type"]["job"]["failed"]
    assert [attempt for _, attempt, _ in flaky.calls] == [1, 2, 3]
    ((exc, subject),) = hook.calls
    assert isinstance(exc, ConnectionError) and str(exc) == "attempt 3 at 7 failed"
    assert subject.id == 7
    assert dead == [(7, "attempt 3 at 7 failed")]
    assert failed == 1


async def test_the_backoff_doubles_on_the_loop_clock_and_is_capped() -> None:
    flaky = Flaky(failures=4)
    nexus = AsyncEventNexus()
    nexus.add_handler("job", flaky, retry=Retry(attempts=5, backoff=0.02, max_backoff=0.05, jitter=False))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(flaky.done.wait(), 5)
    times = [at for _, _, at in flaky.calls]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # Waits of 0.02, 0.04, then 0.05 twice (capped); the loop never calls back early.
    for gap, wait in zip(gaps, [0.02, 0.04, 0.05, 0.05], strict=True):
        assert gap >= wait - 1e-3, gaps
    assert len(gaps) == 4


def test_the_delay_formula_and_its_jitter() -> None:
    retry = Retry(attempts=10, backoff=0.5, max_backoff=3.0, jitter=False)
    assert [retry.delay(k) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = Retry(backoff=1.0, jitter=True)
    delays = {jittered.delay(2) for _ in range(200)}
    assert all(1.0 <= d <= 2.0 for d in delays) and len(delays) > 1


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_other_events_are_handled_while_one_waits_for_its_retry(concurrency: int) -> None:
    calls: list[tuple[int, int]] = []
    others = Recorder()

    async def fails_at_one(event: Event, queue: Any) -> None:
        calls.append((event.id, current_attempt()))
        if event.id == 1:
            raise ConnectionError("not now")
        others(event, queue)

    nexus = AsyncEventNexus()
    # A wait far longer than the test: it can only pass if the wait holds nothing.
    nexus.add_handler("job", fails_at_one, concurrency=concurrency, retry=Retry(backoff=60, jitter=False))
    nexus.add_handler("other", others)
    task = nexus.start()
    await nexus.ingest(Event(1, "job"))
    while nexus.stats()["retrying"] != 1:
        await asyncio.sleep(0.01)
    await nexus.ingest(Event(2, "job"))  # the same registration takes its next event, too
    for n in range(3, 23):
        await nexus.ingest(Event(n, "other"))
    await others.wait_for(21)
    assert nexus.stats()["retrying"] == 1
    assert calls == [(1, 1), (2, 1)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_keyed_lane_keeps_the_order_of_a_key_while_one_of_its_events_is_retried() -> None:
    order: list[tuple[str, int, int]] = []
    first_failures = {("a", 1): 2}
    b_done = asyncio.Event()

    async def handler(event: Event, queue: Any) -> None:
        key, n = event.payload
        attempt = current_attempt()
        order.append((key, n, attempt))
        if attempt <= first_failures.get((key, n), 0):
            raise ConnectionError(f"{key}{n} attempt {attempt}")
        if key == "b" and n == 3:
            b_done.set()

    nexus = AsyncEventNexus()
    nexus.add_handler("job", handler, concurrency=4, key=lambda e: e.payload[0], retry=FAST)
    async with nexus:
        for n in (1, 2, 3):
            await nexus.ingest(Event(0, "job", 0, ("a", n)))
            await nexus.ingest(Event(0, "job", 0, ("b", n)))
        await asyncio.wait_for(b_done.wait(), 5)
        await asyncio.wait_for(nexus.join(), 5)
    a_events = [(n, attempt) for key, n, attempt in order if key == "a"]
    assert a_events == [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]
    # Key b went on beside a's retries: all of b was handled before a's second event.
    assert order.index(("b", 3, 1)) < order.index(("a", 2, 1))


async def test_only_the_exceptions_named_by_on_are_retried() -> None:
    hook = Hook()
    calls: list[tuple[int, int]] = []

    async def handler(event: Event, queue: Any) -> None:
        calls.append((event.id, current_attempt()))
        raise (ConnectionError if event.id == 1 else ValueError)(f"event {event.id}")

    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("job", handler, retry=Retry(attempts=2, backoff=0.01, on=(ConnectionError, OSError)))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.ingest(Event(2, "job"))
        while len(hook.calls) < 2:
            await asyncio.sleep(0.01)
    assert sorted(calls) == [(1, 1), (1, 2), (2, 1)]
    assert sorted((type(exc).__name__, subject.id) for exc, subject in hook.calls) == [
        ("ConnectionError", 1),
        ("ValueError", 2),
    ]


async def test_a_timeout_is_retried_like_any_failure() -> None:
    calls: list[int] = []
    done = asyncio.Event()

    async def hangs_once(event: Event, queue: Any) -> None:
        calls.append(current_attempt())
        if current_attempt() == 1:
            await asyncio.get_running_loop().create_future()  # never returns on its own
        done.set()

    nexus = AsyncEventNexus()
    hook = Hook()
    nexus.on_error(hook)
    nexus.add_handler("job", hangs_once, timeout=0.05, retry=Retry(backoff=0.01, on=TimeoutError))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(done.wait(), 5)
    assert calls == [1, 2] and hook.calls == []


async def test_a_plain_function_in_the_loop_is_retried_in_the_loop() -> None:
    calls: list[int] = []
    done = asyncio.Event()
    loop_task: list[Any] = []

    def sync_handler(event: Event, queue: Any) -> None:
        calls.append(current_attempt())
        loop_task.append(asyncio.current_task())
        if current_attempt() < 3:
            raise OSError("not yet")
        done.set()

    nexus = AsyncEventNexus()
    nexus.add_handler("job", sync_handler, retry=FAST)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(done.wait(), 5)
        assert set(loop_task) == {nexus.task}  # one at a time, as concurrency=1 promises
    assert calls == [1, 2, 3]


async def test_a_request_waits_for_the_retry_and_gets_its_answer() -> None:
    nexus = AsyncEventNexus()

    @nexus.on("sum?", retry=FAST)
    async def add(event: Event, queue: Any) -> Event:
        if current_attempt() == 1:
            raise ConnectionError("the adder was not ready")
        return Event(0, "sum", 0, sum(event.payload))

    async with nexus:
        answer = await nexus.request(Event(1, "sum?", 0, [2, 3]), timeout=5)
    assert answer.payload == 5


async def test_a_graceful_stop_waits_for_a_retry_due_within_the_drain() -> None:
    flaky = Flaky(failures=1)
    nexus = AsyncEventNexus()
    nexus.add_handler("job", flaky, retry=Retry(backoff=0.05, jitter=False))
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        while not flaky.calls:
            await asyncio.sleep(0.01)
    assert flaky.handled == [1]


async def test_a_graceful_stop_logs_the_retries_it_did_not_wait_for(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(failures=1)
    nexus = AsyncEventNexus(drain_timeout=0.1)
    nexus.add_handler("job", flaky, retry=Retry(backoff=60, jitter=False))
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        async with nexus:
            await nexus.ingest(Event(1, "job"))
            while not flaky.calls:
                await asyncio.sleep(0.01)
    assert flaky.handled == []
    assert any("1 events waiting for a retry" in r.getMessage() for r in caplog.records)


async def test_without_retry_a_failure_is_final_at_once() -> None:
    flaky = Flaky(failures=1)
    hook = Hook()
    nexus = AsyncEventNexus()
    nexus.on_error(hook)
    nexus.add_handler("job", flaky)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await asyncio.wait_for(hook.called.wait(), 5)
    assert [attempt for _, attempt, _ in flaky.calls] == [1]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"attempts": 0}, ValueError, r"attempts=\) counts every call.*got 0"),
        ({"attempts": True}, ValueError, r"attempts=\)"),
        ({"backoff": -1}, ValueError, r"backoff=\) is a number of seconds >= 0, got -1"),
        ({"max_backoff": "1"}, ValueError, r"max_backoff=\)"),
        ({"on": int}, TypeError, r"on=\) takes an exception class or a tuple"),
        ({"on": ()}, TypeError, r"on=\) takes an exception class"),
        ({"on": (ValueError, "x")}, TypeError, r"on=\) takes"),
    ],
)
def test_a_retry_policy_that_cannot_work_is_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**kwargs)


def test_retry_must_be_a_retry_policy() -> None:
    nexus = AsyncEventNexus()
    with pytest.raises(errors.BadCall, match=r"retry= takes async_nexus.Retry\(...\), got 3"):
        nexus.add_handler("job", lambda e, q: None, retry=3)  # type: ignore[arg-type]
    with pytest.raises(errors.BadCall, match="retry= takes"):
        nexus.on("job", retry={"attempts": 3})  # type: ignore[arg-type]


def test_current_attempt_is_one_outside_a_handler() -> None:
    assert current_attempt() == 1
