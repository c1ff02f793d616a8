"""``python -m async_nexus dead-letters list|show|replay|purge``: dead letters from a shell.

Works on the dead letters of a journal file (``--journal PATH``) or of a Redis stream
(``--redis URL --stream NAME``, the records of ``NAME:dead``):

* ``list [--limit N] [--type T]`` — the newest first, as a table (``--json``: a list of objects);
* ``show ID...`` — each in full: payload, headers, message;
* ``replay (ID... | --all)`` — back to where they came from: in a journal, each becomes an event
  of the journal again (the next start of its daemon dispatches it) and its dead letter is
  removed, all in one transaction; in Redis, each entry is appended to the stream it came from
  and its record deleted, in one ``MULTI`` each. A replayed event carries the header
  ``replayed`` (see :data:`async_nexus.dead_letters.REPLAYED`);
* ``purge (ID... | --all) [--yes]`` — delete them; ``--all`` asks first unless ``--yes``.

Events are read with the default :class:`~async_nexus.codec.EventCodec` (JSON, no named
events). A daemon whose journal or receiver has a codec of its own (msgpack, or
:class:`~async_nexus.NamedEvent` classes) names it with ``--codec package.module:attribute``:
an ``EventCodec``, or a function that takes no arguments and returns one.

A journal held by a running daemon is not touched: the command says so and points at the
daemon's console, where the same can be done while it runs. Exit codes: ``0`` done, ``1``
something named was not found or could not be done, ``2`` a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

from .._imports import NotImported, import_object
from ..codec import EventCodec
from ..errors import DecodeError, JournalError
from ._journal import Held, JournalLetters, NoJournal
from ._output import as_json, details, table

__all__ = ["add_parser", "run"]

_EXIT_OK, _EXIT_FAILED, _EXIT_USAGE = 0, 1, 2

_CODEC_FORM = (
    "name the codec the daemon gives its journal or receiver as package.module:attribute (for "
    "example myapp.events:codec), where attribute is an EventCodec or a function with no "
    "arguments that returns one"
)


def _load_codec(name: str, app_dir: str) -> EventCodec:
    """The codec ``--codec`` names, imported from ``app_dir``.

    :raises NotImported: it cannot be imported, or it is not (and does not give) an EventCodec.
    """
    found = import_object(name, what="codec", form=_CODEC_FORM, app_dir=app_dir)
    if not isinstance(found, EventCodec) and callable(found):
        try:
            found = found()
        except Exception as exc:
            raise NotImported(
                f"calling codec {name!r} failed: {type(exc).__name__}: {exc}; {_CODEC_FORM}"
            ) from exc
    if not isinstance(found, EventCodec):
        raise NotImported(f"codec {name!r} is a {type(found).__qualname__}, not an EventCodec; {_CODEC_FORM}")
    return found


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text}")
    return value


def _event_type(text: str) -> int | str:
    """An event type as given: digits are an int type, anything else a str type."""
    try:
        return int(text)
    except ValueError:
        return text


def add_parser(commands: Any) -> None:
    """Add the ``dead-letters`` command to ``commands`` (what ``add_subparsers()`` returned)."""
    where = argparse.ArgumentParser(add_help=False)
    place = where.add_argument_group("where the dead letters are (one of)")
    place.add_argument(
        "--journal", type=Path, metavar="PATH", help="a journal file (AsyncEventNexus(journal=PATH))"
    )
    place.add_argument("--redis", metavar="URL", help="a Redis server, such as redis://localhost:6379/0")
    place.add_argument(
        "--stream", metavar="NAME", help="with --redis: the stream whose dead letters (NAME:dead) to use"
    )
    where.add_argument("--json", action="store_true", help="print JSON instead of a table")
    where.add_argument(
        "--codec",
        metavar="MODULE:ATTR",
        help="the EventCodec the events were written with, as package.module:attribute "
        "(default: EventCodec(), JSON without named events)",
    )
    where.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="with --codec: the directory its package is imported from (default: the current one)",
    )

    command = commands.add_parser(
        "dead-letters",
        help="list, show, replay or purge the dead letters of a journal file or a Redis stream",
        description=(
            "Act on dead letters: events whose handling finally failed. Give --journal PATH, or "
            "--redis URL --stream NAME, after the action."
        ),
        epilog="exit codes: 0 done, 1 something named was not found or could not be done, 2 a usage error.",
    )
    actions = command.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[where], help="the newest dead letters first, as a table")
    listing.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="at most N of them (default: 50)"
    )
    listing.add_argument(
        "--type", type=_event_type, metavar="TYPE", help="only events of this type (digits: an int type)"
    )
    show = actions.add_parser("show", parents=[where], help="dead letters in full: payload, headers, message")
    show.add_argument("ids", nargs="+", metavar="ID", help="ids, as 'list' shows them")
    for name, what in (
        ("replay", "send dead letters back where they came from"),
        ("purge", "delete dead letters"),
    ):
        action = actions.add_parser(name, parents=[where], help=f"{what}: the ids given, or --all")
        action.add_argument("ids", nargs="*", metavar="ID", help="ids, as 'list' shows them")
        action.add_argument("--all", action="store_true", help="every dead letter there is")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="with --all: do not ask first")


def run(args: argparse.Namespace, *, stdin: TextIO | None = None) -> int:
    """Do what ``args`` (parsed by the parser :func:`add_parser` built) ask; the exit code."""
    out, err = sys.stdout, sys.stderr
    prefix = f"async-nexus dead-letters {args.action}: error:"
    if (args.journal is None) == (args.redis is None):
        print(f"{prefix} give --journal PATH, or --redis URL --stream NAME (one of them)", file=err)
        return _EXIT_USAGE
    if args.redis is not None and not args.stream:
        print(f"{prefix} --redis needs --stream NAME: the stream whose NAME:dead records to use", file=err)
        return _EXIT_USAGE
    if args.journal is not None and args.stream:
        print(f"{prefix} --stream goes with --redis, not with --journal", file=err)
        return _EXIT_USAGE
    if args.action in ("replay", "purge") and bool(args.ids) == bool(args.all):
        print(f"{prefix} give the ids of the dead letters to {args.action}, or --all (not both)", file=err)
        return _EXIT_USAGE
    codec = None
    if args.codec is not None:
        try:
            codec = _load_codec(args.codec, args.app_dir)
        except NotImported as exc:
            print(f"{prefix} {exc}", file=err)
            return _EXIT_USAGE
    try:
        return asyncio.run(_act(args, codec, stdin or sys.stdin, out, err, prefix))
    except (Held, NoJournal, JournalError) as exc:  # the journal could not be opened: says why
        print(f"{prefix} {exc}{_codec_hint(exc, args)}", file=err)
        return _EXIT_FAILED


def _codec_hint(exc: BaseException, args: argparse.Namespace) -> str:
    """What to do when an event could not be read with the codec given (or the default)."""
    if not isinstance(exc.__cause__, DecodeError):
        return ""
    if args.codec is None:
        return (
            ". From the command line: pass --codec package.module:attribute, naming the daemon's "
            "EventCodec (or a function with no arguments that returns it)"
        )
    return f". --codec {args.codec} is not the codec the events were written with"


async def _act(
    args: argparse.Namespace, codec: EventCodec | None, stdin: TextIO, out: TextIO, err: TextIO, prefix: str
) -> int:
    letters: Any
    if args.journal is not None:
        letters = JournalLetters(args.journal, codec)
    else:
        from ._redis import RedisLetters

        try:
            letters = RedisLetters(args.redis, args.stream, codec)
        except ImportError:
            print(f"{prefix} --redis needs the redis package: pip install 'async-nexus[redis]'", file=err)
            return _EXIT_USAGE
    try:
        return await _on(letters, args, stdin, out, err, prefix)
    except (OSError, JournalError) as exc:
        print(f"{prefix} {letters.where}: {exc}{_codec_hint(exc, args)}", file=err)
        return _EXIT_FAILED
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            print(f"{prefix} {letters.where}: {type(exc).__name__}: {exc}", file=err)
            return _EXIT_FAILED
        raise
    finally:
        await letters.close()


async def _on(
    letters: Any, args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO, prefix: str
) -> int:
    try:
        ids = [letters.parse_id(text) for text in getattr(args, "ids", ())] or None
    except ValueError as exc:  # only here: any other ValueError is a fault, with its traceback
        print(f"{prefix} {exc}", file=err)
        return _EXIT_USAGE
    if args.action == "list":
        records = await letters.newest(args.limit, args.type)
        (as_json if args.json else table)(records, out)
        return _EXIT_OK
    if args.action == "show":
        records = await letters.show(ids)
        (as_json if args.json else details)(records, out)
        return _missing(ids, [r["id"] for r in records], err, prefix)
    if args.action == "purge" and args.all and not args.yes:
        count = await letters.count()
        if not count:
            if args.json:
                as_json({"deleted": []}, out)
            else:
                print(f"no dead letters in {letters.where}", file=out)
            return _EXIT_OK
        # Asked on stderr, as rm -i does: what --json prints on stdout stays JSON alone.
        print(
            f"Delete all {count} dead letters of {letters.where}? This cannot be undone. [y/N] ",
            end="",
            file=err,
        )
        err.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print(f"{prefix} not confirmed, nothing deleted (pass --yes to skip the question)", file=err)
            return _EXIT_FAILED
    done = await (letters.replay if args.action == "replay" else letters.purge)(ids)
    if args.json:
        as_json({"replayed" if args.action == "replay" else "deleted": done}, out)
    elif args.action == "replay":
        if args.journal is not None:
            print(f"replayed {len(done)}: the next start of the daemon on it dispatches them", file=out)
        else:
            print(f"replayed {len(done)} to the streams they came from", file=out)
    else:
        print(f"deleted {len(done)}", file=out)
    return _missing(ids, done, err, prefix)


def _missing(ids: list[Any] | None, found: list[Any], err: TextIO, prefix: str) -> int:
    if ids is None:
        return _EXIT_OK
    missing = [id for id in ids if id not in set(found)]
    if not missing:
        return _EXIT_OK
    print(f"{prefix} no dead letter with the id {', '.join(map(str, missing))} (see 'list')", file=err)
    return _EXIT_FAILED
