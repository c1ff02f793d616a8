"""One followed path: its lines in order, across renames, compression and copytruncate."""

from __future__ import annotations

import logging
import os
import zlib
from typing import NamedTuple

from ._files import (
    HEAD_BYTES,
    Identity,
    Position,
    Reader,
    Rotations,
    compressed,
    fingerprint,
    matches,
    open_file,
)

_CHUNK = 64 * 1024

_SAME, _MISSING, _OTHER = "same", "missing", "other"


class Block(NamedTuple):
    """Lines read from one file: its identity, where in it they start, and their bytes."""

    identity: Identity
    offset: int
    data: bytes


class Follower:
    """Reads the lines of one followed path: the file it names, then the files that replace it.

    It holds one file open at a time: the file the path names (*live*: it may still grow,
    be renamed or be truncated), or a rotated file it catches up on (read to its end, then
    the next one). After a file is finished, the rotated files are listed again and the one
    after it is next, so files rotated in between are read too, oldest first.
    """

    def __init__(self, path: str, *, olddir: str | None, name: str, logger: logging.Logger) -> None:
        self.path = path
        self._name = name
        self._logger = logger
        self._rotations = Rotations(path, olddir)
        self._file: Reader | None = None
        self._identity = Identity(0, 0, b"")
        self._live = False  # self._file is the file the path named when it was opened
        self._buffer = b""  # read from the file, not yet emitted from self._taken on
        self._taken = 0
        self._offset = 0  # where in the file self._buffer[self._taken] is

    def begin(self, saved: Position | None, *, at_end: bool) -> None:
        """Go on from ``saved``; without one, from the end (``at_end``) or the beginning of the file."""
        if saved is not None:
            self._resume(saved)
        elif at_end and self._open(self.path, live=True):
            self._seek(self._end_of_last_line())
        # Otherwise next_block opens the file from its beginning once it exists.

    def holds(self, device: int, inode: int) -> bool:
        """Whether the open file is (``device``, ``inode``)."""
        return self._file is not None and self._identity.same(device, inode)

    def vanished(self) -> bool:
        """Whether the path names no file and the file it named is finished (call at its end)."""
        return (self._file is None or self._live) and not os.path.lexists(self.path)

    def close(self) -> None:
        """Close the open file."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    # Where to begin.

    def _resume(self, saved: Position) -> None:
        if self._open(self.path, live=True):
            if self._identity.same(saved.device, saved.inode) and self._holds(saved):
                self._seek(saved.offset)
                return
            # Another file now, or the same one with other first bytes or shorter than the
            # position: truncated (copytruncate) while nobody read. Either way, the rest of
            # the file of the position is elsewhere, if anywhere.
            self.close()
        files = self._rotations.files()
        index = Rotations.locate(files, saved)
        if index is not None and self._open(files[index], live=False):
            self._seek(saved.offset)
            return
        was = f"{saved.path or 'the file it was reading'} (device {saved.device}, inode {saved.inode})"
        if files:
            self._logger.warning(
                "%s: %s is no longer in %s: it was rotated away and deleted while nobody read. "
                "Lines written to it after byte %d, and to any file rotated and deleted between it "
                "and %s, may have been missed; reading the rotated files that are left (%s) from "
                "their beginning, then %s",
                self._name,
                was,
                " or ".join(self._rotations.folders),
                saved.offset,
                files[0],
                ", ".join(files),
                self.path,
            )
            self._open(files[0], live=False)
            return
        self._logger.warning(
            "%s: %s is no longer in %s; reading %s from its beginning: lines written to the old "
            "file after byte %d may have been missed",
            self._name,
            was,
            " or ".join(self._rotations.folders),
            self.path,
            saved.offset,
        )

    def _holds(self, saved: Position) -> bool:
        """Whether the open file is still the one of ``saved``: as long, with the same first bytes."""
        assert self._file is not None
        if os.fstat(self._file.fileno()).st_size < saved.offset:
            return False
        head = self._identity.head
        return not saved.head or (len(head) >= saved.head and fingerprint(head[: saved.head]) == saved.print)

    def _end_of_last_line(self) -> int:
        """Where the last complete line ends, so that a line being written is read whole."""
        assert self._file is not None
        position = os.fstat(self._file.fileno()).st_size
        while position > 0:
            step = min(_CHUNK, position)
            position -= step
            newline = os.pread(self._file.fileno(), step, position).rfind(b"\n")
            if newline >= 0:
                return position + newline + 1
        return 0

    # Reading.

    def next_block(self) -> Block | None:
        """The next lines, reading and following the files as needed; ``None``: nothing yet.

        The lines come as a block of bytes read from one file: complete lines, each ending
        with ``\\n``, or the last line of a finished file that has no line end. Returning
        them together spares a call per line; the block is at most a read's worth.
        """
        if self._file is None and not self._open(self.path, live=True):
            return None
        while True:
            end = self._buffer.rfind(b"\n", self._taken)
            if end >= 0:
                block = Block(self._identity, self._offset, self._buffer[self._taken : end + 1])
                self._offset += end + 1 - self._taken
                self._taken = end + 1
                return block
            if self._fill():
                continue
            if self._live:
                now = self._path_names()
                if now == _SAME:
                    if not self._truncated():
                        return None
                    self._after_truncation()
                    if self._file is None:
                        return None
                    continue
                if now == _MISSING:
                    return None  # moved away and not replaced yet: the old file may still grow
                if self._fill():  # what was written to it before the rename
                    continue
            identity, offset = self._identity, self._offset
            rest = self._finish()
            if rest:
                return Block(identity, offset, rest)
            if self._file is None:
                return None

    def _fill(self) -> bool:
        assert self._file is not None
        if self._live and not self._same_head():
            return False  # truncated: next_block finds out
        try:
            chunk = self._file.read(_CHUNK)
        except (EOFError, zlib.error, OSError) as error:
            # A compressed file cut short: what it held is read; the rest cannot be.
            self._logger.warning("%s: cannot read on in %s: %s", self._name, self._file.name, error)
            chunk = b""
        if not chunk:
            return False
        self._buffer = self._buffer[self._taken :] + chunk
        self._taken = 0
        return True

    def _same_head(self) -> bool:
        """Whether the live file still begins as it did; its fingerprint grows with it meanwhile."""
        assert self._file is not None
        head = self._identity.head
        if len(head) >= HEAD_BYTES:
            return os.pread(self._file.fileno(), len(head), 0) == head
        now = os.pread(self._file.fileno(), HEAD_BYTES, 0)
        if not now.startswith(head):
            return False
        self._identity.grow(now)
        return True

    def _path_names(self) -> str:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return _MISSING
        return _SAME if self._identity.same(stat.st_dev, stat.st_ino) else _OTHER

    def _truncated(self) -> bool:
        assert self._file is not None
        read_up_to = self._offset + len(self._buffer) - self._taken
        return os.fstat(self._file.fileno()).st_size < read_up_to or not self._same_head()

    def _after_truncation(self) -> None:
        """copytruncate: finish the file from the copy made of it, found by its first bytes."""
        identity, offset = self._identity, self._offset
        files = self._rotations.files()
        index = None
        if identity.head:
            copy = Position(
                identity.device, identity.inode, offset, len(identity.head), fingerprint(identity.head)
            )
            index = Rotations.locate(files, copy)
        if index is not None and self._open(files[index], live=False):
            self._seek(offset)
            return
        if offset:
            self._logger.warning(
                "%s: %s was truncated and no copy of it is in %s: lines written to it after "
                "byte %d may have been missed; reading it from its beginning",
                self._name,
                self.path,
                " or ".join(self._rotations.folders),
                offset,
            )
        self._open(self.path, live=True)

    def _finish(self) -> bytes:
        """Leave the finished file for the next; what it ended with unterminated."""
        rest = self._buffer[self._taken :]
        identity = self._identity
        files = self._rotations.files()
        here = Position(identity.device, identity.inode, 0, len(identity.head), fingerprint(identity.head))
        index = Rotations.locate(files, here)
        self.close()
        # The next file, passing over a copy of this one: a .gz of it being written (it is
        # the newest file until compress is done and the original removed).
        later = [] if index is None else [f for f in files[index + 1 :] if not matches(f, here)]
        if not later or not self._open(later[0], live=False):
            self._open(self.path, live=True)
        return rest

    def _open(self, path: str, *, live: bool) -> bool:
        self.close()
        try:
            file = open_file(path)  # kept open across pulls: no with
            head = self._read_head(file, path)
        except FileNotFoundError:
            return False
        stat = os.fstat(file.fileno())
        self._file, self._live = file, live
        self._identity = Identity(stat.st_dev, stat.st_ino, head, path)
        self._seek(0)
        return True

    def _read_head(self, file: Reader, path: str) -> bytes:
        if not compressed(path):
            return os.pread(file.fileno(), HEAD_BYTES, 0)
        try:
            return file.read(HEAD_BYTES)
        except (EOFError, zlib.error, OSError):
            return b""

    def _seek(self, offset: int) -> None:
        assert self._file is not None
        try:
            self._file.seek(offset)
        except (EOFError, zlib.error, OSError):
            pass  # a compressed file cut short: the reads that follow find its end
        self._buffer, self._taken, self._offset = b"", 0, offset
