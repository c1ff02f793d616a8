"""FileTail: following a file like ``tail -F`` through a real nexus, and resuming where it was."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from async_nexus import AsyncEventNexus, Event, EventFactory, errors
from async_nexus.checkpoints import Checkpoints, MemoryCheckpoints
from async_nexus.filetail import PATH_HEADER, FileTail
from async_nexus.testing import running

POLL = 0.01


async def until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` is true, looking every 10 ms; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.01)


def tail_of(path: Path, **options: Any) -> FileTail:
    options.setdefault("poll_interval", POLL)
    return FileTail(path, **options)


def nexus_for(
    tail: FileTail, checkpoints: Checkpoints | None = None, **options: Any
) -> tuple[AsyncEventNexus, list[str]]:
    """A nexus pulling ``tail`` (which saves to ``checkpoints``), and the payloads it handles."""
    nexus = AsyncEventNexus(fail_fast=True, **options)
    seen: list[str] = []
    nexus.add_handler("line", lambda event, queue: seen.append(event.payload))
    tail.checkpoints = checkpoints  # what the nexus itself will do for every source
    nexus.register(tail)
    return nexus, seen


async def lines(tail: FileTail, wanted: int, checkpoints: Checkpoints | None = None) -> list[str]:
    """Run a nexus on ``tail`` until it handled ``wanted`` lines; wait for their position to be saved."""
    nexus, seen = nexus_for(tail, checkpoints)
    async with running(nexus):
        await until(lambda: len(seen) >= wanted, f"{wanted} lines, got {seen}")
        if checkpoints is not None:
            size = os.path.getsize(tail.path)
            await until(lambda: saved(checkpoints, tail.name)["offset"] == size, "the position saved")
    return seen


def saved(checkpoints: Checkpoints, name: str) -> dict[str, int]:
    value = checkpoints.load(name)
    return json.loads(value) if value is not None else {}


def append(path: Path, text: str) -> None:
    with path.open("a", newline="") as file:
        file.write(text)


def opened(path: Path) -> bool:
    """Whether this process (where the tail runs) holds ``path`` open: seen from the outside."""
    target = os.path.realpath(path)
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
        except OSError:
            continue  # closed since the folder was read
    return False


class Watched(FileTail):
    """A FileTail that says when it has begun: when it has looked at its file the first time."""

    began = False

    async def event_generator(self) -> AsyncIterator[Event]:
        self.began = True
        # The first step of the inner generator looks at the file before it waits, and this
        # one is suspended only once it waits: a test that sees began sees that look done.
        async for event in super().event_generator():
            yield event


async def test_start_end_emits_only_lines_completed_after_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\nhalf")
    tail = tail_of(log)  # start="end" is the default
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        await until(lambda: opened(log), "the tail to open the file")
        append(log, " written\nnew\n")
        await until(lambda: len(seen) == 2, "two lines")
    assert seen == ["half written", "new"]
    assert not opened(log), "closing the tail closes its file"


async def test_start_beginning_emits_the_whole_file_then_what_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    tail = tail_of(log, start="beginning")
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        await until(lambda: len(seen) == 2, "the two lines already there")
        append(log, "c\n")
        await until(lambda: len(seen) == 3, "the appended line")
    assert seen == ["a", "b", "c"]


async def test_a_line_written_in_pieces_is_one_event(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    tail = tail_of(log, start="beginning")
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        append(log, "first\nhel")
        # "first" was read in the same chunk as "hel": the tail holds half a line now.
        await until(lambda: seen == ["first"], "the first line")
        append(log, "lo, wor")
        append(log, "ld\nlast\n")
        await until(lambda: len(seen) == 3, "three lines")
    assert seen == ["first", "hello, world", "last"]


async def test_rotation_by_rename_finishes_the_old_file_before_the_new_one(tmp_path: Path) -> None:
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_text("1\n2\n")
    tail = tail_of(log, start="beginning")
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        await until(lambda: len(seen) == 2, "the first lines")
        with log.open("a") as writer:  # the logger, which writes to its old file until it reopens
            writer.write("3\n")
            writer.flush()
            log.rename(rotated)
            writer.write("4")  # the old file ends without a line end
        log.write_text("5\n6\n")
        await until(lambda: len(seen) == 6, "every line of both files")
        append(log, "7\n")
        await until(lambda: len(seen) == 7, "a line appended to the new file")
    assert seen == ["1", "2", "3", "4", "5", "6", "7"]


async def test_copytruncate_reads_the_file_again_from_its_beginning(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\nthree\n")
    tail = tail_of(log, start="beginning")
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        await until(lambda: len(seen) == 3, "the first lines")
        shutil.copyfile(log, tmp_path / "app.log.1")
        with log.open("r+") as file:
            file.truncate(0)
        append(log, "four\n")
        await until(lambda: len(seen) == 4, "the line written after the truncation")
    assert seen == ["one", "two", "three", "four"]


async def test_a_file_that_does_not_exist_yet_is_waited_for_and_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail = Watched(log, poll_interval=POLL)  # start="end": everything in a file that appears later is new
    nexus, seen = nexus_for(tail)
    async with running(nexus):
        await until(lambda: tail.began, "the tail to look for the file")
        log.write_text("a\nb\n")
        await until(lambda: len(seen) == 2, "the lines of the new file")
    assert seen == ["a", "b"]


async def test_resume_with_memory_checkpoints_across_two_runs(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n3\n")
    store = MemoryCheckpoints()
    first = await lines(tail_of(log, start="beginning"), 3, store)
    append(log, "4\n5\n")  # written while nothing runs
    # start="end" would skip 4 and 5 and "beginning" repeat 1 to 3: the saved position wins.
    tail = tail_of(log, start="end")
    second = await lines(tail, 2, store)
    assert first + second == ["1", "2", "3", "4", "5"]
    stat = log.stat()
    position = saved(store, tail.name)
    assert (position["device"], position["inode"], position["offset"]) == (stat.st_dev, stat.st_ino, 10)


async def test_rotation_while_down_reads_the_rest_of_the_old_file_then_the_new_one(
    tmp_path: Path,
) -> None:
    log, rotated = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_text("1\n2\n")
    store = MemoryCheckpoints()
    first = await lines(tail_of(log, start="beginning"), 2, store)
    log.rename(rotated)
    append(rotated, "3\n4\n")
    log.write_text("5\n6\n")
    second = await lines(tail_of(log), 4, store)
    assert first + second == ["1", "2", "3", "4", "5", "6"]


async def test_old_file_gone_while_down_warns_and_reads_the_new_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n")
    store = MemoryCheckpoints()
    first = await lines(tail_of(log, start="beginning"), 2, store)
    # Made before the old file goes, so that it cannot get the old file's inode number.
    (tmp_path / "new").write_text("5\n6\n")
    os.replace(tmp_path / "new", log)
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        second = await lines(tail_of(log), 2, store)
    assert first + second == ["1", "2", "5", "6"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("may have been missed" in message and str(log) in message for message in warnings), warnings


async def test_a_file_truncated_while_down_is_read_from_its_beginning(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\nthree\n")
    store = MemoryCheckpoints()
    inode = log.stat().st_ino
    first = await lines(tail_of(log, start="beginning"), 3, store)
    log.write_text("new\n")  # the same file, made shorter than the saved position
    assert log.stat().st_ino == inode
    second = await lines(tail_of(log), 1, store)
    assert first + second == ["one", "two", "three", "new"]


async def test_a_saved_value_that_is_not_a_position_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n")
    tail = tail_of(log, start="beginning")
    store = MemoryCheckpoints({tail.name: "not json"})
    with caplog.at_level(logging.WARNING, logger="async_nexus"):
        assert await lines(tail, 2, store) == ["1", "2"]
    assert any("not json" in record.getMessage() for record in caplog.records)
    assert saved(store, tail.name)["offset"] == 4


async def test_crlf_line_ends_are_stripped_and_a_lone_cr_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\r\nb\r\nc\rd\n")
    assert await lines(tail_of(log, start="beginning"), 3) == ["a", "b", "c\rd"]


async def test_lines_are_decoded_and_bad_bytes_replaced(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes("café\n".encode() + b"\xff\n")
    assert await lines(tail_of(log, start="beginning"), 2) == ["café", "\ufffd"]


async def test_event_type_and_ids_come_from_the_options(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a\nb\n")
    factory = EventFactory()
    factory.current_event_id = 100
    tail = FileTail(log, event_type="audit", start="beginning", poll_interval=POLL, event_factory=factory)
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[Event] = []
    nexus.add_handler("audit", lambda event, queue: got.append(event))
    nexus.register(tail)
    async with running(nexus):
        await until(lambda: len(got) == 2, "two events")
    assert [(e.id, e.type, e.payload) for e in got] == [(100, "audit", "a"), (101, "audit", "b")]


def test_bad_arguments_are_bad_calls(tmp_path: Path) -> None:
    with pytest.raises(errors.BadCall, match="'end' or 'beginning', got 'middle'"):
        FileTail(tmp_path / "app.log", start="middle")  # type: ignore[arg-type]
    with pytest.raises(errors.BadCall, match="poll_interval"):
        FileTail(tmp_path / "app.log", poll_interval=0)
    with pytest.raises(errors.BadCall, match="encoding"):
        FileTail(tmp_path / "app.log", encoding="no-such-encoding")
    for encoding in ("utf-16", "utf-16-be", "utf-32"):  # a line end of several bytes
        with pytest.raises(errors.BadCall, match=f"single byte .*{encoding}.* 'utf-8'"):
            FileTail(tmp_path / "app.log", encoding=encoding)
    for encoding in ("utf-8", "utf-8-sig", "latin-1", "ascii", "cp1252"):
        assert FileTail(tmp_path / "app.log", encoding=encoding).encoding == encoding


def test_the_default_name_is_stable_per_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"FileTail({tmp_path / 'logs' / 'app.log'})"
    assert FileTail("logs/app.log").name == expected
    assert FileTail(Path("logs") / "app.log").name == expected
    assert FileTail(tmp_path / "other.log").name != expected


async def test_a_name_set_by_the_user_keys_the_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n")
    store = MemoryCheckpoints()
    tail = tail_of(log, start="beginning")
    tail.name = "app"
    first = await lines(tail, 2, store)
    assert list(store.saved) == ["app"]
    append(log, "3\n")
    other = tail_of(log, start="beginning")  # another name: no saved position, reads it all
    assert await lines(other, 3, store) == ["1", "2", "3"]
    again = tail_of(log, start="beginning")
    again.name = "app"
    assert first + await lines(again, 1, store) == ["1", "2", "3"]


async def test_the_saved_position_never_runs_ahead_of_the_events_accepted(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    content = b"1\n2\n3\n4\n5\n"
    log.write_bytes(content)
    tail = tail_of(log, start="beginning")
    release = asyncio.Event()
    seen: list[str] = []

    async def slow(event: Event, queue: Any) -> None:
        await release.wait()
        seen.append(event.payload)

    nexus = AsyncEventNexus(fail_fast=True, maxsize=1)
    nexus.add_handler("line", slow)
    ahead: list[str] = []

    class Checking(MemoryCheckpoints):
        def save(self, name: str, value: str) -> None:
            covered = content[: json.loads(value)["offset"]].count(b"\n")
            accepted = nexus.stats()["by_source"].get(name, 0)
            if covered > accepted:
                ahead.append(f"saved {value} past {covered} lines with {accepted} accepted")
            super().save(name, value)

    store = Checking()
    tail.checkpoints = store
    nexus.register(tail)
    async with running(nexus):
        # One line in the handler, one in the queue, one held by the pump waiting for room.
        await until(lambda: saved(store, tail.name).get("offset") == 4, "the position of line 2")
        assert nexus.stats()["by_source"][tail.name] == 2
        release.set()
        await until(lambda: len(seen) == 5, "every line")
        await until(lambda: saved(store, tail.name)["offset"] == len(content), "the last position")
    assert ahead == []
    assert seen == ["1", "2", "3", "4", "5"]


def batch_nexus(
    tail: FileTail, checkpoints: Checkpoints | None = None
) -> tuple[AsyncEventNexus, list[Event]]:
    """A nexus pulling ``tail`` (which saves to ``checkpoints``), and the events it handles."""
    nexus = AsyncEventNexus(fail_fast=True)
    got: list[Event] = []
    nexus.add_handler("line", lambda event, queue: got.append(event))
    tail.checkpoints = checkpoints
    nexus.register(tail)
    return nexus, got


class Recording(MemoryCheckpoints):
    """Checkpoints that keep every offset saved, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets: list[int] = []

    def save(self, name: str, value: str) -> None:
        self.offsets.append(json.loads(value)["offset"])
        super().save(name, value)


