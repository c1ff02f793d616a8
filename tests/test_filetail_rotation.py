"""FileTail across chains of rotations, compression, copytruncate, dateext, olddir, and globs.

The files are rotated here by hand, the way logrotate does it (tests/test_filetail_logrotate.py
runs logrotate itself): renames, gzip, a copy and a truncation.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_filetail import append, until

from async_nexus import AsyncEventNexus, Event, errors
from async_nexus.checkpoints import Checkpoints, MemoryCheckpoints
from async_nexus.filetail import HEAD_BYTES, PATH_HEADER, FileTail
from async_nexus.testing import running

POLL = 0.01


def numbered(first: int, count: int) -> str:
    """``count`` lines with a time stamp, as in a log: files differ in their first bytes."""
    return "".join(f"2024-01-01T00:00:{n:06d} line {n}\n" for n in range(first, first + count))


def texts(first: int, count: int) -> list[str]:
    return numbered(first, count).splitlines()


async def run(tail: FileTail, wanted: int, store: Checkpoints | None) -> list[Event]:
    """Run a nexus on ``tail`` until it handled ``wanted`` lines and saved the last position."""
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[Event] = []
    nexus.add_handler("line", lambda event, queue: got.append(event))
    tail.checkpoints = store
    nexus.register(tail)
    async with running(nexus):
        await until(lambda: len(got) >= wanted, f"{wanted} lines, got {[e.payload for e in got]}")
        if store is not None and "*" not in tail.path:
            await until(lambda: _at_end(store, tail), "the last position saved")
    return got


def _at_end(store: Checkpoints, tail: FileTail) -> bool:
    value = store.load(tail.name)
    return value is not None and json.loads(value)["offset"] == os.path.getsize(tail.path)


async def lines(path: Path, wanted: int, store: Checkpoints | None, **options: Any) -> list[str]:
    options.setdefault("start", "beginning")
    return [e.payload for e in await run(FileTail(path, poll_interval=POLL, **options), wanted, store)]


def gzip_file(path: Path) -> Path:
    """Compress ``path`` to ``path.gz`` and remove it, as logrotate's ``compress`` does."""
    target = path.with_name(path.name + ".gz")
    with path.open("rb") as source, gzip.open(target, "wb") as out:
        shutil.copyfileobj(source, out)
    shutil.copystat(path, target)  # as gzip and logrotate do: the time it was last written
    path.unlink()
    return target


def rotate(log: Path, keep: int = 5, compress_from: int | None = None) -> None:
    """``create`` rotation with numbered names: app.log.N -> N+1, app.log -> .1, a new app.log."""
    for n in range(keep, 0, -1):
        for suffix in ("", ".gz"):
            old = log.with_name(f"{log.name}.{n}{suffix}")
            if old.exists():
                if n == keep:
                    old.unlink()
                else:
                    old.rename(log.with_name(f"{log.name}.{n + 1}{suffix}"))
    log.rename(log.with_name(f"{log.name}.1"))
    log.write_text("")
    if compress_from is not None:
        for n in range(compress_from, keep + 1):
            plain = log.with_name(f"{log.name}.{n}")
            if plain.exists():
                gzip_file(plain)


def following(path: Path, **options: Any) -> tuple[AsyncEventNexus, list[str]]:
    """A nexus that follows ``path`` from its beginning, and the lines its handler gets."""
    nexus = AsyncEventNexus(fail_fast=True)
    seen: list[str] = []
    nexus.add_handler("line", lambda event, queue: seen.append(event.payload))
    nexus.register(FileTail(path, start="beginning", poll_interval=0.05, **options))
    return nexus, seen


async def test_a_chain_of_rotations_while_down_is_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3))
    store = MemoryCheckpoints()
    first = await lines(log, 3, store)
    append(log, numbered(3, 2))  # the rest of the file it was reading
    rotate(log)
    append(log, numbered(5, 2))
    rotate(log)
    append(log, numbered(7, 2))
    rotate(log)
    append(log, numbered(9, 2))  # the live file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    second = await lines(log, 8, store)
    assert first + second == texts(0, 11)


