"""The dispatch loop shares the event loop while a backlog drains (DESIGN.md, "Concurrency").

It yields at least every 10 ms of dispatching, so the program's other tasks, the nexus's own
timers and the journal's group commits get turns in the middle of a long drain, not only
after it. Nothing here times anything for speed: each test counts what happened *while*
the backlog was still being handled (some of it handled, not all), with bounds far below
what a loop that yields every 10 ms gives, and far above the nothing a loop that never
yields gives. Every wait has a timeout.

The figures behind these bounds come from ``python -m benchmarks.fairness``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, Timer

ROOT = Path(__file__).resolve().parent.parent

BACKLOG = 300
WORK = 0.001  # each backlog event holds the loop this long: the drain takes at least 300 ms
#: A loop that yields every 10 ms gives another task about one turn per 10 ms of a drain of
#: at least 300 ms: some 30 turns, more on a slow machine (each event then takes longer). A
#: third of that is the bound; a loop that never yields gives none.
TURNS = BACKLOG // 30


def blocking_handler(kind: str, handled: list[int]) -> Callable[[Event, Any], Any]:
    """A handler of ``kind`` ("sync" or "async") that holds the loop for 1 ms and counts."""

    def handle(event: Event, queue: Any) -> None:
        time.sleep(WORK)  # the thread sleeps: nothing else of this event loop runs meanwhile
        handled[0] += 1

    async def handle_async(event: Event, queue: Any) -> None:
        time.sleep(WORK)  # no await anywhere: the coroutine never suspends
        handled[0] += 1

    return handle if kind == "sync" else handle_async


async def drain(nexus: AsyncEventNexus) -> None:
    """Queue the backlog at once (no await in between) and wait until it has been handled."""
    for number in range(BACKLOG):
        nexus.ingest_nowait(Event(number, "work", 0, None))
    await asyncio.wait_for(nexus.join(), timeout=30)


@pytest.mark.timeout(60)
async def test_a_task_woken_by_a_timer_runs_at_every_yield() -> None:
    """A task asleep on a timer gets its turn at each yield, not at every second one.

    Its timer is due long before the loop's budget is spent, so when the loop yields the
    task is woken: through a callback in one turn of the event loop, its own step in the
    next. A yield that gives fewer turns lets the loop dispatch a whole budget's worth of
    events more before the task runs. Counted in events, not in time: a loaded machine
    makes each event slower and the count between two ticks smaller, never larger.
    """
    handled = [0]
    nexus = AsyncEventNexus(maxsize=0)
    nexus.add_handler("work", blocking_handler("sync", handled))
    between: list[int] = []  # events handled between two consecutive ticks, during the drain

    async def ticker() -> None:
        last = handled[0]
        while handled[0] < BACKLOG:
            await asyncio.sleep(WORK)
            if 0 < last and handled[0] < BACKLOG:
                between.append(handled[0] - last)
            last = handled[0]

    running = nexus.start()
    ticking = asyncio.create_task(ticker())
    try:
        await drain(nexus)
        await asyncio.wait_for(ticking, timeout=10)
    finally:
        nexus.stop()
        await asyncio.wait_for(running, timeout=10)
    per_budget = 0.010 / WORK  # at most 10 events of 1 ms fit in the loop's 10 ms budget
    assert len(between) >= TURNS, between
    assert max(between) <= 1.5 * per_budget + 1, between


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_other_tasks_of_the_program_run_while_a_backlog_drains(kind: str) -> None:
    handled = [0]
    nexus = AsyncEventNexus(maxsize=0)
    nexus.add_handler("work", blocking_handler(kind, handled))
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while handled[0] < BACKLOG:
            if handled[0]:  # some handled, not all: the drain is under way
                turns += 1
            await asyncio.sleep(0)

    running = nexus.start()
    other = asyncio.create_task(other_task())
    try:
        await drain(nexus)
        await asyncio.wait_for(other, timeout=10)
    finally:
        other.cancel()
        nexus.stop()
        await asyncio.wait_for(asyncio.gather(other, running, return_exceptions=True), timeout=20)
    assert handled[0] == BACKLOG
    assert turns >= TURNS, (
        f"another task ran {turns} times while {BACKLOG} events of a {kind} handler that holds "
        f"the loop for {WORK * 1000:g} ms drained; a loop that yields every 10 ms gives it about "
        f"{BACKLOG // 10}"
    )


class CountingTimer(Timer):
    """A timer that notes how much of the backlog was handled each time it emitted."""

    def __init__(self, interval: float, handled: list[int], **options: Any) -> None:
        super().__init__(interval, **options)
        self.handled = handled
        self.seen: list[int] = []

    def create_event(self, value: int) -> Event:
        # When the timer makes its event, not when the loop dispatches it: that is behind
        # the backlog (same priority), whatever the loop does.
        self.seen.append(self.handled[0])
        return super().create_event(value)


@pytest.mark.timeout(60)
async def test_a_timer_of_the_nexus_keeps_emitting_while_a_backlog_drains() -> None:
    handled = [0]
    nexus = AsyncEventNexus(maxsize=0)
    nexus.add_handler("work", blocking_handler("sync", handled))
    nexus.add_handler("tick", lambda event, queue: None)
    # Every 20 ms: some 15 emissions over a drain of at least 300 ms when the loop yields every
    # 10 ms; three is the bound. A loop that never yields lets the timer emit none.
    timer = CountingTimer(0.02, handled, event_type="tick", type=Timer.ONGOING)
    nexus.register(timer)
    running = nexus.start()
    try:
        await drain(nexus)
    finally:
        nexus.stop()
        await asyncio.wait_for(running, timeout=20)
    during = [seen for seen in timer.seen if 0 < seen < BACKLOG]
    assert len(during) >= 3, (
        f"the timer emitted {len(during)} times while the backlog drained "
        f"(it had handled this many of the {BACKLOG} events at each emission: {timer.seen})"
    )


# -- a FileTail with a journal, killed while it drains a backlog ---------------------------

LINES = 1500
KILLS = 2
#: Lines the daemon handles in a run before it is killed. Today's loop dispatches what the
#: tail queued in one go (its ingest hands over every 512 events) without a turn for the
#: journal, so nothing it handles in a run's first 300 lines is let go of on disk.
BEFORE_KILL = 300
#: A line is handled again after a restart when it was handled and its removal from the
#: journal was not yet committed at the kill. The journal commits what is staged in one group
#: as soon as the loop gets a turn (a callback scheduled with call_soon at the first removal;
#: at synchronous=normal the loop commits it there and then), so when the loop yields every
#: 10 ms of dispatching, what a kill finds uncommitted is the removals of the slice of
#: dispatching under way, and at most of the one before it: "the last group or two". Each line
#: takes at least 1 ms here, so a slice holds about 11 lines, two about 22. The tail's saved
#: position lags one line behind the line it staged last, so each restart reads that line once
#: more. 50 a kill leaves room for a loop that looks at its clock every few events rather than
#: after each; today's loop gives about BEFORE_KILL a kill.
DUPLICATES_PER_KILL = 50


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a kill may cut the last one short)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` is true, looking every 20 ms; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.02)


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.daemons.journaled", *args], cwd=ROOT, env=env)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


@pytest.mark.timeout(240)
async def test_a_daemon_killed_while_it_drains_handles_again_only_the_last_groups(tmp_path: Path) -> None:
    journal, log, handled = tmp_path / "events.db", tmp_path / "app.log", tmp_path / "handled"
    log.write_text("".join(f"line {n}\n" for n in range(LINES)))
    daemon_args = ("slow-tail", str(journal), str(log), str(handled))
    kills: list[int] = []  # how many times lines had been handled at each kill
    for _ in range(KILLS):
        target = len(lines(handled)) + BEFORE_KILL
        daemon = start(*daemon_args)
        try:
            await until(
                lambda t=target, d=daemon: len(lines(handled)) >= t or d.poll() is not None,
                f"{BEFORE_KILL} more lines handled",
            )
            assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
        finally:
            kill(daemon)
        kills.append(len(lines(handled)))
    daemon = start(*daemon_args)
    try:
        await until(lambda: len(set(lines(handled))) >= LINES, "every line handled after the restarts")
    finally:
        kill(daemon)
    counts = Counter(lines(handled))
    duplicates = sum(count - 1 for count in counts.values())
    print(f"\n{LINES} lines, handled {sum(counts.values())} times at the end, {kills} at the kills")
    lost = {f"line {n}" for n in range(LINES)} - counts.keys()
    assert not lost, f"{len(lost)} lines were never handled, {sorted(lost)[:10]} among them"
    assert duplicates <= KILLS * DUPLICATES_PER_KILL, (
        f"{duplicates} lines were handled again after {KILLS} kills (at most "
        f"{DUPLICATES_PER_KILL} a kill: the last group or two): the journal committed no group "
        "while the loop drained"
    )