async def test_batch_emits_lists_of_at_most_that_many_lines_in_order(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"{n}\n" for n in range(1, 11)))
    nexus, got = batch_nexus(tail_of(log, start="beginning", batch=3))
    async with running(nexus):
        await until(lambda: sum(len(e.payload) for e in got) == 10, "ten lines")
        append(log, "11\n12\n")
        await until(lambda: sum(len(e.payload) for e in got) == 12, "twelve lines")
    # The first read holds the ten lines: batches of three and the rest; then what came later.
    assert [e.payload for e in got] == [
        ["1", "2", "3"], ["4", "5", "6"], ["7", "8", "9"], ["10"], ["11", "12"],
    ]  # fmt: skip
    assert {e.headers[PATH_HEADER] for e in got} == {str(log)}
    assert len({e.id for e in got}) == 5


async def test_batch_saves_the_position_after_each_batch(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"a\r\nb\nc\r\nd\ne\n")  # lines of 3, 2, 3, 2 and 2 bytes
    store = Recording()
    tail = tail_of(log, start="beginning", batch=2)
    nexus, got = batch_nexus(tail, store)
    async with running(nexus):
        await until(lambda: store.offsets[-1:] == [12], "the position after the last batch")
    assert [e.payload for e in got] == [["a", "b"], ["c", "d"], ["e"]]
    assert store.offsets == [5, 10, 12]
    # A new tail goes on after the last batch: nothing again, nothing skipped.
    append(log, "f\ng\n")
    again = tail_of(log, start="beginning", batch=2)
    nexus, got = batch_nexus(again, store)
    async with running(nexus):
        await until(lambda: store.offsets[-1:] == [16], "the position after the new lines")
    assert [e.payload for e in got] == [["f", "g"]]


