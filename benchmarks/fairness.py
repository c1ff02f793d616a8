"""Fairness: does the dispatch loop let the rest of the program run while a backlog drains?

``python -m benchmarks.fairness [--quick]`` measures three things and prints a table:

* **Drain, sync handler.** 3,000 events are queued at once for a plain ``def`` handler that
  holds the event loop for 1 ms each. Meanwhile another task of the program ticks every
  50 ms (``await asyncio.sleep(0.05)``) and a ``Timer(0.05, type=Timer.ONGOING)`` of the same
  nexus fires. Reported: the drain's duration, the longest gap between the task's ticks and
  between the timer's emissions (when it *made* each event, not when the event was
  dispatched behind the backlog), and how long the timer's events waited to be handled.
* **Drain, async handler.** The same with an ``async def`` handler that never suspends.
* **FileTail crash.** A daemon (this module, run as ``python -m benchmarks.fairness daemon``)
  follows a file of 5,000 lines with a :class:`~async_nexus.filetail.FileTail` and a
  journal; its handler appends each line to a file and fsyncs it (at least 1 ms a line,
  whatever the disk). It is SIGKILLed 0.3, 0.8 and 1.5 s after it said it runs (one round
  each, fresh files), then started again on the same journal until every line was handled.
  Reported per round: lines handled before the kill, lines handled more than once, lines
  never handled (which must be none). A line is handled again after a restart when its
  removal from the journal had not been committed at the kill: the journal commits a group
  only when the event loop gets a turn.

Nothing here is a goal with a threshold: the figures are printed for the record (the docs'
"before" and "after" of the loop's time budget). The exit status is 1 only when something
broke: a line was lost, or a daemon died or never said it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from async_nexus import AsyncEventNexus, Event, Timer
from async_nexus.filetail import FileTail
from async_nexus.journal import SqliteJournal

ROOT = Path(__file__).resolve().parent.parent
#: Where the crash rounds keep their files: the checkout's file system, where a daemon's journal
#: and output would be, rather than a temporary directory that may be held in memory (where an
#: fsync costs nothing).
HOME = Path(__file__).resolve().parent / ".fairness"

TICK = 0.05  # the other task's and the timer's cadence
WORK = 0.001  # what each backlog event holds the loop for
SETTLE = 0.2  # the ticker and the timer run this long before the backlog arrives, and after it


@dataclass(frozen=True)
class Sizes:
    drain_events: int
    crash_lines: int
    kills: tuple[float, ...]  # seconds after the daemon said READY


FULL = Sizes(drain_events=3000, crash_lines=5000, kills=(0.3, 0.8, 1.5))
QUICK = Sizes(drain_events=300, crash_lines=600, kills=(0.3,))


# -- drain fairness ---------------------------------------------------------------------


class StampedTimer(Timer):
    """A timer that notes the loop time at which it made each event: when it *emitted*, which
    is what its cadence is; its events may be dispatched much later, behind a backlog."""

    def __init__(self, interval: float, **options: Any) -> None:
        super().__init__(interval, **options)
        self.emitted: list[float] = []

    def create_event(self, value: int) -> Event:
        self.emitted.append(asyncio.get_running_loop().time())
        return super().create_event(value)


@dataclass(frozen=True)
class Drain:
    kind: str
    events: int
    seconds: float  # from the backlog's arrival to its last event handled
    # "During the drain": from the first backlog event taken up to the last one handled.
    ticker_gap: float  # the longest gap between the other task's ticks over the drain
    timer_gap: float  # the longest gap between the timer's emissions over the drain
    timer_emitted: int  # emissions while the backlog was still being handled
    timer_handled: int  # timer events handled while the backlog was still being handled
    timer_wait: float  # the longest wait of a timer event between its emission and its handling


def longest_gap(stamps: Sequence[float], start: float, end: float) -> float:
    """The longest interval between consecutive ``stamps`` within the drain, ``[start, end]``.

    The drain's start counts as a stamp, so the time the program spent queueing the backlog
    before it (its own 3,000 calls) is not laid at the loop's door; the first stamp after
    ``end`` closes the last gap. A drain with no stamp inside it reports its whole silence.
    With no stamp after ``end`` at all, the silence runs to ``end``.
    """
    ordered = sorted(stamps)
    inside = [s for s in ordered if start < s < end]
    after = [s for s in ordered if s >= end]
    points = [start, *inside, after[0] if after else end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


async def drain(kind: Literal["sync", "async"], events: int) -> Drain:
    """Queue ``events`` events at once for a handler of ``kind`` that holds the loop for 1 ms."""
    loop = asyncio.get_running_loop()
    nexus = AsyncEventNexus(maxsize=0)  # the backlog is queued whole, never waited for
    began: list[float] = []  # when the first backlog event was taken up
    done: list[float] = []  # when each backlog event was handled
    timer_handled: list[tuple[int, float]] = []  # (count, when handled) of each timer event

    if kind == "sync":

        def handle(event: Event, queue: Any) -> None:
            if not began:
                began.append(loop.time())
            time.sleep(WORK)  # holds the loop: the thread sleeps, nothing else of this loop runs
            done.append(loop.time())

        nexus.add_handler("work", handle)
    else:

        async def handle_async(event: Event, queue: Any) -> None:
            if not began:
                began.append(loop.time())
            time.sleep(WORK)  # no await anywhere: the coroutine never suspends
            done.append(loop.time())

        nexus.add_handler("work", handle_async)

    timer = StampedTimer(TICK, event_type="tick", type=Timer.ONGOING)
    # The payload is the count, 1, 2, ...: the emission of count c is timer.emitted[c - 1].
    nexus.add_handler("tick", lambda event, queue: timer_handled.append((event.payload, loop.time())))
    nexus.register(timer)

    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(TICK)

    ticking = asyncio.create_task(ticker())
    running = nexus.start()
    try:
        await asyncio.sleep(SETTLE)  # the ticker and the timer find their cadence
        arrived = loop.time()
        for number in range(events):  # no await in between: one backlog, before the loop runs again
            nexus.ingest_nowait(Event(number, "work", 0, None))
        await asyncio.wait_for(nexus.join(), timeout=60 + events * WORK * 20)
        start, finished = began[0], done[-1]
        await asyncio.sleep(SETTLE)  # the first tick and emission after the drain close the last gap
    finally:
        ticking.cancel()
        nexus.stop()
        await asyncio.gather(ticking, running, return_exceptions=True)
    emitted = timer.emitted
    waits = [handled - emitted[count - 1] for count, handled in timer_handled]
    return Drain(
        kind=kind,
        events=events,
        seconds=finished - arrived,
        ticker_gap=longest_gap(ticks, start, finished),
        timer_gap=longest_gap(emitted, start, finished),
        timer_emitted=sum(start < at < finished for at in emitted),
        timer_handled=sum(start < handled < finished for _, handled in timer_handled),
        timer_wait=max(waits, default=0.0),
    )


# -- the FileTail crash -----------------------------------------------------------------


async def daemon(journal: str, log: str, handled_path: str) -> None:
    """The daemon of the crash rounds: tail ``log`` from its beginning, handle each line slowly."""
    nexus = AsyncEventNexus(journal=SqliteJournal(journal, synchronous="normal"))
    with open(handled_path, "a", buffering=1) as handled:

        def handle(event: Event, queue: Any) -> None:
            started = time.perf_counter()
            handled.write(f"{event.payload}\n")
            os.fsync(handled.fileno())
            # At least 1 ms a line, also on a disk (or tmpfs) where an fsync costs less.
            rest = WORK - (time.perf_counter() - started)
            if rest > 0:
                time.sleep(rest)

        nexus.add_handler("line", handle)
        nexus.register(FileTail(log, start="beginning", poll_interval=0.01))
        task = nexus.start()
        print("READY", flush=True)
        await task


@dataclass(frozen=True)
class Crash:
    kill_after: float
    lines: int
    before_kill: int  # lines handled before the kill
    duplicates: int  # handlings beyond the first, over both runs
    lost: int  # lines never handled
    restart_seconds: float  # from the restart until every line was handled


def _lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a kill may cut the last one short)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


def _start(journal: Path, log: Path, handled: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fairness", "daemon", str(journal), str(log), str(handled)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"READY":  # b"" if it died first
        process.kill()
        process.wait(10)
        raise RuntimeError(f"the daemon did not start (exit status {process.returncode})")
    return process


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def crash_round(kill_after: float, lines: int, timeout: float = 60.0) -> Crash:
    """One round in a fresh directory: run, SIGKILL ``kill_after`` s after READY, run to the end."""
    HOME.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="crash-", dir=HOME))
    try:
        journal, log, handled = directory / "events.db", directory / "app.log", directory / "handled"
        log.write_text("".join(f"line {n}\n" for n in range(lines)))
        first = _start(journal, log, handled)
        try:
            time.sleep(kill_after)  # a moment, not a wait for anything: the kill is the point
        finally:
            _kill(first)
        before_kill = len(_lines(handled))
        restarted = time.monotonic()
        second = _start(journal, log, handled)
        try:
            deadline = restarted + timeout
            while len(set(_lines(handled))) < lines and time.monotonic() < deadline:
                if second.poll() is not None:
                    raise RuntimeError(f"the restarted daemon exited with {second.returncode}")
                time.sleep(0.02)
            restart_seconds = time.monotonic() - restarted
        finally:
            _kill(second)
        counts = Counter(_lines(handled))
        return Crash(
            kill_after=kill_after,
            lines=lines,
            before_kill=before_kill,
            duplicates=sum(count - 1 for count in counts.values()),
            lost=len({f"line {n}" for n in range(lines)} - counts.keys()),
            restart_seconds=restart_seconds,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        try:
            HOME.rmdir()  # only if no other run left anything in it
        except OSError:
            pass


# -- the report -------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def print_drains(drains: Sequence[Drain]) -> None:
    events = drains[0].events
    print(
        f"\nDrain fairness: {events:,} events queued at once, each handled in {_ms(WORK)} (holding the "
        f"loop);\nanother task ticks every {_ms(TICK)}, a Timer(ONGOING) of the same nexus every {_ms(TICK)}."
    )
    rows: list[tuple[str, ...]] = [
        ("", *(f"{d.kind} handler" for d in drains)),
        ("drain took", *(f"{d.seconds:.2f} s" for d in drains)),
        ("longest gap between the task's ticks", *(_ms(d.ticker_gap) for d in drains)),
        ("  late by (vs 50 ms)", *(_ms(max(0.0, d.ticker_gap - TICK)) for d in drains)),
        ("longest gap between the timer's emissions", *(_ms(d.timer_gap) for d in drains)),
        ("timer emissions during the drain", *(str(d.timer_emitted) for d in drains)),
        ("timer events handled during the drain", *(str(d.timer_handled) for d in drains)),
        ("longest wait of a timer event to be handled", *(_ms(d.timer_wait) for d in drains)),
    ]
    _table(rows)


def print_crashes(crashes: Sequence[Crash]) -> None:
    lines = crashes[0].lines
    print(
        f"\nFileTail crash: {lines:,} lines, journal at synchronous=normal, handler appends and fsyncs "
        f"each line\n(at least {_ms(WORK)} a line); SIGKILL after READY, restart on the same journal "
        "until every line is handled."
    )
    rows: list[tuple[str, ...]] = [
        ("killed after", "handled before kill", "duplicates", "lost", "restart to the end")
    ]
    rows += [
        (
            f"{c.kill_after:g} s",
            f"{c.before_kill:,}",
            f"{c.duplicates:,}",
            f"{c.lost:,}",
            f"{c.restart_seconds:.1f} s",
        )
        for c in crashes
    ]
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        first, *rest = row
        print(
            "  "
            + first.ljust(widths[0])
            + "".join("  " + cell.rjust(w) for cell, w in zip(rest, widths[1:], strict=True))
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["daemon"]:
        asyncio.run(daemon(*args[1:4]))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fairness", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one crash round: a smoke test")
    options = parser.parse_args(args)
    sizes = QUICK if options.quick else FULL
    started = time.monotonic()
    print(f"python -m benchmarks.fairness{' --quick' if options.quick else ''}", flush=True)
    drains = [asyncio.run(drain(kind, sizes.drain_events)) for kind in ("sync", "async")]
    print_drains(drains)
    crashes = [crash_round(kill_after, sizes.crash_lines) for kill_after in sizes.kills]
    print_crashes(crashes)
    print(f"\nTook {time.monotonic() - started:.0f} s.")
    lost = [c for c in crashes if c.lost]
    for c in lost:
        print(f"LOST: {c.lost:,} lines never handled in the round killed after {c.kill_after:g} s")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
