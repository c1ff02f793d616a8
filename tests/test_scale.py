"""Behaviour at scale and under failure: thousands of events, real signals, random routing."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from async_nexus import AsyncEventNexus, Event, errors

ROOT = Path(__file__).resolve().parent.parent


async def test_every_tenth_call_failing_loses_nothing_and_keeps_order() -> None:
    nexus = AsyncEventNexus()
    handled: list[int] = []
    reported: list[tuple[BaseException, Any]] = []
    calls = 0

    async def flaky(event: Event, queue: Any) -> None:
        nonlocal calls
        calls += 1
        if calls % 10 == 0:
            raise RuntimeError(f"call {calls} fails")
        handled.append(event.id)  # type: ignore[arg-type]

    nexus.add_handler(1, flaky)
    nexus.on_error(lambda exc, subject: reported.append((exc, subject)))
    task = nexus.start()
    for i in range(10_000):
        await nexus.ingest(Event(i, 1))
    await asyncio.wait_for(nexus.join(), 30)
    assert len(handled) == 9_000
    assert len(reported) == 1_000
    assert all(isinstance(exc, RuntimeError) for exc, _ in reported)
    assert [subject.id for _, subject in reported] == list(range(9, 10_000, 10))
    assert handled == sorted(handled)
    assert not task.done()
    await nexus.ingest(Event(10_000, 1))  # still running: the next event is handled
    await asyncio.wait_for(nexus.join(), 5)
    assert handled[-1] == 10_000
    nexus.stop()
    await asyncio.wait_for(task, 10)


async def test_stop_dispatches_everything_queued_before_the_loop_returns() -> None:
    nexus = AsyncEventNexus(maxsize=0)
    handled: list[int] = []

    async def record(event: Event, queue: Any) -> None:
        handled.append(event.id)  # type: ignore[arg-type]

    nexus.add_handler(1, record)
    for i in range(10_000):
        nexus.ingest_nowait(Event(i, 1))
    task = nexus.start()
    nexus.stop()
    await asyncio.wait_for(task, 30)
    assert handled == list(range(10_000))
    try:
        await nexus.ingest(Event(1, 1))
    except errors.BadCall as exc:
        assert "stop" in str(exc)
    else:
        raise AssertionError("ingest after stop was accepted")


async def test_a_fast_producer_is_held_to_the_bound() -> None:
    nexus = AsyncEventNexus(maxsize=100)
    count = 0

    async def slow(event: Event, queue: Any) -> None:
        nonlocal count
        count += 1
        if count % 100 == 0:
            await asyncio.sleep(0)

    nexus.add_handler(1, slow)
    task = nexus.start()
    for i in range(50_000):
        await nexus.ingest(Event(i, 1))
    await asyncio.wait_for(nexus.join(), 30)
    assert count == 50_000
    assert nexus.stats()["high_water"] <= 100
    nexus.stop()
    await asyncio.wait_for(task, 10)


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from async_nexus import AsyncEventNexus, Event

    nexus = AsyncEventNexus(maxsize=0)
    handled = 0

    async def slow(event, queue):
        global handled
        await asyncio.sleep(0.001)
        handled += 1

    nexus.add_handler(1, slow)
    for i in range(2000):
        nexus.ingest_nowait(Event(i, 1))

    @nexus.on(0)
    def ready(event, queue):
        print("READY", flush=True)

    nexus.ingest_nowait(Event(-1, 0, priority=-1))
    nexus.run()
    print("HANDLED", handled, flush=True)
    """
)


def test_sigterm_drains_the_backlog_and_exits_zero(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "HANDLED 2000" in out


# -- routing against a reference model ---------------------------------------------------

INT_TYPES = st.integers(min_value=0, max_value=12)
STR_TYPES = st.sampled_from(["a", "a.b", "a.c", "ab", "b.b", "b"])
PATTERNS = st.sampled_from(["a.*", "a.?", "*", "?.b", "a*", "[ab].b"])
RANGES = st.tuples(st.integers(0, 12), st.integers(0, 12)).map(lambda t: (min(t), max(t)))

REGISTRATION = st.one_of(
    st.tuples(st.just("exact"), st.one_of(INT_TYPES, STR_TYPES)),
    st.tuples(st.just("range"), RANGES),
    st.tuples(st.just("pattern"), PATTERNS),
    st.tuples(st.just("filter"), st.frozensets(st.integers(0, 20), max_size=5)),
)


def reference(registrations: list[tuple[str, Any]], has_default: bool, event: Event) -> str:
    """Where the contract says ``event`` goes."""
    for index, (kind, spec) in enumerate(registrations):
        if kind == "filter" and event.id in spec:
            return f"filter{index}"
    for index, (kind, spec) in enumerate(registrations):
        if kind == "exact" and spec == event.type:
            return f"handler{index}"
    best: tuple[int, int] | None = None
    if isinstance(event.type, int):
        for index, (kind, spec) in enumerate(registrations):
            if kind == "range" and spec[0] <= event.type <= spec[1]:
                width = spec[1] - spec[0]
                if best is None or width < best[0]:
                    best = (width, index)
    else:
        for index, (kind, spec) in enumerate(registrations):
            if kind == "pattern" and fnmatch.fnmatchcase(event.type, spec):
                literals = -sum(c not in "*?[" for c in spec)
                if best is None or literals < best[0]:
                    best = (literals, index)
    if best is not None:
        return f"handler{best[1]}"
    return "default" if has_default else "unhandled"


@settings(max_examples=150, deadline=None)
@given(
    registrations=st.lists(REGISTRATION, min_size=2, max_size=10),
    has_default=st.booleans(),
    events=st.lists(st.tuples(st.integers(0, 20), st.one_of(INT_TYPES, STR_TYPES)), max_size=20),
)
def test_routing_matches_the_reference_model(
    registrations: list[tuple[str, Any]], has_default: bool, events: list[tuple[int, Any]]
) -> None:
    # One registration per spec, as multiple=False requires: keep the first of each.
    unique: list[tuple[str, Any]] = []
    for kind, spec in registrations:
        if kind == "filter" or (kind, spec) not in unique:
            unique.append((kind, spec))

    async def scenario() -> list[str]:
        nexus = AsyncEventNexus()
        seen: list[str] = []

        def recorder(label: str, result: Any = None) -> Any:
            return lambda event, queue: seen.append(label) or result

        for index, (kind, spec) in enumerate(unique):
            if kind == "filter":
                nexus.add_filter(
                    lambda event, queue, s=spec, i=index: (event.id in s) and not seen.append(f"filter{i}")
                )
            else:
                nexus.add_handler(spec, recorder(f"handler{index}"))
        if has_default:
            nexus.add_handler(-1, recorder("default"))
        nexus.on_error(
            lambda exc, subject: seen.append(
                "unhandled" if isinstance(exc, errors.UnhandledEvent) else repr(exc)
            )
        )
        async with nexus:
            for event_id, event_type in events:
                await nexus.ingest(Event(event_id, event_type))
            await asyncio.wait_for(nexus.join(), 5)
        return seen

    seen = asyncio.run(scenario())
    expected = [reference(unique, has_default, Event(i, t)) for i, t in events]
    assert seen == expected