async def test_batch_ends_a_rotated_file_with_its_unterminated_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("1\n2\n3")  # the last line never got its line end
    store = Recording()
    tail = tail_of(log, start="beginning", batch=5)
    nexus, got = batch_nexus(tail, store)
    async with running(nexus):
        await until(lambda: [e.payload for e in got] == [["1", "2"]], "the complete lines")
        log.rename(tmp_path / "app.log.1")
        log.write_text("4\n")
        await until(lambda: len(got) == 3, "the rest of the old file and the new one")
        await until(lambda: saved(store, tail.name).get("offset") == 2, "the position in the new file")
    assert [e.payload for e in got] == [["1", "2"], ["3"], ["4"]]
    assert store.offsets == [4, 5, 2]


async def test_batches_go_through_a_journal_and_resume_from_it(tmp_path: Path) -> None:
    from async_nexus.journal import SqliteJournal

    log = tmp_path / "app.log"
    log.write_text("1\n2\n3\n")
    handled: list[list[str]] = []
    for more, total in (("", 3), ("4\n5\n", 5)):
        append(log, more)
        nexus = AsyncEventNexus(fail_fast=True, journal=SqliteJournal(tmp_path / "events.db"))
        nexus.add_handler("line", lambda event, queue: handled.append(event.payload))
        nexus.register(tail_of(log, start="beginning", batch=2))
        async with running(nexus):
            await until(lambda t=total: sum(map(len, handled)) == t, "every line")
    assert handled == [["1", "2"], ["3"], ["4", "5"]]


def test_batch_must_be_a_positive_integer_or_none(tmp_path: Path) -> None:
    for bad in (0, -1, True, 2.5, "10"):
        with pytest.raises(errors.BadCall, match=f"batch must be a positive integer .*got {bad!r}"):
            FileTail(tmp_path / "app.log", batch=bad)  # type: ignore[arg-type]
    assert FileTail(tmp_path / "app.log").batch is None
    assert FileTail(tmp_path / "app.log", batch=500).batch == 500
