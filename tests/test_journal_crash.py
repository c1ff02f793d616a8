"""Crash tests of the journal with real processes: SIGKILL at random moments, five times over.

The daemon is tests/daemons/journaled.py. What it accepted (its ``await ingest()``
returned) or read from a file must be handled at least once in the end; an event is
handled twice only if it was handled and not yet let go of at a kill (in flight). The
counts are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KILLS = 5
TOTAL = 20_000
PRODUCERS = 16  # the daemon's: each holds at most one id it has not yet written down
QUEUE = 1000  # the daemon's maxsize


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a kill may cut the last one short)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


async def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.daemons.journaled", *args], cwd=ROOT, env=env)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("level", ["normal", "full"])
async def test_every_accepted_event_is_handled_after_five_kills(tmp_path: Path, level: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    journal, accepted, handled = tmp_path / "events.db", tmp_path / "accepted", tmp_path / "handled"
    first = 0
    for round_ in range(KILLS):
        # A random moment within this round's share of the events; the last round takes
        # the rest in, and is killed a moment later, while it handles them.
        last = first + TOTAL - len(lines(accepted))
        low, high = round_ * TOTAL // KILLS + 200, (round_ + 1) * TOTAL // KILLS
        target = rng.randint(low, high) if round_ < KILLS - 1 else TOTAL
        daemon = start("events", str(journal), str(accepted), str(handled), str(first), str(last), level)
        try:
            await until(lambda t=target, d=daemon: len(lines(accepted)) >= t or d.poll() is not None)
            assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
            if round_ == KILLS - 1:
                await asyncio.sleep(rng.uniform(0, 0.05))  # a random moment, not a wait for anything
        finally:
            kill(daemon)
        # Ids a producer held at the kill may be in the journal without being written down:
        # new ids start past them, so that an id is never ingested twice.
        first = max(int(n) for n in lines(accepted)) + PRODUCERS + 1
    # Restarted with no new events: it handles what the journal kept.
    daemon = start("events", str(journal), str(accepted), str(handled), str(first), str(first), level)
    try:
        wanted = {int(n) for n in lines(accepted)}
        await until(lambda: wanted <= {int(n) for n in lines(handled)})
    finally:
        kill(daemon)
    counts = Counter(int(n) for n in lines(handled))
    duplicates = sum(count - 1 for count in counts.values())
    print(
        f"\n{level}, seed {seed}: accepted {len(wanted)}, handled {len(counts)} distinct "
        f"({sum(counts.values())} times), duplicates {duplicates}"
    )
    assert len(wanted) == TOTAL
    assert not wanted - counts.keys()
    # A duplicate was handled and not yet let go of at a kill: at most what the loop
    # handles while one group of removals is written, far less than a queue's worth.
    assert duplicates <= KILLS * QUEUE, f"seed {seed}"


@pytest.mark.timeout(240)
async def test_every_line_of_a_growing_rotating_file_is_handled_after_five_kills(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    journal, log, handled = tmp_path / "events.db", tmp_path / "app.log", tmp_path / "handled"
    written = 0
    rotations = 0

    def write(count: int) -> None:
        nonlocal written
        with log.open("a") as out:
            for _ in range(count):
                out.write(f"line {written}\n")
                written += 1

    def rotate() -> None:
        nonlocal rotations
        rotations += 1
        log.rename(tmp_path / f"app.log.{rotations}")

    async def keep_writing(stop: asyncio.Event, rotating: bool) -> None:
        while not stop.is_set():
            write(20)
            if rotating and written % 2000 < 20:
                rotate()
            await asyncio.sleep(0.01)

    write(500)
    for round_ in range(KILLS):
        daemon = start("tail", str(journal), str(log), str(handled))
        stop = asyncio.Event()
        # The writer goes on at once: the daemon catches up with the files rotated while it
        # was down (found by inode and first bytes) while new lines and rotations come.
        writer = asyncio.create_task(keep_writing(stop, rotating=True))
        try:
            target = len(lines(handled)) + rng.randint(300, 2500)
            await until(lambda t=target, d=daemon: len(lines(handled)) >= t or d.poll() is not None)
            assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
        finally:
            kill(daemon)
            stop.set()
            await writer
        # While it is down: more lines, and a chain of rotations with lines in each file.
        for _ in range(round_ % 3):
            write(100)
            rotate()
        write(100)
    daemon = start("tail", str(journal), str(log), str(handled))
    try:
        await until(lambda: len(set(lines(handled))) >= written)
    finally:
        kill(daemon)
    counts = Counter(lines(handled))
    duplicates = sum(count - 1 for count in counts.values())
    print(
        f"\nseed {seed}: {written} lines written over {rotations} rotations, handled "
        f"{len(counts)} distinct ({sum(counts.values())} times), duplicates {duplicates}"
    )
    assert set(counts) == {f"line {n}" for n in range(written)}
    assert duplicates <= KILLS * QUEUE, f"seed {seed}"
