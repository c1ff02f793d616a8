"""A receiving process for tests/test_nats_cluster.py, meant to be SIGKILLed mid-handling.

``python tests/nats_receiver_process.py SERVERS STREAM GROUP DEAD_SUBJECT OUTFILE MAX_IN_FLIGHT ACK_WAIT``
reads STREAM through the durable consumer GROUP (SERVERS: comma-separated URLs), holding at
most MAX_IN_FLIGHT messages, and appends the id of every event it starts handling to OUTFILE
(one per line, flushed at once). Its handler never finishes, so it acknowledges nothing: every
message it fetched is held, and kept alive, until the process dies.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from async_nexus import AsyncEventNexus, Event
from async_nexus.transports.nats import JetStreamReceiver


async def main(
    servers: list[str], stream: str, group: str, dead: str, outfile: str, max_in_flight: int, ack_wait: float
) -> None:
    nexus = AsyncEventNexus()
    nexus.add_producer(
        JetStreamReceiver(
            servers,
            stream,
            group=group,
            dead_letter_subject=dead,
            max_in_flight=max_in_flight,
            ack_wait=ack_wait,
        )  # fmt: skip
    )
    with open(outfile, "a", buffering=1) as out:

        async def hold(event: Event, queue: Any) -> None:
            out.write(f"{event.id}\n")
            await asyncio.get_running_loop().create_future()  # until the process dies

        nexus.add_handler(-1, hold)
        await nexus.loop_forever()


if __name__ == "__main__":
    servers, stream, group, dead, outfile, max_in_flight, ack_wait = sys.argv[1:8]
    asyncio.run(main(servers.split(","), stream, group, dead, outfile, int(max_in_flight), float(ack_wait)))
