"""The dead letters of the nexuses a console shows, as JSON, and what its buttons do to them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..dead_letters import DeadLetter
from ..errors import BadCall
from ..nexus import AsyncEventNexus
from ._http import HttpError

# Internal: the console's server answers with these.
__all__: list[str] = []

#: Characters of a payload shown in the table; the rest is cut, and the cut said.
PREVIEW_CHARS = 300
#: The most dead letters one listing returns.
MAX_LIMIT = 1000

_INTEGER = re.compile(r"-?[0-9]+")


def preview(payload: object) -> str:
    """A readable text of ``payload``: JSON where it can be, ``repr()`` where not; cut when large."""
    try:
        text = json.dumps(payload, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(payload)
    if len(text) > PREVIEW_CHARS:
        text = f"{text[:PREVIEW_CHARS]}… ({len(text) - PREVIEW_CHARS} more characters)"
    return text


def as_json(nexus_name: str, letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as the API lists it: its fields, the nexus's name, the payload's preview."""
    return {**letter.as_dict(), "nexus": nexus_name, "payload": preview(letter.event.payload)}


class DeadLetters:
    """Lists, replays and deletes the dead letters of the nexuses by name."""

    def __init__(self, nexuses: Mapping[str, AsyncEventNexus]) -> None:
        self.nexuses = nexuses

    async def listing(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        """``GET /api/dead-letters``: ``limit`` (per nexus), ``type`` and ``nexus`` from the query."""
        limit_text = _one(query, "limit") or "100"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise HttpError(400, f"limit is a whole number from 1 to {MAX_LIMIT}, not {limit_text[:40]!r}")
        type_text = _one(query, "type")
        # The query string has no types: a type written as an integer is the int type.
        event_type: int | str | None = type_text
        if type_text is not None and _INTEGER.fullmatch(type_text):
            event_type = int(type_text)
        found: list[dict[str, Any]] = []
        for name, nexus in self._chosen(_one(query, "nexus")).items():
            try:
                letters = await nexus.dead_letters(limit=int(limit_text), event_type=event_type)
            except BadCall as exc:  # the nexus stopped, and its journal is closed
                raise HttpError(409, f"nexus {name}: {exc}") from None
            found += [as_json(name, letter) for letter in letters]
        found.sort(key=lambda letter: -letter["when"])
        return found

    async def act(self, action: str, body: object) -> int:
        """``POST /api/dead-letters/replay`` or ``/delete``: how many were replayed or deleted."""
        if not isinstance(body, dict):
            raise HttpError(400, 'the body is a JSON object: {"ids": [1, 2]} or {"all": true}')
        unknown = set(body) - {"ids", "all", "nexus"}
        if unknown:
            raise HttpError(400, f"unknown keys {sorted(unknown)}; the body takes ids, all and nexus")
        every = body.get("all", False)
        ids = body.get("ids")
        if not isinstance(every, bool):
            raise HttpError(400, f"all is true or false, not {every!r}")
        if every == (ids is not None):
            raise HttpError(400, 'give either "ids": [...] or "all": true, not both and not neither')
        nexus_name = body.get("nexus")
        if nexus_name is not None and not isinstance(nexus_name, str):
            raise HttpError(400, f"nexus is the name of a nexus, not {nexus_name!r}")
        chosen = self._chosen(nexus_name)
        if ids is not None:
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise HttpError(400, "ids is a list of the dead letters' ids (whole numbers)")
            if len(chosen) > 1:
                raise HttpError(
                    400,
                    f"ids are per nexus, and this console shows {len(chosen)}; say which with "
                    f'"nexus": one of {sorted(chosen)}',
                )
        done = 0
        for name, nexus in chosen.items():
            try:
                if action == "replay":
                    done += await nexus.replay_dead_letters(ids, all=every)
                else:
                    done += await nexus.delete_dead_letters(ids, all=every)
            except BadCall as exc:  # the nexus stopped: it takes nothing back
                raise HttpError(409, f"nexus {name}: {exc}") from None
        return done

    def _chosen(self, name: str | None) -> Mapping[str, AsyncEventNexus]:
        if name is None:
            return self.nexuses
        if name not in self.nexuses:
            raise HttpError(400, f"no nexus named {name!r} here; the nexuses are {sorted(self.nexuses)}")
        return {name: self.nexuses[name]}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None