async def test_the_file_it_read_is_found_compressed_and_read_from_the_saved_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3))
    store = MemoryCheckpoints()
    first = await lines(log, 3, store)
    append(log, numbered(3, 2))
    rotate(log)
    append(log, numbered(5, 2))
    rotate(log, compress_from=2)  # delaycompress: the newest rotated file stays plain
    append(log, numbered(7, 1))
    assert (tmp_path / "app.log.2.gz").exists() and (tmp_path / "app.log.1").exists()
    second = await lines(log, 5, store)
    assert first + second == texts(0, 8)
    position = json.loads(store.saved[FileTail(log).name])
    assert position["head"] == len(numbered(7, 1)) and position["inode"] == log.stat().st_ino


async def test_files_rotated_away_and_deleted_are_reported_once_and_the_rest_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 2))
    store = MemoryCheckpoints()
    first = await lines(log, 2, store)
    append(log, numbered(2, 1))  # lost with the file
    for n in range(3, 6):  # three rotations, two rotated files kept: the one it read goes
        rotate(log, keep=2)
        append(log, numbered(n, 1))
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        second = await lines(log, 3, store)
    assert first + second == texts(0, 2) + texts(3, 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    # The file lost (as it was named when read), and the files read instead.
    assert f"{log} (device" in warnings[0] and "may have been missed" in warnings[0]
    assert str(tmp_path / "app.log.1") in warnings[0] and str(tmp_path / "app.log.2") in warnings[0]


async def test_a_checkpoint_in_the_old_form_still_resumes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3))
    stat = log.stat()
    offset = len(numbered(0, 2))
    tail = FileTail(log, start="beginning", poll_interval=POLL)
    # What FileTail saved before it fingerprinted files: device, inode and offset.
    store = MemoryCheckpoints(
        {tail.name: json.dumps({"device": stat.st_dev, "inode": stat.st_ino, "offset": offset})}
    )
    log.rename(tmp_path / "app.log.1")  # rotated meanwhile: found by its inode
    log.write_text(numbered(3, 1))
    assert [e.payload for e in await run(tail, 2, store)] == texts(2, 2)
    position = json.loads(store.saved[tail.name])
    assert position["fingerprint"] and position["offset"] == len(numbered(3, 1))


async def test_copytruncate_while_down_reads_the_rest_from_the_copy_then_the_file_again(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3))
    store = MemoryCheckpoints()
    first = await lines(log, 3, store)
    inode = log.stat().st_ino
    append(log, numbered(3, 2))
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+") as file:
        file.truncate(0)
    # Written after the truncation, longer than the position: only the first bytes tell.
    append(log, numbered(5, 6))
    assert log.stat().st_ino == inode and log.stat().st_size > len(numbered(0, 3))
    second = await lines(log, 8, store)
    assert first + second == texts(0, 11)


async def test_copytruncate_while_running_reads_the_lines_left_in_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 2))
    nexus, seen = following(log)
    async with running(nexus):
        await until(lambda: len(seen) == 2, "the first lines")
        # Between two looks of the tail: lines, the copy, the truncation, new lines.
        with log.open("r+") as file:
            file.seek(0, os.SEEK_END)
            file.write(numbered(2, 2))
            file.flush()
            shutil.copyfile(log, tmp_path / "app.log.1")
            file.truncate(0)
            file.seek(0)
            file.write(numbered(4, 30))
        await until(lambda: len(seen) == 34, "every line")
    assert seen == texts(0, 34)


async def test_dateext_and_olddir_with_compression(tmp_path: Path) -> None:
    log, old = tmp_path / "app.log", tmp_path / "old"
    old.mkdir()
    log.write_text(numbered(0, 2))
    store = MemoryCheckpoints()
    first = await lines(log, 2, store, olddir=old)
    append(log, numbered(2, 1))
    log.rename(old / "app.log-20240101")
    log.write_text(numbered(3, 2))
    log.rename(old / "app.log-20240102")
    log.write_text(numbered(5, 1))
    log.rename(old / "app-20240103.log")  # dateext with "extension .log"
    log.write_text(numbered(6, 1))
    gzip_file(old / "app.log-20240101")
    gzip_file(old / "app.log-20240102")
    second = await lines(log, 5, store, olddir=old)
    assert first + second == texts(0, 7)


