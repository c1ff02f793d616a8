"""FileTail: a converter that follows a file like ``tail -F`` and resumes where it was."""

from __future__ import annotations

import asyncio
import codecs
import io
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Literal

from .checkpoints import Checkpoints
from .errors import BadCall
from .events import Event, EventFactory, EventType, NamedEvent
from .sources import EventConverter

__all__ = ["FileTail"]

_logger = logging.getLogger("async_nexus")

_STARTS = ("end", "beginning")
_CHUNK = 64 * 1024

# (device, inode, offset): a byte position in one file, whatever its name is now.
_Position = tuple[int, int, int]


class FileTail(EventConverter):
    """Follows a text file like ``tail -F``: one event per line, across rotation and truncation.

    Each event's payload is one line without its line end (``\\n``, or ``\\r\\n``), of type
    ``event_type``, with an id from ``event_factory``. Only complete lines are emitted while
    the file may still grow, so a line written in pieces is one event.

    * The file need not exist yet: the tail waits for it, and then reads it from its beginning.
    * **Rotation** (the path now names another file, as after ``mv app.log app.log.1`` and a
      new ``app.log``): the old file is read to its end first — a last line without a line
      end included — and then the new one from its beginning.
    * **Truncation** (the file became shorter than what was read, as with ``copytruncate``):
      it is read again from its beginning.
    * **Resume**: when :attr:`checkpoints` is set, the tail saves the position just past each
      line whose event was taken, and a new tail with the same :attr:`~async_nexus.EventSource.name`
      goes on from there — in the same file if the path still names it (from its beginning
      if it is now shorter), else first in the rest of the old file, found again in the same
      folder by its device and inode as log shippers do, then in the new file. If the old
      file is gone, the new one is read from its beginning and a warning says that lines may
      have been missed.

    Waits poll: the file is looked at again every ``poll_interval`` seconds, with
    :func:`asyncio.sleep` in between, so an idle tail costs a few system calls per interval.

    :param path: the file to follow (``str`` or path-like); kept as an absolute path.
    :param event_type: the type of the events.
    :param start: where to begin when there is no saved position: ``"end"`` (the default)
        emits only lines completed after the tail started — a line half written at that
        moment is read whole —, ``"beginning"`` the whole file.
    :param poll_interval: seconds between looks at a file that has nothing new.
    :param encoding: how lines are decoded; bytes that do not decode are replaced with
        U+FFFD. It must write a line end as the byte ``\\n`` (UTF-8, Latin-1, ASCII do).
    :param event_factory: makes the events; by default one of the tail's own, counting
        from 1 (pass the nexus for ids unique within it).
    :raises ~async_nexus.errors.BadCall: ``start`` is neither ``"end"`` nor ``"beginning"``,
        ``poll_interval`` is not a positive number, or ``encoding`` is unknown.
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
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise BadCall(f"FileTail encoding {encoding!r} is not a known encoding") from None
        #: The followed file, as an absolute path.
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
        #: Where the position is saved and resumed from, under :attr:`~async_nexus.EventSource.name`;
        #: ``None`` (the default): nothing is saved, nothing resumed. A nexus sets it before it
        #: pulls the tail; it is read when the first event is asked for.
        self.checkpoints: Checkpoints | None = None
        # The default name says which file, so that a checkpoint finds its tail again on the
        # next run; a name the user sets replaces it.
        self._source_name = f"FileTail({self.path})"
        self._file: io.FileIO | None = None
        self._identity = (0, 0)  # (device, inode) of self._file
        self._buffer = b""  # read from the file, not yet emitted from self._taken on
        self._taken = 0
        self._offset = 0  # where in the file self._buffer[self._taken] is
        self._emitted: _Position | None = None  # just past the line emitted last

    async def event_generator(self) -> AsyncIterator[Event]:
        """Yield one event per line, waiting for more for as long as the nexus runs."""
        try:
            self._begin()
            while True:
                line = self._next_line()
                if line is None:
                    await asyncio.sleep(self.poll_interval)
                    continue
                text = line.decode(self.encoding, errors="replace")
                yield self.event_factory.create_event(text, event_type=self.event_type)
                # Asked for the next event: the nexus accepted this line's, so its position
                # may be kept. Saving any earlier could skip a line the nexus never took.
                self._save()
        finally:
            self._close_file()

    async def close(self) -> None:
        """Stop following: close the generator and the file."""
        await super().close()
        self._close_file()

    def __repr__(self) -> str:
        return f"<FileTail {self.path!r} at {id(self):#x}>"

    # Where to begin.

    def _begin(self) -> None:
        saved = self._load()
        if saved is not None:
            self._resume(*saved)
        elif self.start_from == "end" and self._open(self.path):
            self._seek(self._end_of_last_line())
        # Otherwise _next_line opens the file from its beginning once it exists.

    def _load(self) -> _Position | None:
        if self.checkpoints is None:
            return None
        value = self.checkpoints.load(self.name)
        if value is None:
            return None
        try:
            saved = json.loads(value)
            return int(saved["device"]), int(saved["inode"]), int(saved["offset"])
        except (ValueError, TypeError, KeyError):
            _logger.warning(
                "%s: the saved position %r is not a FileTail's; starting at the %s as start=%r says",
                self.name,
                value,
                self.start_from,
                self.start_from,
            )
            return None

    def _resume(self, device: int, inode: int, offset: int) -> None:
        if self._open(self.path):
            if self._identity == (device, inode):
                self._seek_saved(offset)
                return
            self._close_file()
        # Rotated while nobody read: finish the old file first, wherever it went in the folder.
        old = self._find(device, inode)
        if old is not None and self._open(old):
            if self._identity == (device, inode):
                self._seek_saved(offset)
                return
            self._close_file()  # renamed once more since the folder was read
        _logger.warning(
            "%s: the file it was reading (device %d, inode %d, at byte %d) is no longer in %s; "
            "reading %s from its beginning: lines written to the old file after that byte may "
            "have been missed",
            self.name,
            device,
            inode,
            offset,
            os.path.dirname(self.path),
            self.path,
        )

    def _find(self, device: int, inode: int) -> str | None:
        try:
            with os.scandir(os.path.dirname(self.path)) as entries:
                for entry in entries:
                    # inode() needs no system call, so only candidates are stat()ed.
                    if entry.inode() != inode or not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.stat(follow_symlinks=False).st_dev == device:
                        return entry.path
        except FileNotFoundError:
            pass
        return None

    def _seek_saved(self, offset: int) -> None:
        assert self._file is not None
        # A file now shorter than the position was truncated: all of it is new.
        self._seek(offset if offset <= os.fstat(self._file.fileno()).st_size else 0)

    def _end_of_last_line(self) -> int:
        """Where the last complete line ends, so that a line being written is read whole."""
        assert self._file is not None
        position = os.fstat(self._file.fileno()).st_size
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            self._file.seek(position)
            newline = self._file.read(step).rfind(b"\n")
            if newline >= 0:
                return position + newline + 1
        return 0

    # Reading.

    def _next_line(self) -> bytes | None:
        """The next line to emit, reading and following the file as needed; ``None``: wait."""
        if self._file is None and not self._open(self.path):
            return None
        while True:
            line = self._complete_line()
            if line is not None:
                return line
            if self._fill():
                continue
            if self._rotated():
                if self._fill():  # what was written to it before the rename
                    continue
                rest = self._switch()
                if rest:
                    return rest
                if self._file is None:
                    return None
                continue
            if self._truncated():
                self._seek(0)
                continue
            return None

    def _complete_line(self) -> bytes | None:
        newline = self._buffer.find(b"\n", self._taken)
        if newline < 0:
            return None
        line = self._buffer[self._taken : newline]
        self._offset += newline + 1 - self._taken
        self._taken = newline + 1
        self._emitted = (*self._identity, self._offset)
        return line[:-1] if line.endswith(b"\r") else line

    def _fill(self) -> bool:
        assert self._file is not None
        chunk = self._file.read(_CHUNK)
        if not chunk:
            return False
        self._buffer = self._buffer[self._taken :] + chunk
        self._taken = 0
        return True

    def _rotated(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved away and not replaced yet: the old file may still grow
        return (stat.st_dev, stat.st_ino) != self._identity

    def _truncated(self) -> bool:
        assert self._file is not None
        read_up_to = self._offset + len(self._buffer) - self._taken
        return os.fstat(self._file.fileno()).st_size < read_up_to

    def _switch(self) -> bytes:
        """Leave the finished old file for the new one; what the old one ended with unterminated."""
        rest = self._buffer[self._taken :]
        if rest:
            self._emitted = (*self._identity, self._offset + len(rest))
        self._close_file()
        self._open(self.path)
        return rest

    def _open(self, path: str) -> bool:
        self._close_file()
        try:
            file = open(path, "rb", buffering=0)  # kept open across pulls: no with
        except FileNotFoundError:
            return False
        stat = os.fstat(file.fileno())
        self._file, self._identity = file, (stat.st_dev, stat.st_ino)
        self._seek(0)
        return True

    def _seek(self, offset: int) -> None:
        assert self._file is not None
        self._file.seek(offset)
        self._buffer, self._taken, self._offset = b"", 0, offset

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _save(self) -> None:
        if self.checkpoints is None or self._emitted is None:
            return
        device, inode, offset = self._emitted
        # Formatted by hand: three ints need no json.dumps, and this runs once per line.
        self.checkpoints.save(self.name, f'{{"device": {device}, "inode": {inode}, "offset": {offset}}}')
