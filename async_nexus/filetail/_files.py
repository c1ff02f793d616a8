"""How a followed file is recognised, wherever rotation put it: identity, fingerprint, rotated files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass
from typing import Union

#: How many of a file's first bytes make its fingerprint. A kilobyte holds the first lines of
#: a log, whose time stamps tell two files of one log apart, and reading it costs one small
#: read per candidate (a small decompression for a ``.gz``). While a file is shorter, the
#: fingerprint covers what it has, and grows with it up to this size.
HEAD_BYTES = 1024

_GZ = ".gz"

#: An open file: read as it is, or through gzip.
Reader = Union[io.FileIO, gzip.GzipFile]


def fingerprint(head: bytes) -> str:
    """A short digest of a file's first bytes (at most :data:`HEAD_BYTES` of them)."""
    return hashlib.blake2b(head, digest_size=8).hexdigest()


@dataclass(frozen=True)
class Position:
    """Where a tail was: a byte offset in one file, and what it takes to find that file again.

    ``head`` and ``print`` are the length and the :func:`fingerprint` of the file's first bytes;
    a position saved by an older version has none (``head == 0``) and is found by its device and
    inode alone. In a compressed file the offset counts uncompressed bytes. ``path`` is where
    the file was when it was opened, for messages only.
    """

    device: int
    inode: int
    offset: int
    head: int = 0
    print: str = ""
    path: str = ""

    @classmethod
    def parse(cls, value: str) -> Position:
        """The position saved as ``value``; :class:`ValueError` if it is not one."""
        try:
            saved = json.loads(value)
            position = cls(
                int(saved["device"]),
                int(saved["inode"]),
                int(saved["offset"]),
                int(saved.get("head", 0)),
                str(saved.get("fingerprint", "")),
                str(saved.get("path", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ValueError(value) from None
        if position.head and not position.print:
            raise ValueError(value)
        return position


class Identity:
    """The identity of one opened file: device, inode and first bytes, and how a save spells it.

    A position is saved once per line, so what does not change with the offset is formatted
    here once (and again only when the head grows).
    """

    __slots__ = ("device", "inode", "head", "prefix", "suffix")

    def __init__(self, device: int, inode: int, head: bytes, path: str = "") -> None:
        self.device = device
        self.inode = inode
        self.prefix = f'{{"path": {json.dumps(path)}, "device": {device}, "inode": {inode}, "offset": '
        self.head = b""
        self.suffix = "}"
        self.grow(head)

    def grow(self, head: bytes) -> None:
        """The file's first bytes, read again: keep them if they are more than before."""
        if len(head) > len(self.head):
            self.head = head[:HEAD_BYTES]
            self.suffix = f', "head": {len(self.head)}, "fingerprint": "{fingerprint(self.head)}"}}'

    def saved(self, offset: int) -> str:
        """The checkpoint value of ``offset`` in this file."""
        return f"{self.prefix}{offset}{self.suffix}"

    def same(self, device: int, inode: int) -> bool:
        """Whether (``device``, ``inode``) is this file's."""
        return self.inode == inode and self.device == device


def compressed(path: str) -> bool:
    """Whether ``path`` is read through gzip."""
    return path.endswith(_GZ)


def open_file(path: str) -> Reader:
    """``path`` opened for reading bytes: through gzip for a ``.gz``, unbuffered otherwise."""
    if compressed(path):
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=0)


def read_head(path: str, length: int = HEAD_BYTES) -> bytes | None:
    """The first ``length`` bytes of ``path`` (uncompressed); ``None`` if it cannot be read."""
    try:
        with open_file(path) as file:
            return file.read(length)
    except (OSError, EOFError, zlib.error):
        return None  # gone, unreadable, or a .gz being written


def matches(path: str, position: Position) -> bool:
    """Whether the file at ``path`` begins with the bytes ``position`` fingerprinted."""
    if not position.head:
        return False
    head = read_head(path, position.head)
    return head is not None and len(head) == position.head and fingerprint(head) == position.print


class Rotations:
    """The rotated files of one followed path, oldest first, in its folder and in ``olddir``.

    A rotated file's name is the followed file's name with a number or a date appended
    (``app.log.1``, ``app.log.2.gz``, ``app.log-20240101``), or its stem and extension with
    one in between (``app-20240101.log``, logrotate's ``dateext`` with ``extension .log``).

    They are in the order they were last written to, which is the order of rotation whatever
    the naming scheme (``gzip`` and logrotate's ``compress`` keep that time); files written
    within the same tick of the clock are in the order of their names: numbered names by their
    number, the highest (the oldest) first, other names (dates) as text.
    """

    def __init__(self, path: str, olddir: str | None) -> None:
        self.path = path
        self.folders = [os.path.dirname(path)]
        if olddir is not None and olddir not in self.folders:
            self.folders.append(olddir)
        self.base = os.path.basename(path)
        self.stem, self.extension = os.path.splitext(self.base)

    def _order(self, name: str) -> tuple[int, int, str] | None:
        plain = name[: -len(_GZ)] if name.endswith(_GZ) else name
        if plain == self.base:
            return None if plain == name else (1, 0, name)  # app.log.gz: a rotation without a number
        if plain.startswith(self.base):
            rest = plain[len(self.base) + 1 :]
            if plain[len(self.base)] == "." and rest.isdigit():
                return (0, -int(rest), name)
            between = plain[len(self.base) :]
        elif self.extension and plain.startswith(self.stem) and plain.endswith(self.extension):
            between = plain[len(self.stem) : -len(self.extension)]
        else:
            return None
        # A date, or some other count: app.log.bak or app.log.swp is no rotation.
        return (1, 0, between) if any(c.isdigit() for c in between) else None

    def files(self) -> list[str]:
        """The rotated files now there, oldest first."""
        found: list[tuple[int, tuple[int, int, str], str]] = []
        for folder in self.folders:
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        order = self._order(entry.name)
                        if order is None or entry.path == self.path:
                            continue
                        try:
                            if entry.is_file(follow_symlinks=False):
                                found.append((entry.stat().st_mtime_ns, order, entry.path))
                        except FileNotFoundError:
                            continue  # rotated away while the folder was read
            except (FileNotFoundError, NotADirectoryError):
                continue
        found.sort()
        if _numbered_upwards(found):
            # Files written within one tick of the clock are ordered by their numbers: the
            # other way round where the files written apart show that higher is newer.
            found = sorted((m, (k, -n, name), path) for m, (k, n, name), path in found)
        return [path for _, _, path in found]

    @staticmethod
    def locate(files: list[str], position: Position) -> int | None:
        """Where in ``files`` the file of ``position`` is now, or ``None``.

        Its device and inode find it if it was only renamed (and its first bytes confirm it:
        an inode number is reused once a file is deleted); else its first bytes find it, as a
        compressed or a copied file, preferring an uncompressed one (a ``.gz`` may still be
        being written while its original is there).
        """
        by_print: list[int] = []
        for index, path in enumerate(files):
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            if stat.st_ino == position.inode and stat.st_dev == position.device:
                if not position.head or matches(path, position):
                    return index
            elif matches(path, position):
                by_print.append(index)
        by_print.sort(key=lambda index: compressed(files[index]))
        return by_print[0] if by_print else None


def _numbered_upwards(found: list[tuple[int, tuple[int, int, str], str]]) -> bool:
    """Whether, among numbered files written at different times, the newer has the higher number.

    logrotate numbers downwards (``app.log.1`` is the newest); some programs count upwards.
    ``found`` is sorted by time; numbered entries carry minus their number.
    """
    numbers = [(mtime, -order[1]) for mtime, order, _ in found if order[0] == 0]
    upwards = downwards = 0
    for (earlier, first), (later, second) in zip(numbers, numbers[1:], strict=False):
        if earlier < later:
            upwards += second > first
            downwards += second < first
    return upwards > downwards
