"""The NATS JetStream transport on a 3-node JetStream cluster, with servers and processes killed.

Each build (Debian's 2.9 and the current release) forms a cluster of three on free loopback
ports (tests/nats_cluster.py), shared by the tests of this module; a test that kills a node
leaves it to the next test's ``cluster`` fixture to start it again on the same ports and store.
These are slow fault tests (marked ``fault``): CI runs them once, on the main Python.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats_cluster import NatsCluster
from support import Collector
from test_runner import Daemon, daemons, launch  # noqa: F401 (daemons: a fixture)

from async_nexus import AsyncEventNexus, Event
from async_nexus.codec import EventCodec
from async_nexus.runner import EXIT_OK
from async_nexus.transports.nats import JetStreamReceiver, ensure_stream
from benchmarks.nats_failover import leader_kill, quietly, stream_leader, wait_stream_leader

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shared_cluster(nats_binary: str) -> Iterator[NatsCluster]:
    with NatsCluster(nats_binary) as cluster:
        yield cluster


@pytest.fixture
def cluster(shared_cluster: NatsCluster) -> Iterator[NatsCluster]:
    """The build's cluster with all three nodes running and a meta leader, after each test too."""
    for node in shared_cluster.nodes:
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGCONT)  # in case a test stopped it and failed
        if not node.running:
            node.start()  # the same ports and store: it rejoins with what it had
    shared_cluster.wait_meta_leader()
    yield shared_cluster
    for node in shared_cluster.nodes:
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGCONT)


@pytest.fixture
async def admin(cluster: NatsCluster) -> AsyncIterator[Client]:
    client = await nats.connect(
        cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=quietly
    )
    yield client
    await client.close()


async def fresh_stream(cluster: NatsCluster, admin: Client) -> tuple[str, str, str]:
    """A new stream with three replicas (and its dead-letter stream): name, subject, dead subject."""
    tag = uuid.uuid4().hex[:10]
    stream, subject, dead = f"C{tag}", f"c{tag}.events", f"c{tag}.dead"
    await ensure_stream(cluster.urls, stream, [subject], replicas=3, dead_letter_subject=dead)
    await wait_stream_leader(admin, stream)
    return stream, subject, dead


