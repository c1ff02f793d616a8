"""``python -m benchmarks.nats_failover [--count N] [--rate R] [--sigterm]``: the stream leader
of a 3-node JetStream cluster is SIGKILLed (or stopped with SIGTERM) while events cross it; what
was acknowledged, handled, duplicated and lost, and how long the stream had no leader.

For each nats-server build that is installed (Debian's 2.9 and the release next to this Python),
a cluster of three is started on free loopback ports (``tests/nats_cluster.py``), a stream with
``replicas=3`` made with :func:`~async_nexus.transports.nats.ensure_stream`, and a
:class:`~async_nexus.transports.nats.JetStreamSender` in one nexus publishes numbered events at a
steady rate to a :class:`~async_nexus.transports.nats.JetStreamReceiver` in another. A part of the
way in, the stream's leader is killed. The run ends once the sender has every event acknowledged
and the receiver's consumer has nothing left pending or unacknowledged.

:func:`leader_kill` is the scenario; ``tests/test_nats_cluster.py`` runs it with a smaller count
and asserts on its :class:`Figures`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import importlib
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import nats
import nats.errors
from nats.aio.client import Client

from async_nexus import AsyncEventNexus, Event
from async_nexus.transports.nats import JetStreamReceiver, JetStreamSender, ensure_stream

TESTS = Path(__file__).resolve().parent.parent / "tests"


class Node(Protocol):
    name: str

    def kill(self) -> None: ...

    def stop(self) -> None: ...


class Cluster(Protocol):
    @property
    def urls(self) -> list[str]: ...

    def node(self, name: str) -> Node: ...


@dataclasses.dataclass
class Figures:
    """What one leader kill came to."""

    stream: str  #: the stream's name
    count: int  #: events handed to the sender
    acknowledged: int  #: events JetStream acknowledged to the sender (``sender.sent``)
    stored: int  #: messages in the stream at the end
    handled: int  #: handler calls in the receiving nexus
    distinct: int  #: distinct events handled
    duplicates: int  #: handled - distinct: deliveries again of events handled before
    lost: int  #: acknowledged events never handled
    publish_duplicates: int  #: retried publishes the server had stored already (dropped)
    killed: str  #: the stream leader that was killed
    how: str  #: how: "SIGKILL" or "SIGTERM"
    new_leader: str  #: the leader after it
    leaderless: float  #: seconds from the kill until a client saw the new stream leader
    backlog: int  #: the most events the sender held unacknowledged at once (the failover's)
    seconds: float  #: the whole run, from the first event to the last acknowledgement

    def lines(self, build: str) -> list[str]:
        return [
            f"{build}: {self.count} events at a steady rate, stream leader {self.killed} "
            f"{self.how}ed, new leader {self.new_leader}",
            f"  acknowledged by the server  {self.acknowledged}",
            f"  stored in the stream        {self.stored}",
            f"  handled                     {self.handled} ({self.distinct} distinct)",
            f"  duplicates                  {self.duplicates}",
            f"  lost                        {self.lost}",
            f"  publishes deduplicated      {self.publish_duplicates}",
            f"  time without a leader       {self.leaderless:.1f} s",
            f"  sender backlog at its peak  {self.backlog}",
        ]


async def stream_leader(client: Client, stream: str, request_timeout: float = 0.5) -> str | None:
    """The stream's leader as the cluster reports it now, or ``None`` when it has none."""
    try:
        info = await client.jetstream(timeout=request_timeout).stream_info(stream)
    except (nats.errors.Error, asyncio.TimeoutError):
        return None
    cluster = info.cluster
    return cluster.leader if cluster is not None and cluster.leader else None


async def wait_stream_leader(
    client: Client, stream: str, *, other_than: str | None = None, timeout: float = 30.0
) -> str:
    """The stream's leader, once it has one (other than ``other_than``)."""
    deadline = time.monotonic() + timeout
    while True:
        leader = await stream_leader(client, stream)
        if leader is not None and leader != other_than:
            return leader
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {stream!r} has no leader after {timeout} s")
        await asyncio.sleep(0.05)


