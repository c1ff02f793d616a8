"""AsyncEventNexus(journal=...): what a nexus accepts is on disk until its handling is over.

Real SQLite files; the crash tests with real processes are in test_journal_crash.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import Hook

from async_nexus import AsyncEventNexus, Event, NamedEvent, errors
from async_nexus.codec import EventCodec
from async_nexus.filetail import FileTail
from async_nexus.journal import REDELIVERED, SqliteJournal
from async_nexus.testing import Recorder


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The events a journal file holds, read by a connection of its own (what is on disk)."""
    with sqlite3.connect(path) as connection:
        return list(connection.execute("SELECT * FROM journal_events"))


async def hard_stop(nexus: AsyncEventNexus) -> None:
    task = nexus.task
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class Stuck:
    """A handler that never finishes: what it holds is in flight when the nexus dies."""

    def __init__(self) -> None:
        self.seen: list[Event] = []

    async def __call__(self, event: Event, queue: Any) -> None:
        self.seen.append(event)
        await asyncio.get_running_loop().create_future()


async def test_await_ingest_returns_once_the_event_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    stuck = Stuck()
    nexus.add_handler("job", stuck)
    nexus.start()
    await nexus.ingest(Event(1, "job", 0, {"n": 1}))
    assert len(rows(path)) == 1  # read through another connection: committed
    await hard_stop(nexus)


async def test_what_was_not_handled_is_dispatched_again_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = AsyncEventNexus(journal=path)
    stuck = Stuck()
    first.add_handler("job", stuck)
    first.add_handler("done", lambda event, queue: None)
    first.start()
    for i, priority in ((1, 5), (2, 0), (3, 5), (4, 0)):
        await first.ingest(Event(i, "job", priority, f"payload {i}"))
    await first.ingest(Event(9, "done"))
    while not stuck.seen:
        await asyncio.sleep(0.01)
    await hard_stop(first)
    held = stuck.seen[0].id  # its handler never finished: it is kept too

    second = AsyncEventNexus(journal=path)
    recorder = Recorder()
    second.add_handler("job", recorder)
    async with second:
        await recorder.wait_for(4)
    replayed = [(e.id, e.priority, e.payload, e.headers[REDELIVERED]) for e in recorder.events]
    # Priority first, then arrival; ids and payloads kept; each marked as delivered once more.
    assert [r[0] for r in replayed] == [2, 4, 1, 3]
    assert {r[2] for r in replayed} == {"payload 1", "payload 2", "payload 3", "payload 4"}
    assert {r[3] for r in replayed} == {"1"}
    assert held in {r[0] for r in replayed}
    assert rows(path) == []  # handled: let go


