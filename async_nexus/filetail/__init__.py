"""FileTail: a converter that follows log files like ``tail -F`` and resumes where it was."""

from __future__ import annotations

import asyncio
import codecs
import glob
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from stat import S_ISREG
from typing import Literal

from ..checkpoints import Checkpoints, MemoryCheckpoints
from ..errors import BadCall
from ..events import Event, EventFactory, EventType, NamedEvent
from ..sources import EventConverter
from ._files import HEAD_BYTES as _HEAD_BYTES
from ._files import Position
from ._follower import Follower

__all__ = ["FileTail", "HEAD_BYTES", "PATH_HEADER"]

_logger = logging.getLogger("async_nexus")

_STARTS = ("end", "beginning")

#: The header of each event that carries the path of the file its line was read from.
PATH_HEADER = "path"

#: How many of a file's first bytes its fingerprint covers (fewer while the file is shorter):
#: enough for the first lines of a log, whose time stamps tell two files apart, and cheap to
#: read again for each rotated file looked at.
HEAD_BYTES = _HEAD_BYTES


def _newline_is_one_byte(encoding: str) -> bool:
    """Whether ``encoding`` writes a line end, after other text, as the byte ``\\n``.

    Lines are split on that byte before they are decoded; UTF-16 and UTF-32 would be cut
    inside their characters. After other text, so that a byte order mark does not count.
    """
    try:
        encoder = codecs.getincrementalencoder(encoding)()
        encoder.encode("a")
        return bool(encoder.encode("\n") == b"\n")
    except (TypeError, ValueError):  # a codec that does not turn text into bytes
        return False


