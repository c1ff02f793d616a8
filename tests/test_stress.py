"""Stress: failures at volume, graceful shutdown with a full queue, routing against a model,
SIGTERM on a real process, and backpressure that keeps memory flat."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_nexus import AsyncEventNexus, Event, errors

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0  # generous upper bound for every wait; the tests finish far sooner


# -- failures at volume -------------------------------------------------------------------


async def test_every_tenth_handler_failure_is_reported_and_the_loop_goes_on() -> None:
    nexus = AsyncEventNexus(maxsize=0)
    handled: list[Any] = []
    reported: list[tuple[BaseException, Any]] = []
    calls = 0

    def handler(event: Event, queue: Any) -> None:
        nonlocal calls
        calls += 1
        if calls % 10 == 0:
            raise RuntimeError(f"handler failed on {event.id}")
        handled.append(event.id)

    nexus.add_handler(7, handler)
    nexus.on_error(lambda exc, subject: reported.append((exc, subject)))
    task = nexus.start()
    for number in range(10_000):
        nexus.ingest_nowait(Event(number, 7))
    await asyncio.wait_for(nexus.join(), WAIT)

    assert len(handled) == 9_000
    assert handled == [n for n in range(10_000) if n % 10 != 9]  # order kept
    assert len(reported) == 1_000
    assert all(isinstance(exc, RuntimeError) for exc, _ in reported)
    assert [subject.id for _, subject in reported] == [n for n in range(10_000) if n % 10 == 9]
    assert nexus.stats()["errors"] == 1_000
    assert not task.done()

    # Still running: one more event is handled (the 10,001st call is not a tenth).
    await nexus.ingest(Event("one more", 7))
    await asyncio.wait_for(nexus.join(), WAIT)
    assert handled[-1] == "one more"
    assert not task.done()

    nexus.stop()
    await asyncio.wait_for(task, WAIT)


# -- graceful shutdown with a full queue -----------------------------------------------------


async def test_stop_dispatches_everything_queued_then_refuses_ingest() -> None:
    nexus = AsyncEventNexus(maxsize=20_000)
    dispatched: list[int] = []
    under_way = asyncio.Event()

    async def handler(event: Event, queue: Any) -> None:
        dispatched.append(event.id)  # type: ignore[arg-type]
        if event.id == 500:
            under_way.set()
        if event.id % 100 == 0:
            await asyncio.sleep(0)  # let the test run while the loop is busy

    nexus.add_handler(1, handler)
    task = nexus.start()
    for number in range(10_000):
        await nexus.ingest(Event(number, 1))
    await asyncio.wait_for(under_way.wait(), WAIT)

    nexus.stop()
    assert len(dispatched) < 10_000, "the test must stop the nexus with events still queued"
    assert not task.done()
    await asyncio.wait_for(task, WAIT)

    assert dispatched == list(range(10_000))
    stats = nexus.stats()
    assert stats["dispatched"] == 10_000 and stats["queued"] == 0
    with pytest.raises(errors.BadCall):
        await nexus.ingest(Event(10_000, 1))
    assert len(dispatched) == 10_000


async def test_stop_before_the_loop_runs_still_dispatches_the_queue() -> None:
    nexus = AsyncEventNexus(maxsize=0)
    dispatched: list[Any] = []
    nexus.add_handler(1, lambda event, queue: dispatched.append(event.id))
    task = nexus.start()
    for number in range(10_000):
        await nexus.ingest(Event(number, 1))
    nexus.stop()  # the loop task has not had a turn yet
    await asyncio.wait_for(task, WAIT)
    assert dispatched == list(range(10_000))
    with pytest.raises(errors.BadCall):
        await nexus.ingest(Event(-5, 1))


# -- routing against a reference model -------------------------------------------------------

INT_TYPES = list(range(0, 13))
STR_TYPES = ["a", "b", "ab", "a.b", "a.c", "b.a", "a.bc", "a.bb", "a.", "c.d", "ba"]
PATTERNS = ["a.*", "a.b?", "*", "a*", "?.?", "[ab].b", "a.[bc]*", "*.a", "b*", "a.b*", "*b"]

ranges_st = st.tuples(st.integers(0, 12), st.integers(0, 12)).map(lambda t: (min(t), max(t)))


def _literals(pattern: str) -> int:
    return sum(1 for char in pattern if char not in "*?[")


def _expected(
    event_id: int,
    event_type: int | str,
    filters: list[frozenset[int]],
    exact: list[int | str],
    ranges: list[tuple[int, int]],
    patterns: list[str],
    default: bool,
) -> str:
    for index, ids in enumerate(filters):
        if event_id in ids:
            return f"filter {index}"
    if event_type in exact:
        return f"exact {event_type!r}"
    if isinstance(event_type, int):
        best: tuple[int, int] | None = None
        for start, end in ranges:
            if start <= event_type <= end and (best is None or end - start < best[1] - best[0]):
                best = (start, end)
        if best is not None:
            return f"range {best}"
    else:
        chosen: str | None = None
        for pattern in patterns:
            if fnmatch.fnmatchcase(event_type, pattern) and (
                chosen is None or _literals(pattern) > _literals(chosen)
            ):
                chosen = pattern
        if chosen is not None:
            return f"pattern {chosen!r}"
    if default:
        return "default"
    return "unhandled"


@hypothesis.settings(max_examples=60, deadline=None)
@given(
    filters=st.lists(st.frozensets(st.integers(0, 39), max_size=8), max_size=3),
    exact=st.lists(st.sampled_from([*INT_TYPES, *STR_TYPES]), unique=True, max_size=6),
    ranges=st.lists(ranges_st, unique=True, max_size=5),
    patterns=st.lists(st.sampled_from(PATTERNS), unique=True, max_size=5),
    default=st.booleans(),
    event_types=st.lists(st.sampled_from([*INT_TYPES, 13, 14, *STR_TYPES, "zz"]), min_size=1, max_size=40),
    async_mask=st.integers(0, 2**16),
)
def test_routing_matches_the_reference_model(
    filters: list[frozenset[int]],
    exact: list[int | str],
    ranges: list[tuple[int, int]],
    patterns: list[str],
    default: bool,
    event_types: list[int | str],
    async_mask: int,
) -> None:
    reached: dict[int, list[str]] = defaultdict(list)
    counter = iter(range(10**6))

    def make_handler(label: str) -> Any:
        # Some handlers sync, some async: routing must not depend on the kind.
        if (async_mask >> (next(counter) % 16)) & 1:

            async def async_handler(event: Event, queue: Any) -> None:
                reached[event.id].append(label)  # type: ignore[index]

            return async_handler

        def sync_handler(event: Event, queue: Any) -> None:
            reached[event.id].append(label)  # type: ignore[index]

        return sync_handler

    def make_filter(index: int, ids: frozenset[int]) -> Any:
        def consume(event: Event, queue: Any) -> bool:
            if event.id in ids:
                reached[event.id].append(f"filter {index}")
                return True
            return False

        return consume

    async def scenario() -> None:
        nexus = AsyncEventNexus(maxsize=0)
        for index, ids in enumerate(filters):
            nexus.add_filter(make_filter(index, ids))
        for event_type in exact:
            nexus.add_handler(event_type, make_handler(f"exact {event_type!r}"))
        for start_end in ranges:
            nexus.add_handler(start_end, make_handler(f"range {start_end}"))
        for pattern in patterns:
            nexus.add_handler(pattern, make_handler(f"pattern {pattern!r}"))
        if default:
            nexus.add_handler(-1, make_handler("default"))

        def on_error(exc: BaseException, subject: Any) -> None:
            assert isinstance(exc, errors.UnhandledEvent), exc
            reached[subject.id].append("unhandled")

        nexus.on_error(on_error)
        task = nexus.start()
        for event_id, event_type in enumerate(event_types):
            nexus.ingest_nowait(Event(event_id, event_type))
        await asyncio.wait_for(nexus.join(), WAIT)
        nexus.stop()
        await asyncio.wait_for(task, WAIT)

    asyncio.run(scenario())

    for event_id, event_type in enumerate(event_types):
        want = _expected(event_id, event_type, filters, exact, ranges, patterns, default)
        assert reached[event_id] == [want], (event_id, event_type)
    assert len(reached) == len(event_types)


# -- SIGTERM on a real process ----------------------------------------------------------------

SIGTERM_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import signal

    from async_nexus import AsyncEventNexus, Event

    # SIGTERM stays pending until the loop has installed its handlers (in run()): the
    # first handler call unblocks it, so the test may send it as soon as it reads READY.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    nexus = AsyncEventNexus(maxsize=0)
    handled = 0

    async def slow(event, queue):
        global handled
        if handled == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        await asyncio.sleep(0.001)
        handled += 1

    nexus.add_handler(1, slow)
    for number in range(2000):
        nexus.ingest_nowait(Event(number, 1))
    print("READY", flush=True)
    nexus.run()
    print(f"HANDLED {handled} STATE {nexus.state.name}", flush=True)
    """
)