async def until_true(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("graceful", [False, True], ids=["sigkill", "sigterm"])
async def test_the_stream_leader_killed_or_stopped_while_events_cross_loses_nothing_acknowledged(
    cluster: NatsCluster, admin: Client, graceful: bool
) -> None:
    count, rate, max_in_flight = 3000, 300.0, 200
    figures = await leader_kill(
        cluster,
        count=count,
        rate=rate,
        kill_after=3.0,
        max_in_flight=max_in_flight,
        ack_wait=3.0,
        graceful=graceful,
    )
    print(*figures.lines(cluster.binary), sep="\n")
    # The sender flushed once the cluster had a new leader: every event it accepted was acknowledged.
    assert figures.acknowledged == count, figures
    # A publish retried after the failover carried its Nats-Msg-Id: each event is stored once.
    assert figures.stored == count, figures
    # Every acknowledged event was handled at least once.
    assert figures.lost == 0 and figures.distinct == count, figures
    # Duplicates are messages delivered again because the consumer's new leader had no record
    # of their acknowledgement: those the receiver held when the leader died (at most
    # max_in_flight, as it fetches only with room; their acks went to the dead server), and
    # those the old leader delivered and saw acknowledged in the last moment before the kill,
    # before its followers had that state (well under a second of the publishing rate).
    assert figures.duplicates <= max_in_flight + rate, figures
    assert figures.new_leader != figures.killed
    assert figures.leaderless < 30, figures  # SIGTERM: the leadership moves before the exit

    # The killed node starts again on its ports and store, and catches up with the stream.
    cluster.node(figures.killed).start()

    async def caught_up() -> bool:
        try:
            info = await admin.jetstream(timeout=1.0).stream_info(figures.stream)
        except (nats.errors.Error, asyncio.TimeoutError):
            return False  # the cluster is busy taking the node back: ask again
        replicas = info.cluster.replicas if info.cluster is not None else None
        return bool(replicas) and len(replicas) == 2 and all(r.current and not r.offline for r in replicas)

    deadline = time.monotonic() + 30
    while not await caught_up():
        assert time.monotonic() < deadline, "the restarted node did not catch up within 30 s"
        await asyncio.sleep(0.1)


async def test_a_receiving_process_killed_mid_handling_hands_its_events_to_the_survivor(
    cluster: NatsCluster, admin: Client, tmp_path: Path
) -> None:
    stream, subject, dead = await fresh_stream(cluster, admin)
    total, held, ack_wait = 60, 20, 2.0
    for number in range(total):
        await admin.jetstream().publish(subject, EventCodec().encode(Event(number, "n", 0, number)))
    outfile = tmp_path / "started"
    outfile.touch()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests" / "nats_receiver_process.py"),
        ",".join(cluster.urls), stream, "work", dead, str(outfile), str(held), str(ack_wait),
        cwd=ROOT,
    )  # fmt: skip
    try:
        # The process fetched its share (it holds up to `held`) and is handling the first one.
        await until_true(lambda: outfile.read_text().strip() != "", 30, "the process started handling")

        async def consumer_holds() -> int:
            try:
                info = await admin.jetstream(timeout=1.0).consumer_info(stream, "work")
            except (nats.errors.Error, asyncio.TimeoutError):
                return 0  # not created yet, or the cluster is slow to answer: ask again
            return int(info.num_ack_pending)

        deadline = time.monotonic() + 10
        while await consumer_holds() < held:
            assert time.monotonic() < deadline, "the process did not fetch its share"
            await asyncio.sleep(0.02)
        survivor = Collector()
        async with AsyncEventNexus() as nexus:
            nexus.add_handler(-1, survivor)
            receiver = JetStreamReceiver(cluster.urls, stream, group="work", dead_letter_subject=dead)
            nexus.add_producer(receiver)
            # The survivor gets what the process does not hold; the process keeps its share alive.
            await survivor.wait(total - held, timeout=20)
            assert len(survivor.events) == total - held
            before_kill = {event.id for event in survivor.events}
            process.kill()  # SIGKILL, mid-handling: nothing it held was acknowledged
            await process.wait()
            killed_at = time.monotonic()
            events = await survivor.wait(total, timeout=20)
            redelivered_after = time.monotonic() - killed_at
            await until_true(lambda: receiver.acknowledged == total, 10, "the survivor acknowledged all")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # What the dead process had started handling came to the survivor after the kill.
    started = {int(line) for line in outfile.read_text().split()}
    assert started and started <= {event.id for event in events} - before_kill
    assert sorted(event.id for event in events) == list(range(total))
    # Redelivered once ack_wait had passed since the process's last sign of life.
    assert redelivered_after < ack_wait + 10


async def test_sigterm_of_a_sending_daemon_with_a_full_buffer_loses_nothing(
    cluster: NatsCluster,
    admin: Client,
    daemons: list[Daemon],  # noqa: F811
) -> None:
    stream, subject, _ = await fresh_stream(cluster, admin)
    count = 2000
    env = {
        "FORWARD_SERVERS": ",".join(cluster.urls),
        "FORWARD_SUBJECT": subject,
        "FORWARD_COUNT": str(count),
        "FORWARD_CLOSE_TIMEOUT": "60",
    }
    processes = [node.process for node in cluster.nodes if node.process is not None]
    # The whole cluster frozen: the daemon's publishes get no acknowledgement, so its sender
    # holds every event it accepted.
    for process in processes:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        daemon = await launch(daemons, "tests.daemons.nats_forwarder:build", env=env)
        match = await daemon.wait_line(r"PRODUCED (\d+) BUFFERED (\d+)", stream="stdout")
        assert int(match.group(2)) == count, daemon.output()
        daemon.send(signal.SIGTERM)
        await daemon.wait_line(r"SIGTERM received: stopping gracefully")
    finally:
        for process in processes:
            os.kill(process.pid, signal.SIGCONT)
    # The graceful stop publishes what was buffered as the cluster comes back, then exits.
    assert await daemon.exit_code() == EXIT_OK, daemon.output()
    info = await admin.jetstream(timeout=5.0).stream_info(stream)
    assert info.state.messages == count, daemon.output()
    assert await stream_leader(admin, stream) is not None
