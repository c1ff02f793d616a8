"""Scenario 7: events from one process to another through Redis Streams.

async-nexus (RedisStreamSender -> RedisStreamReceiver) against a plain redis-py loop that
pipelines XADD and reads with XREADGROUP/XACK in batches. A private redis-server is started
on a free port; without one on PATH the scenario is skipped with a note.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .crossing import cross, free_port
from .plan import Plan
from .runner import row

ENDS = Path(__file__).resolve().parent / "redis_ends.py"
IMPLEMENTATIONS = {"redis_py": "plain redis-py"}
NAMES = {**IMPLEMENTATIONS, "nexus": "async-nexus"}


def _timeout(n: int) -> float:
    """Seconds one end may take for ``n`` events before it counts as hung."""
    return 30 + n / 1000


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """Yield (url, version) of a fresh redis-server that keeps nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("no redis-server on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            version = _wait_up(port)
            yield f"redis://127.0.0.1:{port}/0", version
        finally:
            server.terminate()
            server.wait(10)


def _wait_up(port: int) -> str:
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            return str(client.info("server")["redis_version"])
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _crossing(side: str, url: str, stream: str, n: int) -> float:
    """Seconds from the sender's first event to the receiver's handling of the last one."""
    return cross(ENDS, side, url, stream, n, _timeout(n))


def _side(side: str, impl: str, url: str, plan: Plan, version: str) -> dict[str, Any]:
    labels = {"name": NAMES[impl], "version": version}
    try:
        runs = [
            _crossing(side, url, f"bench-{side}-{k}", plan.redis_events)
            for k in range(plan.warmup + plan.runs)
        ][plan.warmup :]
    except Exception as exc:  # one side failing must not hide the other
        error = {"error": f"{type(exc).__name__}: {exc}"}
        return row("redis", impl, "asyncio", **labels, note="crashed", failed=True, detail=error)
    rate = statistics.median(plan.redis_events / seconds for seconds in runs)
    return row("redis", impl, "asyncio", **labels, value=rate, detail={"runs": runs})


def measure(plan: Plan, *, with_nexus: bool) -> list[dict[str, Any]]:
    """The rows of scenario 7 (notes only, when it cannot run here)."""
    impls = ["redis_py"] + (["nexus"] if with_nexus else [])
    if find_spec("redis") is None:
        return [
            row("redis", i, "asyncio", name=NAMES[i], note="skipped: redis-py is not installed")
            for i in impls
        ]
    if with_nexus and find_spec("async_nexus.transports.redis") is None:
        impls.remove("nexus")
    try:
        with redis_server() as (url, server_version):
            from importlib.metadata import version

            print(f"  Redis crossing: redis-server {server_version} at {url}", flush=True)
            client = f"redis-py {version('redis')}, server {server_version}"
            return [
                _side(
                    "plain" if i == "redis_py" else "nexus",
                    i,
                    url,
                    plan,
                    client if i == "redis_py" else f"{_ours()} on {client}",
                )
                for i in impls
            ]
    except FileNotFoundError as exc:
        print(f"  Redis crossing skipped: {exc}", flush=True)
        return [row("redis", i, "asyncio", name=NAMES[i], note=f"skipped: {exc}") for i in impls]


def _ours() -> str:
    import async_nexus

    return str(async_nexus.__version__)
