"""logwatch: follow a log file, count what it says, raise alerts.

The program the tutorial (docs/tutorial.rst) builds step by step. The
log file must exist before it starts (``touch /tmp/app.log``). Run it as
a daemon::

    export LOGWATCH_FILE=/tmp/app.log
    python -m async_nexus run logwatch:build --app-dir docs/examples

or directly, ``LOGWATCH_FILE=/tmp/app.log python docs/examples/logwatch.py``.
SIGINT or SIGTERM stops it gracefully. A journal keeps the lines read and
not yet handled, and where in the file logwatch was: a restart goes on
from there, and lines it handled before are not read again. Settings
come from the environment:

* ``LOGWATCH_FILE`` (required): the file to follow, which must exist;
  lines appended to it are read as they come, across rotations.
* ``LOGWATCH_JOURNAL``: the journal's file (default: ``logwatch.journal``
  in the folder of the log file).
* ``LOGWATCH_SUMMARY``: seconds between summaries (default 60).
* ``LOGWATCH_ALERT_AFTER``: errors from one source that raise an alert
  (default 3).

A log line looks like ``ERROR db: connection refused``: a level, a
source, a message.
"""

# -- the imports ---------------------------------------------------------
from __future__ import annotations

import collections
import logging
import os
import re
from typing import Any, TypedDict

from async_nexus import (
    AsyncEventBoundary,
    AsyncEventNexus,
    Event,
    FileTail,
    NamedEvent,
    Timer,
    run_all,
)
from async_nexus.codec import EventCodec
from async_nexus.journal import SqliteJournal

logger = logging.getLogger("logwatch")


# -- step 1: the events --------------------------------------------------


# A line of the file, as it was read; payload: its text.
LINE = "line"


class LogRecord(TypedDict):
    """The payload of a parsed line.

    A plain dict: the journal stores it and gives it back as it is.
    """

    level: str
    source: str
    message: str


class Alert(NamedEvent):
    """Too many errors from one source.

    Payload: ``{"source": ..., "errors": ...}``.
    """


# A line that is not "LEVEL source: message"; payload: the line.
UNPARSED = "unparsed"
# The timer's tick; payload: the tick count.
SUMMARY = "summary"


# -- step 2: lines in, typed events out ----------------------------------

FORMAT = re.compile(
    r"^(?P<level>[A-Z]+)\s+(?P<source>[\w.-]+):\s*(?P<message>.*)$"
)


def parse(event: Event, queue: Any) -> Event:
    """Handler for ``line``: the line as ``log.<level>``, or ``unparsed``."""
    match = FORMAT.match(event.payload)
    if match is None:
        return Event(event.id, UNPARSED, payload=event.payload)
    level, source, message = match.group("level", "source", "message")
    record = LogRecord(level=level, source=source, message=message)
    # Errors jump the queue: when lines pile up, they go before the chatter.
    priority = -1 if level == "ERROR" else 0
    return Event(event.id, f"log.{level.lower()}", priority, record)


# -- step 3: a filter ----------------------------------------------------


def drop_noise(event: Event, queue: Any) -> bool:
    """Consume blank lines and health checks: nobody needs to see them."""
    if event.type == UNPARSED:
        return not event.payload.strip()
    if not str(event.type).startswith("log."):
        return False
    record: LogRecord = event.payload
    return record["message"].startswith("healthcheck")


# -- step 4: handlers, and a secondary event -----------------------------


class Watch:
    """What logwatch knows: lines per level, errors per source.

    Its methods are the handlers.
    """

    def __init__(self, *, alert_after: int) -> None:
        self.alert_after = alert_after
        self.levels: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    def count(self, event: Event, queue: Any) -> None:
        """Handler for ``log.*``: count the line under its level."""
        self.levels[event.payload["level"]] += 1

    def error(self, event: Event, queue: Any) -> Alert | None:
        """Handler for ``log.error``: count it, and alert.

        Every ``alert_after`` errors of one source, it returns an alert.
        """
        self.count(event, queue)
        source = event.payload["source"]
        self.errors[source] += 1
        if self.errors[source] % self.alert_after == 0:
            payload = {"source": source, "errors": self.errors[source]}
            return Alert(event.id, payload)
        return None

    def unparsed(self, event: Event, queue: Any) -> None:
        """Default handler: whatever no other handler takes."""
        logger.warning(
            "cannot parse line %r; expected 'LEVEL source: message'",
            event.payload,
        )

    def summary(self, event: Event, queue: Any) -> None:
        """Handler for the timer: one line with the counts so far."""
        counts = ", ".join(
            f"{level}={n}" for level, n in sorted(self.levels.items())
        )
        print(
            f"summary #{event.payload}: {counts or 'nothing yet'}", flush=True
        )


# -- step 5: the notifier, a second domain -------------------------------


def build_notifier() -> AsyncEventNexus:
    """The domain that tells people.

    Here it prints; a real one would post to a chat or send mail.
    """
    notifier = AsyncEventNexus()

    @notifier.on(Alert)
    async def notify(event: Event, queue: Any) -> None:
        source, errors = event.payload["source"], event.payload["errors"]
        print(f"ALERT {source}: {errors} errors", flush=True)

    return notifier


# -- step 6: putting it together -----------------------------------------


def build() -> dict[str, AsyncEventNexus]:
    """The factory the runner calls: ``python -m async_nexus run ...``.

    It gives both domains, by name. The notifier comes first: a domain
    comes before the domains that feed it, so it starts first and stops
    last, after logwatch has drained and the last alert has crossed.
    """
    path = os.environ.get("LOGWATCH_FILE")
    if not path:
        raise SystemExit("logwatch: set LOGWATCH_FILE to the file to follow")
    if not os.path.isfile(path):
        raise SystemExit(f"logwatch: {path} does not exist; create it first")
    folder = os.path.dirname(os.path.abspath(path))
    kept_in = os.environ.get(
        "LOGWATCH_JOURNAL", os.path.join(folder, "logwatch.journal")
    )
    alert_after = int(os.environ.get("LOGWATCH_ALERT_AFTER", "3"))
    every = float(os.environ.get("LOGWATCH_SUMMARY", "60"))
    watch = Watch(alert_after=alert_after)

    # Alerts are named events: the journal's codec must know their class.
    codec = EventCodec(named_events=[Alert])
    nexus = AsyncEventNexus(journal=SqliteJournal(kept_in, codec=codec))
    nexus.register(FileTail(path, event_type=LINE, start="beginning"))
    nexus.add_producer(Timer(every, type=Timer.ONGOING, event_type=SUMMARY))
    nexus.add_filter(drop_noise)
    nexus.add_handler(LINE, parse)
    nexus.add_handler("log.*", watch.count)
    nexus.add_handler("log.error", watch.error)
    nexus.add_handler(SUMMARY, watch.summary)
    nexus.add_handler(-1, watch.unparsed)

    notifier = build_notifier()
    boundary = AsyncEventBoundary()
    nexus.add_handler(Alert, boundary)  # alerts leave this domain...
    notifier.add_producer(boundary)  # ...and arrive in the notifier's
    return {"notifier": notifier, "logwatch": nexus}


# -- run it directly -----------------------------------------------------

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run_all(*build().values())
