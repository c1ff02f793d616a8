"""How dead letters are shown: a table, one record in full, or JSON. Private to the command line.

A dead letter from either place (a journal, a Redis dead-letter stream) is turned into a
:data:`Record` first, a plain ``dict`` with the same keys
(:meth:`~async_nexus.dead_letters.DeadLetter.as_dict` for a journal's), so one formatter
serves both.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TextIO

#: ``id``, ``event_id``, ``type``, ``priority``, ``payload``, ``headers``, ``reason``,
#: ``exception``, ``message``, ``attempts``, ``handler``, ``when``; a Redis record adds
#: ``stream`` (where it came from) and ``fields`` (the entry as it was, when it holds no
#: event that can be read).
Record = dict[str, Any]

#: Longest payload shown in a table's cell; ``show`` prints it whole.
PREVIEW = 48


def readable(value: Any) -> str:
    """``value`` on one line, control characters escaped: what a terminal can show safely."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def when(seconds: Any) -> str:
    """A ``time.time()`` as a UTC date and time; ``?`` if it is none."""
    if not isinstance(seconds, (int, float)):
        return "?"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def table(records: Sequence[Record], out: TextIO) -> None:
    """One line per record under a header, columns aligned."""
    if not records:
        print("no dead letters", file=out)
        return
    header = ("ID", "EVENT", "TYPE", "REASON", "EXCEPTION", "ATTEMPTS", "WHEN (UTC)", "PAYLOAD")
    rows = [
        (
            str(r["id"]),
            cut(readable(r["event_id"]), 20),
            cut(readable(r["type"]), 24),
            r["reason"],
            cut(r["exception"] or "-", 28),
            str(r["attempts"]) if r["attempts"] is not None else "-",
            when(r["when"]),
            cut(readable(r["payload"]), PREVIEW) if "fields" not in r else "(not an event)",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out
        )


def details(records: Sequence[Record], out: TextIO) -> None:
    """Each record in full, one field a line, the payload and headers whole."""
    for number, r in enumerate(records):
        if number:
            print(file=out)
        print(f"dead letter {r['id']}", file=out)
        fields = [
            ("event id", readable(r["event_id"])),
            ("type", readable(r["type"])),
            ("priority", readable(r["priority"])),
            ("reason", r["reason"]),
            ("exception", r["exception"] or "-"),
            ("message", readable(r["message"])),
            ("attempts", readable(r["attempts"])),
            ("handler", r["handler"] or "-"),
            ("when (UTC)", when(r["when"])),
        ]
        if "stream" in r:
            fields.append(("stream", r["stream"]))
        if "fields" in r:
            fields.append(("entry", readable(r["fields"])))
        else:
            fields.append(("headers", readable(r["headers"])))
            payload = json.dumps(r["payload"], ensure_ascii=False, indent=2, default=repr)
            fields.append(("payload", payload.replace("\n", "\n" + " " * 14)))
        for name, value in fields:
            print(f"  {name + ':':<11} {value}", file=out)


def as_json(value: Any, out: TextIO) -> None:
    """``value`` as indented JSON; what JSON has no form for, as its ``repr()``."""
    print(json.dumps(value, ensure_ascii=False, indent=2, default=repr), file=out)
