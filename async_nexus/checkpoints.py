"""Checkpoints: where sources keep their positions, so that they resume where they were."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["Checkpoints", "MemoryCheckpoints"]


@runtime_checkable
class Checkpoints(Protocol):
    """A store of positions, one string per source name.

    A source that can resume (a :class:`~async_nexus.filetail.FileTail`) saves its position
    after the events it produced before it were taken, and loads it when it starts again.
    With a nexus journal, a save is committed in the same transaction as the events the
    source produced before it, so a restart resumes exactly after the last event kept:
    none is read twice, none is skipped. The values are the sources' own business (a JSON
    string, say); the store keeps them as they are.
    """

    def load(self, name: str) -> str | None:
        """The value last saved for the source called ``name``, or ``None`` if there is none."""

    def save(self, name: str, value: str) -> None:
        """Keep ``value`` as the position of the source called ``name``, replacing the last one.

        Called often (a file tail saves once per line), so it must be cheap; a durable store
        collects saves and writes them with the events they follow.
        """


class MemoryCheckpoints:
    """:class:`Checkpoints` in a dict: for tests, and for a nexus without a journal.

    The positions live as long as this object, so a source registered anew with the same
    store (in the same process) resumes; nothing survives the process.

    :param saved: positions to start with, by source name.
    """

    def __init__(self, saved: Mapping[str, str] | None = None) -> None:
        #: The positions saved so far, by source name.
        self.saved: dict[str, str] = dict(saved or {})

    def load(self, name: str) -> str | None:
        """The value last saved for ``name``, or ``None``."""
        return self.saved.get(name)

    def save(self, name: str, value: str) -> None:
        """Keep ``value`` for ``name``."""
        self.saved[name] = value

    def __repr__(self) -> str:
        return f"MemoryCheckpoints({self.saved!r})"