async def until(condition: Any, timeout: float, what: str) -> None:
    """Wait until ``await condition()`` is true, checking every 50 ms, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def leader_kill(
    cluster: Cluster,
    *,
    count: int = 3000,
    rate: float = 300.0,
    kill_after: float = 3.0,
    graceful: bool = False,
    max_in_flight: int = 200,
    ack_wait: float = 3.0,
    timeout: float = 60.0,
) -> Figures:
    """Publish ``count`` events at ``rate`` a second; SIGKILL the stream leader after ``kill_after`` s.

    With ``graceful``, the leader gets a SIGTERM instead, and shuts down cleanly.

    Returns once the sender has every event acknowledged, every acknowledged event was
    handled and the consumer has nothing pending or unacknowledged left (so no redelivery is
    still to come), or raises :class:`TimeoutError` after ``timeout`` s of waiting for one.
    """
    urls = cluster.urls
    tag = uuid.uuid4().hex[:10]
    stream, subject, dead = f"F{tag}", f"f{tag}.events", f"f{tag}.dead"
    await ensure_stream(urls, stream, [subject], replicas=3, dead_letter_subject=dead)
    admin = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=quietly)
    try:
        await wait_stream_leader(admin, stream, timeout=timeout)
        handled: collections.Counter[int] = collections.Counter()

        async def record(event: Event, queue: Any) -> None:
            handled[event.payload] += 1

        sender = JetStreamSender(urls, subject, publish_timeout=2.0, retry_max=0.5)
        receiver = JetStreamReceiver(
            urls, stream, group="failover", dead_letter_subject=dead,
            max_in_flight=max_in_flight, ack_wait=ack_wait, retry_max=0.5,
        )  # fmt: skip
        async with AsyncEventNexus() as source, AsyncEventNexus() as target:
            source.add_handler("n", sender)
            target.add_handler("n", record)
            target.add_producer(receiver)
            await receiver.wait_ready(timeout)

            async def publish() -> None:
                for number in range(count):
                    delay = begun + number / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await source.ingest(Event(number, "n", 0, number))

            backlog = 0

            async def watch_backlog() -> None:
                nonlocal backlog
                while True:
                    backlog = max(backlog, sender.pending)
                    await asyncio.sleep(0.02)

            begun = time.monotonic()
            publishing = asyncio.create_task(publish())
            watching = asyncio.create_task(watch_backlog())
            await asyncio.sleep(kill_after)  # the publisher runs steadily meanwhile: the kill point
            killed = await wait_stream_leader(admin, stream, timeout=timeout)
            killed_at = time.monotonic()
            if graceful:  # SIGTERM, waiting for the exit in a thread: the nexuses run on
                await asyncio.to_thread(cluster.node(killed).stop)
            else:
                cluster.node(killed).kill()
            new_leader = await wait_stream_leader(admin, stream, other_than=killed, timeout=timeout)
            leaderless = time.monotonic() - killed_at
            await asyncio.wait_for(publishing, timeout)
            await source.join()
            await sender.flush(timeout)
            watching.cancel()
            seconds = time.monotonic() - begun

            async def all_handled() -> bool:
                return len(handled) >= sender.sent

            await until(all_handled, timeout, "every acknowledged event handled")

            async def consumer_settled() -> bool:
                try:
                    info = await admin.jetstream(timeout=1.0).consumer_info(stream, "failover")
                except (nats.errors.Error, asyncio.TimeoutError):
                    return False
                return bool(info.num_pending == 0 and info.num_ack_pending == 0)

            # Nothing pending or awaiting an ack at the consumer: no redelivery is still to come.
            await until(consumer_settled, timeout, "the consumer settled")
            info = await admin.jetstream(timeout=2.0).stream_info(stream)
        await sender.close()
    finally:
        await admin.close()
    distinct = len(handled)
    total = sum(handled.values())
    return Figures(
        stream=stream,
        count=count,
        acknowledged=sender.sent,
        stored=int(info.state.messages),
        handled=total,
        distinct=distinct,
        duplicates=total - distinct,
        lost=sum(1 for number in range(count) if number not in handled),
        publish_duplicates=sender.duplicates,
        killed=killed,
        how="SIGTERM" if graceful else "SIGKILL",
        new_leader=new_leader,
        leaderless=leaderless,
        backlog=backlog,
        seconds=seconds,
    )


async def quietly(exc: Exception) -> None:
    """An error callback for the admin client: the servers it loses are killed on purpose."""


def harness() -> Any:
    """``tests/nats_cluster.py`` and ``tests/nats_server.py`` (the test harness), imported."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module("nats_cluster"), importlib.import_module("nats_server")


async def run(count: int, rate: float, kill_after: float, graceful: bool) -> int:
    cluster_module, server_module = harness()
    failures = 0
    for build in ("debian", "release"):
        binary = server_module.nats_server_binary(build)
        if binary is None:
            print(f"{build}: nats-server is not installed ({', '.join(server_module.BUILDS[build])})")
            continue
        cluster = cluster_module.NatsCluster(binary)
        with cluster:
            figures = await leader_kill(
                cluster, count=count, rate=rate, kill_after=kill_after, graceful=graceful
            )
        print("\n".join(figures.lines(f"{build} ({binary})")), flush=True)
        if figures.lost or figures.acknowledged != count:
            failures += 1
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nats_failover", description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="events to send (10000)")
    parser.add_argument("--rate", type=float, default=500.0, help="events a second (500)")
    parser.add_argument("--kill-after", type=float, default=5.0, help="seconds before the kill (5)")
    parser.add_argument(
        "--sigterm", action="store_true", help="stop the leader with SIGTERM instead of SIGKILL"
    )
    parser.add_argument("--verbose", action="store_true", help="log the transport's retries too")
    args = parser.parse_args(argv)
    if not args.verbose:
        # The retries while the stream has no leader are the point of the run, not news.
        logging.getLogger("async_nexus.nats").setLevel(logging.ERROR)
    return asyncio.run(run(args.count, args.rate, args.kill_after, args.sigterm))


if __name__ == "__main__":
    sys.exit(main())
