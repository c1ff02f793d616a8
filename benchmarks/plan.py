"""What the suite measures: the scenarios, their sizes (full and ``--quick``) and the goals."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Plan:
    """How many events each scenario moves and how often it is repeated."""

    events: int  # scenarios 1 to 3
    fanout_events: int
    latency_events: int
    overload_events: int
    redis_events: int
    io_events: int  # scenario 8
    io_overload_events: int
    durable_events: int  # scenario 9, at each synchronous level
    durable_latency_events: int
    warmup: int
    runs: int  # the median of these is reported
    memory_runs: int
    io_memory_runs: int
    durable_runs: int  # rounds of scenario 9; the median of these is reported
    filetail_lines: int  # scenario 10: the lines of the file
    filetail_runs: int  # rounds of scenario 10; the median of these is reported
    nats_events: int  # scenario 11

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


FULL = Plan(
    200_000,
    20_000,
    50_000,
    1_000_000,
    100_000,
    io_events=10_000,
    io_overload_events=1_000_000,
    durable_events=100_000,
    durable_latency_events=50_000,
    warmup=1,
    runs=5,
    memory_runs=5,
    io_memory_runs=1,
    durable_runs=3,
    filetail_lines=200_000,
    filetail_runs=5,
    nats_events=50_000,
)
QUICK = Plan(
    5_000,
    1_000,
    5_000,
    50_000,
    5_000,
    io_events=500,
    io_overload_events=20_000,
    durable_events=2_000,
    durable_latency_events=2_000,
    warmup=0,
    runs=1,
    memory_runs=1,
    io_memory_runs=1,
    durable_runs=1,
    filetail_lines=2_000,
    filetail_runs=1,
    nats_events=1_000,
)

#: The implementations that also run on uvloop: those the goals compare with. aiopubsub
#: and pyventus spend their time in a task per event either way, and would double the run.
ON_UVLOOP = ("ceiling", "plain_queue", "nexus", "nexus_v1", "pyee_peer", "blinker_peer")

#: Fanout width of scenario 4, and the registered types of scenario 3.
FANOUT = 10
TYPES = 1_000
#: Scenario 10: at most how many lines one event of a batching FileTail carries.
FILETAIL_BATCH = 1_000

#: Scenario 8: how many handler calls may run at once, the handler's await (seconds), the
#: keys of the keyed variant, and the shorter await of its overload (1 ms: 1,000,000 events
#: take about ten seconds at 100 at once).
IO_CONCURRENCY = 100
IO_SLEEP = 0.005
IO_KEYS = 1_000
IO_OVERLOAD_SLEEP = 0.001
#: What scenario 8 would reach if running a handler cost nothing: computed, not measured.
IO_IDEAL = IO_CONCURRENCY / IO_SLEEP
#: Who takes part in scenario 8, on the default loop only: the await dominates, so uvloop
#: would change little and double its length. The other hubs await one handler at a time,
#: or (blinker, 1.0.2) in the producer's own call; ``semaphore`` is measured only here.
#: Its overload is bound by the CPU (about 25 s per 1,000,000 events on a slow machine), so
#: it runs once, and only for the nexus: the semaphore is bounded by construction, and what
#: pyee's lack of a limit costs (a task per event) scenario 6 shows already.
IO_IMPLS = {
    "io_bound": ("semaphore", "nexus", "pyee_peer"),
    "io_bound_keyed": ("nexus",),
    "io_overload": ("nexus",),
}


class Scenario(NamedTuple):
    title: str
    unit: str
    higher_is_better: bool


#: Result key -> how it is shown, in table order.
SCENARIOS = {
    "throughput_async": Scenario("1: one async handler", "events/s", True),
    "throughput_sync": Scenario("2: one sync handler", "events/s", True),
    "routing_1000": Scenario(f"3: routing, {TYPES:,} types", "events/s", True),
    "routing_1": Scenario("3: routing, 1 type", "events/s", True),
    "fanout": Scenario(f"4: fanout to {FANOUT}", "events/s", True),
    "latency": Scenario("5: latency p99", "µs", False),
    "overload": Scenario("6: memory growth", "MB", False),
    "redis": Scenario("7: Redis crossing", "events/s", True),
    "io_bound": Scenario(f"8: I/O-bound, {IO_CONCURRENCY} at once", "events/s", True),
    "io_bound_keyed": Scenario(f"8: I/O-bound, {IO_KEYS:,} keys", "events/s", True),
    "io_overload": Scenario("8: I/O-bound, memory growth", "MB", False),
    "durable_full": Scenario("9: durable, synchronous=full", "events/s", True),
    "durable_normal": Scenario("9: durable, synchronous=normal", "events/s", True),
    "durable_latency": Scenario("9: durable, await ingest at half rate", "ms", False),
    "filetail": Scenario("10: file tail into a handler", "lines/s", True),
    "filetail_journal": Scenario("10: file tail, with a journal", "lines/s", True),
    "filetail_batch": Scenario(f"10: file tail, batches of {FILETAIL_BATCH:,}", "lines/s", True),
    "filetail_batch_journal": Scenario(
        f"10: file tail, batches of {FILETAIL_BATCH:,}, with a journal", "lines/s", True
    ),
    "nats": Scenario("11: NATS JetStream crossing", "events/s", True),
}

#: The scenarios that cross processes and drive their own peers (benchmarks/redis_scenario.py
#: and benchmarks/nats_scenario.py), in processes of their own.
OWN_PEERS = ("redis", "nats")

#: The scenarios measured as the growth of a fresh process's peak resident memory.
MEMORY = ("overload", "io_overload")

#: Scenario 9 (benchmarks/durable.py): its result keys, and ``--only durable`` for all three.
DURABLE = ("durable_full", "durable_normal", "durable_latency")
#: Scenario 10 (benchmarks/filetail.py): its result keys, and ``--only filetail`` for all four.
FILETAIL = ("filetail", "filetail_journal", "filetail_batch", "filetail_batch_journal")
GROUPS: dict[str, tuple[str, ...]] = {"durable": DURABLE, "filetail": FILETAIL}
#: Scenario 9: the producer tasks that feed the nexus at once, each awaiting its ingest().
DURABLE_PRODUCERS = 100


def measured(key: str, impl: str, loop: str = "asyncio") -> bool:
    """Whether ``impl`` takes part in scenario ``key`` on ``loop``.

    Scenarios 9 and 10 have peers of their own, driven by benchmarks/durable.py and
    benchmarks/filetail.py: none of these.
    """
    if key in DURABLE or key in FILETAIL:
        return False
    if key in IO_IMPLS:
        return loop == "asyncio" and impl in IO_IMPLS[key]
    return impl != "semaphore" and (loop == "asyncio" or impl in ON_UVLOOP)


def child_tasks(plan: Plan) -> list[list[list[Any]]]:
    """The in-process scenarios, in groups: each group is the work of one child.

    Latency goes with scenario 1, whose rate it needs.
    """
    return [
        [["throughput_async", {"n": plan.events}], ["latency", {"n": plan.latency_events}]],
        [["throughput_sync", {"n": plan.events}]],
        [
            ["routing", {"n": plan.events, "types": TYPES, "key": "routing_1000"}],
            ["routing", {"n": plan.events, "types": 1, "key": "routing_1"}],
        ],
        [["fanout", {"n": plan.fanout_events, "handlers": FANOUT}]],
        [
            ["io_bound", {"n": plan.io_events, "sleep": IO_SLEEP, "concurrency": IO_CONCURRENCY}],
            [
                "io_bound",
                {
                    "n": plan.io_events,
                    "sleep": IO_SLEEP,
                    "concurrency": IO_CONCURRENCY,
                    "keys": IO_KEYS,
                    "key": "io_bound_keyed",
                },
            ],
        ],
    ]


class Goal(NamedTuple):
    text: str
    key: str
    peer: str  # implementation compared with; "" for an absolute goal
    bound: float
    at_least: bool


GOALS = [
    Goal("one async handler >= 1.3x asyncio.Queue", "throughput_async", "plain_queue", 1.3, True),
    Goal("one async handler >= 0.6x ceiling", "throughput_async", "ceiling", 0.6, True),
    Goal("one async handler >= 3.5x async-nexus 1.0.2", "throughput_async", "nexus_v1", 3.5, True),
    Goal("one async handler >= 8x pyee", "throughput_async", "pyee_peer", 8.0, True),
    Goal("one sync handler >= 2x blinker", "throughput_sync", "blinker_peer", 2.0, True),
    Goal("routing: per-event cost with 1,000 types <= 1.10x that with 1", "routing", "", 1.10, False),
    Goal("memory growth under overload < 30 MB", "overload", "", 30.0, False),
    Goal("latency p99 < 100 µs", "latency", "", 100.0, False),
    Goal("Redis crossing >= 0.6x plain redis-py", "redis", "redis_py", 0.6, True),
    Goal(f"I/O-bound, {IO_CONCURRENCY} at once >= 0.85x the ideal", "io_bound", "ideal", 0.85, True),
    Goal(
        f"I/O-bound, {IO_CONCURRENCY} at once >= 1.0x asyncio.Semaphore", "io_bound", "semaphore", 1.0, True
    ),
    Goal("memory growth under I/O-bound overload < 30 MB", "io_overload", "", 30.0, False),
    Goal("durable, synchronous=full >= 20x persist-queue", "durable_full", "persist_queue", 20.0, True),
    Goal("durable, synchronous=normal >= 20x persist-queue", "durable_normal", "persist_queue", 20.0, True),
    Goal("durable, synchronous=full >= 0.5x bare sqlite3", "durable_full", "sqlite_floor", 0.5, True),
    Goal("durable, synchronous=normal >= 0.5x bare sqlite3", "durable_normal", "sqlite_floor", 0.5, True),
    Goal("durable: await ingest p99 < 5 ms at half the rate (normal)", "durable_latency", "", 5.0, False),
    Goal(
        "file tail in batches >= 0.3x a plain loop over the file's lines",
        "filetail_batch",
        "file_floor",
        0.3,
        True,
    ),
    Goal(
        "file tail in batches, with a journal >= 0.1x a plain loop over the file's lines",
        "filetail_batch_journal",
        "file_floor",
        0.1,
        True,
    ),
    Goal("NATS JetStream crossing >= 0.7x bare nats-py", "nats", "nats_py", 0.7, True),
    Goal("NATS JetStream crossing >= 1.5x FastStream", "nats", "faststream", 1.5, True),
]
