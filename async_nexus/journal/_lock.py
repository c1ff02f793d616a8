"""The lock of :mod:`async_nexus.journal`'s file: one open journal per file, in any process.
Private: the journal package is its only user.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import JournalError, JournalLocked


def acquire_lock(path: Path) -> int:
    """Lock ``{path}-lock`` for this process, write its pid into it and return its descriptor.

    :raises JournalLocked: another open journal (in any process) holds the lock.
    """
    lock_path = f"{path}-lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        folder = path.parent
        if not folder.exists():
            raise JournalError(
                f"the folder {folder} of the journal {path} does not exist; create it "
                f"(mkdir -p {folder}) or give the journal a path in a folder that exists"
            ) from exc
        raise JournalError(f"cannot create the lock file {lock_path} of the journal {path}: {exc}") from exc
    try:
        import fcntl  # here: POSIX only, and importing the package must work everywhere

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if holder == str(os.getpid()):
            who = f"this process ({holder}): another SqliteJournal on the same file is open; close it first"
        elif holder:
            who = f"process {holder}; stop that process (or close its journal) first"
        else:
            who = "another process that is opening it right now; stop that process first"
        raise JournalLocked(
            f"the journal {path} is in use by {who}, or give this one a journal file of its own "
            "(one journal file serves one nexus at a time)"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise JournalError(f"cannot lock {lock_path} for the journal {path}: {exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def release_lock(fd: int) -> None:
    """Release a lock taken by :func:`acquire_lock`.

    The lock file stays: deleting it would let a process that opened it just before hold a lock
    on a file nobody else sees.
    """
    try:
        os.ftruncate(fd, 0)
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