async def test_olddir_while_running_reads_the_file_moved_there_before_the_new_one(tmp_path: Path) -> None:
    log, old = tmp_path / "app.log", tmp_path / "old"
    old.mkdir()
    log.write_text(numbered(0, 1))
    nexus, seen = following(log, olddir=old)
    async with running(nexus):
        await until(lambda: len(seen) == 1, "the first line")
        append(log, numbered(1, 1))
        log.rename(old / "app.log.1")
        append(old / "app.log.1", numbered(2, 1))  # written before the program reopened its log
        log.write_text(numbered(3, 1))
        append(log, numbered(4, 1))
        # A second rotation, maybe between two looks, numbered as logrotate does.
        (old / "app.log.1").rename(old / "app.log.2")
        log.rename(old / "app.log.1")
        log.write_text(numbered(5, 1))
        await until(lambda: len(seen) == 6, f"every line, got {seen}")
    assert seen == texts(0, 6)


async def test_two_rotations_between_two_looks_lose_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1))
    nexus, seen = following(log)
    async with running(nexus):
        await until(lambda: len(seen) == 1, "the first line")
        append(log, numbered(1, 1))
        rotate(log)
        append(log, numbered(2, 1))
        rotate(log)  # the file in between is app.log.1 now
        append(log, numbered(3, 1))
        await until(lambda: len(seen) == 4, "every line")
    assert seen == texts(0, 4)


def test_the_fingerprint_covers_a_documented_number_of_bytes() -> None:
    assert HEAD_BYTES == 1024


async def test_a_glob_follows_each_file_with_its_own_checkpoint_and_path_header(tmp_path: Path) -> None:
    a, b, c = (str(tmp_path / name) for name in ("a.log", "b.log", "c.log"))
    Path(a).write_text("a1\n")
    Path(b).write_text("b1\n")
    (tmp_path / "notes.txt").write_text("not matched\n")
    store = MemoryCheckpoints()
    pattern = tmp_path / "*.log"
    tail = FileTail(pattern, start="beginning", poll_interval=POLL)
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[Event] = []
    nexus.add_handler("line", lambda event, queue: got.append(event))
    tail.checkpoints = store
    nexus.register(tail)

    def followed() -> list[str]:
        return list(json.loads(store.saved[tail.name])["files"])

    async with running(nexus):
        await until(lambda: len(got) == 2, "the lines of both files")
        Path(c).write_text("c1\n")  # appears later: read from its beginning
        append(Path(a), "a2\n")
        await until(lambda: len(got) == 4, "the new file and the appended line")
        # Gone: one deleted, one renamed away after a last line, read before it is dropped.
        Path(b).unlink()
        append(Path(c), "c2\n")
        Path(c).rename(tmp_path / "c.old")
        await until(lambda: followed() == [a], "b and c dropped")
    by_path = sorted((e.headers or {})[PATH_HEADER] + " " + e.payload for e in got)
    assert by_path == [f"{a} a1", f"{a} a2", f"{b} b1", f"{c} c1", f"{c} c2"]
    assert json.loads(store.saved[f"{tail.name}:{a}"])["offset"] == 6
    # Resumed: only what was appended meanwhile; a file there at the start without a
    # position begins at its end (start="end").
    append(Path(a), "a3\n")
    (tmp_path / "d.log").write_text("d1\n")
    again = await run(FileTail(pattern, poll_interval=POLL), 1, store)
    assert [e.payload for e in again] == ["a3"]


async def test_a_file_of_a_glob_is_followed_across_its_rotations(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 2))
    tail = FileTail(tmp_path / "*.log", start="beginning", poll_interval=POLL)
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[Event] = []
    nexus.add_handler("line", lambda event, queue: got.append(event))
    nexus.register(tail)
    async with running(nexus):
        await until(lambda: len(got) == 2, "the first lines")
        append(log, numbered(2, 1))  # read from the rotated file, under the path it had
        rotate(log)
        append(log, numbered(3, 1))
        rotate(log)  # twice between two looks, perhaps: app.log.2 is the file it read
        append(log, numbered(4, 2))
        await until(lambda: len(got) == 6, f"every line, got {[e.payload for e in got]}")
    assert [e.payload for e in got] == texts(0, 6)
    assert {(e.headers or {})[PATH_HEADER] for e in got} == {str(log)}