def test_sigterm_stops_a_running_nexus_gracefully(tmp_path: Path) -> None:
    script = tmp_path / "sigterm_daemon.py"
    script.write_text(SIGTERM_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.strip() == "READY", first
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines, err
    assert lines[-1] == "HANDLED 2000 STATE STOPPED", (out, err)


# -- backpressure --------------------------------------------------------------------------------


async def test_a_fast_producer_is_held_to_the_bound() -> None:
    nexus = AsyncEventNexus(maxsize=100)
    handled: list[int] = []

    async def handler(event: Event, queue: Any) -> None:
        handled.append(event.id)  # type: ignore[arg-type]
        if len(handled) % 64 == 0:
            await asyncio.sleep(0)

    nexus.add_handler(1, handler)
    task = nexus.start()

    async def producer() -> None:
        for number in range(50_000):
            await nexus.ingest(Event(number, 1))

    await asyncio.wait_for(producer(), WAIT)
    await asyncio.wait_for(nexus.join(), WAIT)

    stats = nexus.stats()
    assert 100 <= stats["high_water"] <= 102, stats  # it filled up, and never went past
    assert stats["ingested"] == stats["dispatched"] == 50_000
    assert handled == list(range(50_000))
    nexus.stop()
    await asyncio.wait_for(task, WAIT)