async def test_a_dead_letter_leaves_the_journal_too(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    dead: list[int] = []
    nexus = AsyncEventNexus(journal=path)
    nexus.on_error(Hook())
    nexus.on_dead_letter(lambda event, exc: dead.append(event.id))
    nexus.add_handler("job", lambda event, queue: 1 / 0)
    async with nexus:
        await nexus.ingest(Event(1, "job"))
        await nexus.ingest(Event(2, "nobody"))
        await nexus.join()
    assert sorted(dead) == [1, 2]
    assert rows(path) == []


async def test_secondary_events_sources_and_requests_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    stuck = Stuck()
    nexus.add_handler("parent", lambda event, queue: Event(event.id + 100, "child"))
    nexus.add_handler("child", stuck, concurrency=2)
    nexus.add_handler("ask", stuck, concurrency=2)
    nexus.start()
    await nexus.ingest(Event(1, "parent"))
    asking = asyncio.ensure_future(nexus.request(Event(2, "ask"), timeout=30))
    while len(stuck.seen) < 2:
        await asyncio.sleep(0.01)
    await nexus._keeper.durable()  # type: ignore[union-attr]
    await hard_stop(nexus)
    asking.cancel()
    kept = {row[0] for row in rows(path)}
    assert len(kept) == 2  # the child and the request; the parent was handled and let go

    again = AsyncEventNexus(journal=path)
    recorder = Recorder()
    again.add_handler(-1, recorder)
    async with again:
        await recorder.wait_for(2)
    assert sorted((e.id, e.type) for e in recorder.events) == [(2, "ask"), (101, "child")]


async def test_an_event_scheduled_for_later_keeps_its_due_time_across_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    first = AsyncEventNexus(journal=path)
    first.add_handler("tick", lambda event, queue: None)
    async with first:
        first.ingest_later(3600, Event(1, "tick"))
        first.ingest_later(0.3, Event(2, "tick"))
    assert any("the journal keeps them" in r.getMessage() for r in caplog.records)
    assert len(rows(path)) == 2

    second = AsyncEventNexus(journal=path)
    recorder = Recorder()
    second.add_handler("tick", recorder)
    async with second:
        while not second.stats()["scheduled"]:  # the loop schedules them as it starts
            await asyncio.sleep(0)
        assert second.stats()["scheduled"] == 2  # neither was queued at once
        await recorder.wait_for(1)
        assert [e.id for e in recorder.events] == [2] and second.stats()["scheduled"] == 1
    assert len(rows(path)) == 1  # the one due in an hour is still kept


async def test_a_cancelled_scheduled_event_leaves_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    async with nexus:
        handle = nexus.ingest_later(3600, Event(1, "tick"))
        await nexus._keeper.durable()  # type: ignore[union-attr]
        assert len(rows(path)) == 1
        handle.cancel()
    assert rows(path) == []


async def test_a_payload_the_codec_cannot_encode_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    async with nexus:
        with pytest.raises(TypeError, match="object"):
            await nexus.ingest(Event(1, "job", 0, object()))
        with pytest.raises(TypeError):
            nexus.ingest_nowait(Event(2, "job", 0, {1, 2}))
        assert nexus.stats()["queued"] == 0
    assert rows(path) == []


class Reading(NamedEvent):
    """A named event: it comes back through the journal's codec registry."""


async def test_named_events_come_back_through_the_codec_registry(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    codec = EventCodec(named_events=[Reading])
    first = AsyncEventNexus(journal=SqliteJournal(path, codec=codec, synchronous="normal"))
    first.add_handler(Reading, Stuck())
    first.start()
    await first.ingest(Reading(5, {"celsius": 21.5}))
    await hard_stop(first)
    recorder = Recorder()
    second = AsyncEventNexus(journal=SqliteJournal(path, codec=codec))
    second.add_handler(Reading, recorder)
    async with second:
        await recorder.wait_for(1)
    (event,) = recorder.events
    assert isinstance(event, Reading) and event.payload == {"celsius": 21.5} and event.id == 5


def test_a_journal_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    AsyncEventNexus(journal=path)
    with pytest.raises(errors.JournalLocked, match="in use"):
        AsyncEventNexus(journal=path)


def test_a_corrupt_journal_is_an_error_at_start(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"not a database at all, " * 100)
    with pytest.raises(errors.JournalCorrupt, match=str(path)):
        AsyncEventNexus(journal=path)


def test_a_journal_in_a_folder_that_does_not_exist_says_to_create_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet"
    with pytest.raises(errors.JournalError) as info:
        AsyncEventNexus(journal=folder / "events.db")
    message = str(info.value)
    assert f"the folder {folder} of the journal {folder / 'events.db'} does not exist" in message
    assert "create it" in message and "lock file" not in message
    assert not folder.exists()  # the journal creates no folders: where it goes is the program's choice


def test_journal_takes_a_path_or_a_journal() -> None:
    with pytest.raises(TypeError, match="journal= takes a path"):
        AsyncEventNexus(journal=42)  # type: ignore[arg-type]


async def test_a_full_disk_makes_ingest_raise_and_keeps_what_was_durable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    created = SqliteJournal(path)  # create it, then open it again with a size limit
    created.open()
    await created.close()
    hook = Hook()
    nexus = AsyncEventNexus(journal=SqliteJournal(path, _max_page_count=40))
    nexus.on_error(hook)
    stuck = Stuck()
    nexus.add_handler("job", stuck)
    nexus.start()
    accepted = []
    with pytest.raises(errors.JournalFull) as full:
        for i in range(100_000):
            await nexus.ingest(Event(i, "job", 0, "x" * 200))
            accepted.append(i)
    assert full.value.filename == str(path)  # an OSError that names its file, as open() does
    assert accepted, "the limit left no room at all"
    task = nexus.task
    assert task is not None
    task.cancel()
    with pytest.raises((asyncio.CancelledError, errors.JournalFull)):
        await task
    recorder = Recorder()
    again = AsyncEventNexus(journal=path)
    again.add_handler("job", recorder)
    async with again:
        await recorder.wait_for(len(accepted), timeout=20)
    assert {e.id for e in recorder.events} >= set(accepted)


async def test_a_file_tail_resumes_where_it_was(tmp_path: Path) -> None:
    log, path = tmp_path / "app.log", tmp_path / "events.db"
    log.write_text("one\ntwo\n")
    first = AsyncEventNexus(journal=path)
    recorder = Recorder()
    first.add_handler("line", recorder)
    first.register(FileTail(log, start="beginning", poll_interval=0.01))
    async with first:
        await recorder.wait_for(2)
    with log.open("a") as out:
        out.write("three\n")
    second = AsyncEventNexus(journal=path)
    again = Recorder()
    second.add_handler("line", again)
    second.register(FileTail(log, start="beginning", poll_interval=0.01))
    async with second:
        await again.wait_for(1)
        with log.open("a") as out:
            out.write("four\n")
        await again.wait_for(2)
    assert [e.payload for e in recorder.events] == ["one", "two"]
    assert [e.payload for e in again.events] == ["three", "four"]


async def test_a_loop_cancelled_before_its_first_turn_still_lets_go_of_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    task = nexus.start()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert nexus.state is AsyncEventNexus.STOPPED
    journal = nexus._keeper.journal  # type: ignore[union-attr]
    while journal._state != "closed":  # closing runs in a task of its own
        await asyncio.sleep(0.01)
    AsyncEventNexus(journal=path)  # not locked any more


class Unregistered(NamedEvent):
    """A named event the journal's codec does not know."""


async def test_a_named_event_the_codec_does_not_know_is_refused_at_once(tmp_path: Path) -> None:
    nexus = AsyncEventNexus(journal=tmp_path / "events.db")
    async with nexus:
        with pytest.raises(TypeError, match="Unregistered is not registered with the journal's codec"):
            await nexus.ingest(Unregistered(1, "x"))


async def replayed(path: Path, count: int) -> list[Event]:
    """What a new nexus on ``path`` dispatches as it starts: what the journal held."""
    nexus = AsyncEventNexus(journal=path)  # JournalLocked if the file is still held
    recorder = Recorder()
    nexus.add_handler(-1, recorder)
    async with nexus:
        return await recorder.wait_for(count)


def test_cleanup_of_a_nexus_that_never_ran_writes_what_is_staged_and_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)
    nexus.ingest_nowait(Event(1, "job", 0, "staged before any loop ran"))
    assert rows(path) == []  # staged, not written
    nexus.cleanup()
    nexus.cleanup()  # twice is fine
    (event,) = asyncio.run(replayed(path, 1))
    assert (event.id, event.payload, event.headers) == (1, "staged before any loop ran", {REDELIVERED: "1"})


def test_leaving_a_with_block_of_a_nexus_that_never_ran_lets_go_of_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with AsyncEventNexus(journal=path) as nexus:
        nexus.ingest_nowait(Event(1, "job", 0, "kept"))
    (event,) = asyncio.run(replayed(path, 1))
    assert (event.id, event.payload) == (1, "kept")


async def test_cleanup_while_the_loop_writes_a_group_lets_the_loop_close_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    nexus = AsyncEventNexus(journal=path)  # synchronous="full": the thread writes the groups
    nexus.ingest_nowait(Event(1, "job", 0, "in flight"))
    await asyncio.sleep(0)  # never started, yet this loop has a group of its journal in flight
    journal = nexus._keeper.journal  # type: ignore[union-attr]
    assert journal._groups._writing is not None
    nexus.cleanup()  # not refused: the loop closes the journal once the group is written
    nexus.cleanup()
    for _ in range(1000):  # closing runs in a task of its own, once the group is written
        if journal._state == "closed":
            break
        await asyncio.sleep(0.01)
    assert journal._state == "closed", "cleanup() left the journal open"
    (event,) = await replayed(path, 1)
    assert (event.id, event.payload) == (1, "in flight")
