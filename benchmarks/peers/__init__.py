"""One module per implementation measured; each defines the scenarios it can do.

A module has ``NAME``, ``version()``, ``UNSUPPORTED`` (scenario -> why not) and an
``async def`` per scenario it does: ``throughput_async(n)``, ``throughput_sync(n)``,
``routing(n, types)``, ``fanout(n, handlers)`` (each returns elapsed seconds),
``latency(n, rate)`` (a :class:`~peers.work.Latencies`) and ``overload(n)``; those of
scenario 8 also ``io_bound(n, sleep, concurrency, keys=0)`` (seconds) and
``io_overload(n, sleep, concurrency)``. ``durable_peers`` stands apart: it holds every
implementation of scenario 9, a function each, which ``benchmarks/durable.py`` runs one
per child. Modules import only relatively, so ``child.py`` can load them as the top-level
package ``peers`` from any interpreter, including the venv that holds async-nexus 1.0.2.
"""

#: Module name -> shown name, in the order of the table.
IMPLEMENTATIONS = {
    "ceiling": "ceiling",
    "plain_queue": "asyncio.Queue",
    "semaphore": "asyncio.Semaphore",
    "nexus": "async-nexus",
    "nexus_v1": "async-nexus 1.0.2",
    "pyee_peer": "pyee",
    "blinker_peer": "blinker",
    "aiopubsub_peer": "aiopubsub",
    "pyventus_peer": "pyventus",
}

#: Module name -> the distribution it needs in this interpreter (1.0.2 has a venv of its own).
REQUIRES = {
    "pyee_peer": "pyee",
    "blinker_peer": "blinker",
    "aiopubsub_peer": "aiopubsub",
    "pyventus_peer": "pyventus",
}
