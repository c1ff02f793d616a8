"""The dead letters of a journal file, for the command line. Private to the command line.

The file is opened as a nexus opens it, lock included, but without replaying: no delivery of
the events it holds is counted. A journal locked by a running daemon is refused with
:class:`Held`, which says where to act on its dead letters instead.
"""

from __future__ import annotations

from pathlib import Path

from ..codec import EventCodec
from ..dead_letters import replayed
from ..errors import JournalLocked
from ..journal import SqliteJournal
from ._output import Record


class Held(Exception):
    """The journal is held by another process: most likely a daemon running on it."""


class NoJournal(Exception):
    """There is no journal at the path given."""


class JournalLetters:
    """The dead letters of the journal at ``path``, read with ``codec`` (the default one if None).

    Open while in use, closed by :meth:`close`.
    """

    def __init__(self, path: Path, codec: EventCodec | None = None) -> None:
        if not path.exists():
            raise NoJournal(f"there is no journal at {path}; give the path of a daemon's journal file")
        self.where = f"the journal {path}"
        self._journal = SqliteJournal(path, codec=codec)
        try:
            self._journal.open(replay=False)
        except JournalLocked as exc:
            raise Held(
                f"{self.where} is held by a running daemon ({exc}). Its dead letters change under it: "
                "list, replay and delete them through that daemon's console instead "
                "(python -m async_nexus run TARGET --console [HOST:]PORT), or stop the daemon first"
            ) from None

    @staticmethod
    def parse_id(text: str) -> int:
        """A dead letter id of a journal: a number."""
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"a journal's dead letter ids are numbers >= 1 (see 'list'), not {text!r}")
        return value

    async def count(self) -> int:
        """How many dead letters the journal keeps."""
        return self._journal.dead_letter_count

    async def newest(self, limit: int, event_type: int | str | None) -> list[Record]:
        """The newest ``limit`` (of ``event_type`` if given), newest first."""
        letters = await self._journal.dead_letters(limit=limit, event_type=event_type)
        return [letter.as_dict() for letter in letters]

    async def show(self, ids: list[int]) -> list[Record]:
        """Those of ``ids`` that exist, oldest first."""
        return [letter.as_dict() for letter in await self._journal.dead_letters_by_id(ids)]

    async def replay(self, ids: list[int] | None) -> list[int]:
        """Put each back as an event of the journal, for the next start; the ids done.

        Every event and every removal is staged before the one commit: one transaction.
        """
        letters = await self._journal.dead_letters_by_id(ids)
        for letter in letters:
            self._journal.append(replayed(letter.event))
            self._journal.remove_dead_letter(letter.id)
        await self._journal.commit()
        return [letter.id for letter in letters]

    async def purge(self, ids: list[int] | None) -> list[int]:
        """Delete ``ids`` (every one if None) in one transaction; the ids deleted."""
        found = await self._journal.dead_letter_ids(ids)
        for id in found:
            self._journal.remove_dead_letter(id)
        await self._journal.commit()
        return found

    async def close(self) -> None:
        """Close the journal: what was staged is written first."""
        await self._journal.close()