async def test_a_glob_follows_at_most_max_files_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.log").write_text(f"{name}\n")
    tail = FileTail(tmp_path / "*.log", start="beginning", poll_interval=POLL, max_files=2)
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        got = await run(tail, 2, None)
        (tmp_path / "a.log").unlink()
        got += await run(
            FileTail(tmp_path / "*.log", start="beginning", poll_interval=POLL, max_files=2), 2, None
        )
    assert [e.payload for e in got[:2]] == ["a", "b"]
    assert sorted(e.payload for e in got[2:]) == ["b", "c"]
    warnings = [r.getMessage() for r in caplog.records if "max_files" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "c.log") in warnings[0], warnings


async def test_a_file_left_out_by_max_files_is_followed_once_a_followed_one_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.log").write_text(f"{name}1\n")
    tail = FileTail(tmp_path / "*.log", start="beginning", poll_interval=POLL, max_files=2)
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[str] = []
    nexus.add_handler("line", lambda event, queue: got.append(event.payload))
    nexus.register(tail)
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        async with running(nexus):
            await until(lambda: sorted(got) == ["a1", "b1"], "the lines of the first two files")
            await until(lambda: any("max_files" in r.getMessage() for r in caplog.records), "the warning")
            append(tmp_path / "c.log", "c2\n")  # waits in the file left out
            (tmp_path / "a.log").unlink()
            await until(lambda: len(got) == 4, f"the lines of c.log, got {got}")
    assert got[2:] == ["c1", "c2"]
    warnings = [r.getMessage() for r in caplog.records if "max_files" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "c.log") in warnings[0], warnings


def test_max_files_must_be_a_positive_integer(tmp_path: Path) -> None:
    with pytest.raises(errors.BadCall, match="max_files must be a positive integer, got 0"):
        FileTail(tmp_path / "*.log", max_files=0)


async def test_files_rotated_within_one_clock_tick_are_ordered_by_their_numbers(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1))
    store = MemoryCheckpoints()
    first = await lines(log, 1, store)
    stamp = log.stat().st_mtime_ns
    append(log, numbered(1, 1))
    # logrotate's numbering, and the same time on every file: the numbers decide.
    rotate(log)
    append(log, numbered(2, 1))
    rotate(log)
    append(log, numbered(3, 1))
    for name in ("app.log.1", "app.log.2"):
        os.utime(tmp_path / name, ns=(stamp, stamp))
    assert first + await lines(log, 3, store) == texts(0, 4)


async def test_upward_numbers_are_recognised_from_the_files_written_apart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1))
    store = MemoryCheckpoints()
    first = await lines(log, 1, store)
    # Earlier files, written apart: the higher number is the newer.
    for n, stamp in ((1, 10**18), (2, 2 * 10**18)):
        older = tmp_path / f"app.log.{n}"
        older.write_text(f"old {n}\n")
        os.utime(older, ns=(stamp, stamp))
    append(log, numbered(1, 1))
    log.rename(tmp_path / "app.log.3")
    log.write_text(numbered(2, 1))
    log.rename(tmp_path / "app.log.4")
    log.write_text(numbered(3, 1))
    same = 3 * 10**18
    for name in ("app.log.3", "app.log.4"):
        os.utime(tmp_path / name, ns=(same, same))
    assert first + await lines(log, 3, store) == texts(0, 4)


async def test_files_named_like_the_log_without_a_number_or_date_are_not_rotations(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1))
    store = MemoryCheckpoints()
    first = await lines(log, 1, store)
    append(log, numbered(1, 1))
    log.rename(tmp_path / "app.log.1")
    (tmp_path / "app.log.bak").write_text("a backup, not a rotation\n")
    (tmp_path / "app.log.swp").write_text("an editor's\n")
    log.write_text(numbered(2, 1))
    assert first + await lines(log, 2, store) == texts(0, 3)
