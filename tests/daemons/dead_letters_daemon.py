"""A daemon with a journal, for tests/test_dead_letters_cli.py.

``python -m async_nexus run tests.daemons.dead_letters_daemon:nexus`` with the environment
variable ``DEAD_LETTERS_JOURNAL`` naming the journal file. Its handler of ``"job"`` prints
``handled <id> <headers as JSON>`` for each event (replayed ones at start included) when
``DEAD_LETTERS_FIXED=1``, and raises otherwise. It prints ``READY`` once it runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from async_nexus import AsyncEventNexus, Event, EventProducer


class Ready(EventProducer):
    async def start(self) -> None:
        print("READY", flush=True)


def nexus() -> AsyncEventNexus:
    built = AsyncEventNexus(journal=os.environ["DEAD_LETTERS_JOURNAL"])

    @built.on("job")
    def job(event: Event, queue: Any) -> None:
        if os.environ.get("DEAD_LETTERS_FIXED") != "1":
            raise RuntimeError("not fixed yet")
        print("handled", event.id, json.dumps(event.headers, sort_keys=True), flush=True)

    built.add_producer(Ready())
    return built
