"""FileTail against the real ``logrotate``, in every rotation mode, with a daemon killed at random.

A writer appends numbered lines to ``app.log`` at a steady rate, reopening the path when it
names another file (as :class:`logging.handlers.WatchedFileHandler` does). The daemon
(tests/daemons/journaled.py: a nexus with a journal and a FileTail) appends every line it
handles to a file. ``logrotate -f -s STATE CONF`` rotates the log while the daemon runs and
while it is down (several times, compressing in most modes), and the daemon is killed with
SIGKILL at random moments. In the end every line written must have been handled; a line is
handled twice only if it was handled and its group of the journal not yet committed at a
kill, so the duplicates form at most one run of consecutive lines per kill.

For copytruncate the writer pauses while logrotate runs: a line written between logrotate's
copy and its truncation is in neither file (logrotate's own window, see the sources guide).

The counts are printed (``pytest -s``) for each mode: lines written, handled, lost, duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each mode's directives, besides ``rotate 100`` and ``missingok``; {old} is the olddir.
MODES = {
    "create": "create",
    "compress": "create\n    compress",
    "delaycompress": "create\n    compress\n    delaycompress",
    "copytruncate": "copytruncate\n    compress\n    delaycompress",
    "dateext": "create\n    dateext\n    dateformat -%Y%m%d-%H%M%S\n    compress\n    delaycompress",
    "olddir": "create\n    olddir {old}\n    compress",
}


def require_logrotate() -> str:
    found = shutil.which("logrotate") or next(
        (p for p in ("/usr/sbin/logrotate", "/sbin/logrotate") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.skip("logrotate is not installed: apt-get install logrotate")
    return found


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a kill may cut the last one short)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Wait until ``condition()``, looking every 20 ms; whether it came true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Writer:
    """Appends ``line N`` lines to a log at a steady rate, like a program's logger.

    Like :class:`logging.handlers.WatchedFileHandler`, it writes to the file the path names:
    before each write it reopens the path if that names another file now. Under copytruncate
    the path keeps naming the same file, written on at its new end.
    """

    def __init__(self, log: Path, per_tick: int = 5, tick: float = 0.005) -> None:
        self.log = log
        self.written = 0
        self.per_tick = per_tick
        self.tick = tick
        self.running = asyncio.Event()
        self.running.set()
        self.fd = -1
        self.identity = (0, 0)

    def _reopen_if_rotated(self) -> None:
        try:
            stat = os.stat(self.log)
            if (stat.st_dev, stat.st_ino) == self.identity:
                return
        except FileNotFoundError:
            pass
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stat = os.fstat(self.fd)
        self.identity = (stat.st_dev, stat.st_ino)

    def write(self, count: int) -> None:
        self._reopen_if_rotated()
        text = "".join(f"line {n}\n" for n in range(self.written, self.written + count))
        os.write(self.fd, text.encode())
        self.written += count

    async def run(self) -> None:
        while True:
            await self.running.wait()
            self.write(self.per_tick)
            await asyncio.sleep(self.tick)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        self.running.clear()
        await asyncio.sleep(0)  # a write in progress is one call: it is done
        try:
            yield
        finally:
            self.running.set()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


@dataclass
class Rotator:
    """Runs the real logrotate on the log, forced, with a state file of its own."""

    binary: str
    conf: Path
    state: Path
    mode: str
    writer: Writer
    rotations: int = 0
    last: float = 0.0

    async def rotate(self) -> None:
        if self.mode == "dateext":
            # A name per second: the next rotation waits for the clock's next second, and a
            # bit more, as time(), which logrotate names the file after, lags by a clock tick.
            await until(lambda: int(time.time() - 0.05) > int(self.last), timeout=5)
        async with self.writer.paused() if self.mode == "copytruncate" else contextlib.nullcontext():
            process = await asyncio.create_subprocess_exec(
                self.binary, "-f", "-s", str(self.state), str(self.conf),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            output, _ = await process.communicate()
            assert process.returncode == 0, f"logrotate failed: {output.decode()}"
        self.last = time.time()
        self.rotations += 1


def start(
    journal: Path, log: Path, handled: Path, olddir: Path | None, slow: bool, batch: bool
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mode = ("slow-" if slow else "") + ("batch-" if batch else "") + "tail"
    args = [sys.executable, "-m", "tests.daemons.journaled", mode, str(journal), str(log), str(handled)]
    if olddir is not None:
        args.append(str(olddir))
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def runs(numbers: list[int]) -> int:
    """How many runs of consecutive numbers ``numbers`` (sorted) has."""
    return sum(1 for i, n in enumerate(numbers) if i == 0 or numbers[i - 1] != n - 1)


async def crash_scenario(
    tmp_path: Path, mode: str, *, kills: int, down_rotations: int, slow: bool = False, batch: bool = False
) -> str:
    """Rotate in ``mode`` while the daemon runs and while it is down; kill it ``kills`` times.

    A ``slow`` daemon takes at least 1 ms a line, so that it catches up with what was written
    while it was down for a while: it is then killed at a random line of that backlog, and
    the log is rotated right then, while it reads the files rotated meanwhile. A ``batch``
    daemon's tail emits batches of up to ten lines.
    """
    binary = require_logrotate()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log, handled, journal = tmp_path / "app.log", tmp_path / "handled", tmp_path / "events.db"
    olddir = tmp_path / "old" if mode == "olddir" else None
    if olddir is not None:
        olddir.mkdir()
    conf, state = tmp_path / "logrotate.conf", tmp_path / "logrotate.state"
    directives = MODES[mode].format(old=olddir)
    conf.write_text(f"{log} {{\n    rotate 100\n    missingok\n    {directives}\n}}\n")
    writer = Writer(log, per_tick=1 if slow else 5)
    writer.write(10)
    rotator = Rotator(binary, conf, state, mode, writer)
    writing = asyncio.create_task(writer.run())
    try:
        for _ in range(kills):
            daemon = start(journal, log, handled, olddir, slow, batch)
            try:
                # Once it reads (a kill before its first checkpoint would test nothing): at a
                # random line of its backlog, or a random moment, a rotation, then a kill.
                before = len(lines(handled))
                backlog = writer.written - len(set(lines(handled)))
                target = before + rng.randint(1, max(1, backlog))
                assert await until(lambda t=target: len(lines(handled)) >= t), "the daemon handles nothing"
                if not slow:
                    await asyncio.sleep(rng.uniform(0.2, 0.8))  # a random moment, not a wait for anything
                await rotator.rotate()
                await asyncio.sleep(rng.uniform(0.0, 0.6))
                assert daemon.poll() is None, f"the daemon exited with {daemon.returncode}"
            finally:
                kill(daemon)
            for _ in range(down_rotations):  # while it is down, with lines written in between
                target = writer.written + 100
                await until(lambda t=target: writer.written >= t)
                await rotator.rotate()
        writing.cancel()
        writer.write(10)  # the last lines, after the last rotation
        daemon = start(journal, log, handled, olddir, slow, batch)
        try:
            wanted = {f"line {n}" for n in range(writer.written)}
            await until(lambda: wanted <= set(lines(handled)))
        finally:
            kill(daemon)
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        writer.close()
    counts = Counter(lines(handled))
    lost = sorted(int(line.split()[1]) for line in wanted - counts.keys())
    duplicated = sorted(int(line.split()[1]) for line, count in counts.items() if count > 1)
    extra = sum(count - 1 for count in counts.values())
    daemon_kind = (" (slow daemon)" if slow else "") + (" (batches)" if batch else "")
    report = (
        f"{mode}{daemon_kind}: {writer.written} lines written, {rotator.rotations} rotations, {kills} kills; "
        f"handled {len(counts)} distinct ({sum(counts.values())} times), lost {len(lost)}, "
        f"duplicated {extra} (in {runs(duplicated)} runs); seed {seed}"
    )
    print(f"\n{report}")
    assert not lost, f"{report}: lost {lost[:20]}..."
    assert set(counts) == wanted, f"{report}: lines never written were handled"
    # Duplicates come from the group each kill left uncommitted: one run of lines per kill.
    assert runs(duplicated) <= kills, f"{report}: duplicates {duplicated[:50]}"
    return report


async def test_rotations_while_down_with_compression_lose_nothing(tmp_path: Path) -> None:
    # The quick one for every Python: one kill, three rotations while down.
    await crash_scenario(tmp_path, "delaycompress", kills=1, down_rotations=3)


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", list(MODES))
async def test_every_line_survives_logrotate_and_kills(tmp_path: Path, mode: str) -> None:
    await crash_scenario(tmp_path, mode, kills=3, down_rotations=2, slow=True)


@pytest.mark.fault
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["compress", "copytruncate"])
async def test_batches_survive_logrotate_and_kills(tmp_path: Path, mode: str) -> None:
    # A batch's position is saved once the whole batch is taken: a kill repeats one, never skips.
    await crash_scenario(tmp_path, mode, kills=3, down_rotations=2, slow=True, batch=True)