class FileTail(EventConverter):
    """Follows text files like ``tail -F``: one event per line, across every kind of rotation.

    Each event's payload is one line without its line end (``\\n``, or ``\\r\\n``) — or, with
    ``batch``, a list of such lines —, of type
    ``event_type``, with an id from ``event_factory``, and the file's path in its
    :data:`PATH_HEADER` header. Only complete lines are emitted while the file may still grow,
    so a line written in pieces is one event.

    * The file need not exist yet: the tail waits for it, and then reads it from its beginning.
    * **Rotation** by rename (``create``, ``dateext``, ``olddir``): the old file is read to its
      end first — a last line without a line end included —, then any file rotated after it,
      oldest first, then the new one from its beginning.
    * **Truncation** (``copytruncate``: the same file, shorter or beginning with other bytes):
      the lines after the last one read are read from the copy, found by its first bytes among
      the rotated files, then the file again from its beginning.
    * **Resume**: when :attr:`checkpoints` is set, the tail saves its position after each line
      whose event was taken — the byte past the line, the file's device and inode and a
      fingerprint of its first :data:`HEAD_BYTES` bytes —, and a new tail with the same
      :attr:`~async_nexus.EventSource.name` goes on from there: in the file it was reading
      wherever it is now (renamed, renamed again, compressed to a ``.gz``), then in every file
      rotated after it, oldest first, then in the file the path names. Lines of files that
      were deleted meanwhile are reported in one warning.
    * **Globs**: a ``path`` with ``*``, ``?`` or ``[`` follows every file it matches, and those
      that appear later (up to ``max_files`` at once), each with its own checkpoint; a file
      whose path is gone is finished and dropped.

    Rotated files are looked for in the followed file's folder and in ``olddir``: their names
    are the file's name with a number or a date appended (``app.log.1``, ``app.log.2.gz``,
    ``app.log-20240101``) or its stem and extension around one (``app-20240101.log``).

    Waits poll: the files are looked at again every ``poll_interval`` seconds, with
    :func:`asyncio.sleep` in between, so an idle tail costs a few system calls per interval.

    :param path: the file to follow (``str`` or path-like), or a glob pattern of files; kept
        as an absolute path.
    :param event_type: the type of the events.
    :param start: where to begin in a file that is there when the tail starts and has no saved
        position: ``"end"`` (the default) emits only lines completed after the tail started —
        a line half written at that moment is read whole —, ``"beginning"`` the whole file.
        Files that appear later are read from their beginning.
    :param poll_interval: seconds between looks at a file that has nothing new.
    :param encoding: how lines are decoded; bytes that do not decode are replaced with
        U+FFFD. It must write a line end as the byte ``\\n`` (UTF-8, Latin-1, ASCII do).
    :param event_factory: makes the events; by default one of the tail's own, counting
        from 1 (pass the nexus for ids unique within it).
    :param olddir: the folder rotated files are moved to (logrotate's ``olddir``), if not the
        followed file's own.
    :param max_files: how many files a glob follows at once (each holds a file descriptor);
        more are left with a warning until a followed one is dropped.
    :param batch: ``None`` (the default): an event per line, its payload the line's text. A
        number: an event per batch of at most that many lines, its payload a ``list`` of their
        texts, in order — the complete lines of one read of one file (reads are of 64 KiB),
        so a batch never waits for lines not written yet. For logs too busy for an event per
        line: each event costs the nexus what a line costs the handler many times over. With
        :attr:`checkpoints`, the position is saved after each batch, so a crash reads the last
        batch again, whole.
    :raises ~async_nexus.errors.BadCall: ``start`` is neither ``"end"`` nor ``"beginning"``,
        ``poll_interval`` is not a positive number, ``max_files`` or ``batch`` not a positive
        integer, or ``encoding`` is unknown or does not write a line end as the byte ``\\n``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        event_type: EventType | type[NamedEvent] = "line",
        start: Literal["end", "beginning"] = "end",
        poll_interval: float = 0.2,
        encoding: str = "utf-8",
        event_factory: EventFactory | None = None,
        olddir: str | os.PathLike[str] | None = None,
        max_files: int = 100,
        batch: int | None = None,
    ) -> None:
        if start not in _STARTS:
            raise BadCall(f"FileTail start must be 'end' or 'beginning', got {start!r}")
        if (
            not isinstance(poll_interval, (int, float))
            or isinstance(poll_interval, bool)
            or poll_interval <= 0
        ):
            raise BadCall(
                f"FileTail poll_interval must be a positive number of seconds, got {poll_interval!r}"
            )
        if not isinstance(max_files, int) or isinstance(max_files, bool) or max_files <= 0:
            raise BadCall(f"FileTail max_files must be a positive integer, got {max_files!r}")
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0):
            raise BadCall(
                f"FileTail batch must be a positive integer (lines per event) or None (an event per "
                f"line), got {batch!r}"
            )
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise BadCall(
                f"FileTail encoding {encoding!r} is not a known encoding; give a name Python's codecs "
                "know, such as 'utf-8' or 'latin-1'"
            ) from None
        if not _newline_is_one_byte(encoding):
            raise BadCall(
                f"FileTail reads encodings that write a line end as the single byte \\n, and "
                f"{encoding!r} does not; give one that does, such as 'utf-8' or 'latin-1'"
            )
        #: The followed file, or glob pattern of files, as an absolute path.
        self.path = os.path.abspath(os.fspath(path))
        #: The type of the events.
        self.event_type = event_type
        #: ``"end"`` or ``"beginning"``: where to begin when no position was saved.
        self.start_from = start
        #: Seconds between looks at a file that has nothing new.
        self.poll_interval = float(poll_interval)
        #: How lines are decoded.
        self.encoding = encoding
        #: Makes the events.
        self.event_factory = event_factory if event_factory is not None else EventFactory()
        #: The folder of rotated files, if not the followed file's (an absolute path), or ``None``.
        self.olddir = os.path.abspath(os.fspath(olddir)) if olddir is not None else None
        #: How many files a glob follows at once.
        self.max_files = max_files
        #: At most how many lines one event carries (its payload a list of them), or ``None``:
        #: an event per line, its payload the line.
        self.batch = batch
        #: Where the positions are saved and resumed from, under :attr:`~async_nexus.EventSource.name`
        #: (and, for each file of a glob, the name followed by ``:`` and the file's path);
        #: ``None`` (the default): nothing is saved, nothing resumed. A nexus sets it before it
        #: pulls the tail; it is read when the first event is asked for.
        self.checkpoints: Checkpoints | None = None
        # The default name says which file, so that a checkpoint finds its tail again on the
        # next run; a name the user sets replaces it.
        self._source_name = f"FileTail({self.path})"
        self._pattern = glob.has_magic(self.path)
        self._followers: dict[str, Follower] = {}
        self._store: Checkpoints | None = None
        self._refused: set[str] = set()
        self._scanned = 0.0

    async def event_generator(self) -> AsyncIterator[Event]:
        """Yield one event per line (or per batch of lines), waiting for more while the nexus runs."""
        create, event_type, batch = self.event_factory.create_event, self.event_type, self.batch
        try:
            self._begin()
            while True:
                busy = False
                for follower in list(self._followers.values()):
                    block = follower.next_block()
                    if block is None:
                        if self._pattern and follower.vanished():
                            self._drop(follower)
                        continue
                    busy = True
                    path, store = follower.path, self._store
                    texts, raws = self._split(block.data, keep_raw=store is not None)
                    if store is None:
                        if batch is None:
                            for text in texts:
                                yield create(text, event_type=event_type, headers={PATH_HEADER: path})
                        else:
                            for start in range(0, len(texts), batch):
                                lines = texts[start : start + batch]
                                yield create(lines, event_type=event_type, headers={PATH_HEADER: path})
                        continue
                    key, identity, offset = self._key(path), block.identity, block.offset
                    # A last line without a line end is alone in its block (a finished file's).
                    ending = 1 if block.data.endswith(b"\n") else 0
                    if batch is None:
                        for text, raw in zip(texts, raws, strict=True):
                            offset += len(raw) + ending
                            yield create(text, event_type=event_type, headers={PATH_HEADER: path})
                            # Asked for the next event: the nexus accepted this line's, so its
                            # position may be kept. Saving any earlier could skip a line the
                            # nexus never took.
                            store.save(key, identity.saved(offset))
                        continue
                    for start in range(0, len(texts), batch):
                        lines = texts[start : start + batch]
                        offset += sum(map(len, raws[start : start + batch])) + len(lines) * ending
                        yield create(lines, event_type=event_type, headers={PATH_HEADER: path})
                        store.save(key, identity.saved(offset))  # as above, for the whole batch
                if self._pattern and time.monotonic() - self._scanned >= self.poll_interval:
                    self._scan(at_end=False)
                if not busy:
                    await asyncio.sleep(self.poll_interval)
        finally:
            self._close_files()

    def _split(self, data: bytes, *, keep_raw: bool) -> tuple[list[str], list[bytes]]:
        """The lines of a block as text, without line ends; with their bytes if ``keep_raw``."""
        complete = data.endswith(b"\n")
        # Decoded and split as a block: a line end is the byte \n in every encoding FileTail
        # reads, so no character spans two lines.
        texts = data.decode(self.encoding, errors="replace").split("\n")
        if complete:
            texts.pop()
        crlf = b"\r" in data
        if crlf:
            texts = [t[:-1] if t.endswith("\r") else t for t in texts]
        if not keep_raw:
            return texts, []
        raws = data.split(b"\n")
        if complete:
            raws.pop()
        if len(raws) != len(texts):  # a codec whose replacement swallowed a line end
            texts = [raw.decode(self.encoding, errors="replace") for raw in raws]
            if crlf:
                texts = [t[:-1] if t.endswith("\r") else t for t in texts]
        return texts, raws

    async def close(self) -> None:
        """Stop following: close the generator and the files."""
        await super().close()
        self._close_files()

    def __repr__(self) -> str:
        return f"<FileTail {self.path!r} at {id(self):#x}>"

    # Which files, and where to begin in each.

    def _begin(self) -> None:
        self._store = self.checkpoints
        if not self._pattern:
            self._follow(self.path, at_end=self.start_from == "end")
            return
        if self._store is None:
            # A file of a glob that is rotated is dropped and found again under its path:
            # its position is what finds the rest of the old file, so a glob always keeps them.
            self._store = MemoryCheckpoints()
        known: list[str] = []
        value = self._store.load(self.name)
        if value is not None:
            try:
                known = [str(path) for path in json.loads(value)["files"]]
            except (ValueError, TypeError, KeyError):
                self._warn_not_ours(self.name, value)
        # Files followed when it stopped come first: they were being read and may have moved.
        for path in known:
            self._follow(path, at_end=False)
        self._scan(at_end=self.start_from == "end")

    def _scan(self, *, at_end: bool) -> None:
        self._scanned = time.monotonic()
        before = len(self._followers)
        for path in sorted(glob.glob(self.path)):
            if path in self._followers:
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue  # gone since the folder was read
            if not S_ISREG(stat.st_mode):
                continue
            if any(f.holds(stat.st_dev, stat.st_ino) for f in self._followers.values()):
                continue  # a rotated name the glob matches too: read under the name it had
            if len(self._followers) >= self.max_files:
                if path not in self._refused:
                    self._refused.add(path)
                    _logger.warning(
                        "%s: follows %d files already (max_files); %s is followed once one of "
                        "them is gone: raise max_files to follow more at once",
                        self.name,
                        self.max_files,
                        path,
                    )
                continue
            self._refused.discard(path)
            self._follow(path, at_end=at_end)
        if len(self._followers) != before:
            self._save_index()

    def _follow(self, path: str, *, at_end: bool) -> None:
        if path in self._followers:
            return
        follower = Follower(path, olddir=self.olddir, name=self.name, logger=_logger)
        self._followers[path] = follower
        follower.begin(self._load(path), at_end=at_end)

    def _drop(self, follower: Follower) -> None:
        follower.close()
        del self._followers[follower.path]
        self._save_index()

    def _key(self, path: str) -> str:
        return f"{self.name}:{path}" if self._pattern else self.name

    def _load(self, path: str) -> Position | None:
        if self._store is None:
            return None
        key = self._key(path)
        value = self._store.load(key)
        if value is None:
            return None
        try:
            return Position.parse(value)
        except ValueError:
            self._warn_not_ours(key, value)
            return None

    def _warn_not_ours(self, key: str, value: str) -> None:
        _logger.warning(
            "%s: the saved position %r is not a FileTail's; starting at the %s as start=%r says",
            key,
            value,
            self.start_from,
            self.start_from,
        )

    def _save_index(self) -> None:
        if self._store is not None:
            self._store.save(self.name, json.dumps({"files": sorted(self._followers)}))

    def _close_files(self) -> None:
        for follower in self._followers.values():
            follower.close()
