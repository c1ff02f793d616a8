"""Scenario 10: file tail. Lines from a log file into one handler, against a plain loop over them.

A :class:`~async_nexus.FileTail` in a nexus reads a file of log lines from its beginning and
hands each to one sync handler, without a journal and with one (``synchronous=normal``: each
event kept until handled, the tail's position saved with it); each line an event, and then
the same in batches (``FileTail(batch=1000)``: an event per read of the file, whose handler
hands each of its lines to the same sync handler). The floor is what
reading the file costs with nothing in between: ``for line in file`` in Python, each line
handed to the same handler. Each run is a child process of its own (``child.py`` with
``peers/filetail_peers.py``) reading a fresh file under ``benchmarks/.filetail/``, on the file
system of the checkout, as a daemon's log and journal would be.

The suite measures in rounds: in each, the floor, then the tail without and with a journal;
the median over the rounds is reported, and the ratios are taken round by round.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from . import runner
from .plan import FILETAIL, FILETAIL_BATCH, Plan
from .runner import row

HOME = Path(__file__).resolve().parent / ".filetail"
#: The peer of scenario 10, in table order after async-nexus.
IMPLEMENTATIONS = {"file_floor": "for line in file (floor)"}
NAMES = {"nexus": "async-nexus", **IMPLEMENTATIONS}


def run_one(task: str, params: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Run ``task`` of ``peers/filetail_peers.py`` in a child; what it returned, or ``{"error": why}``.

    A run whose handler did not get every line counts as failed.
    """
    got = runner.run_in_directory("filetail_peers", task, params, warmup, HOME)
    if "error" in got:
        return got
    if got["handled"] != params["n"]:
        return {"error": f"{got['handled']:,} of {params['n']:,} lines handled"}
    return got


def measure(plan: Plan, keys: list[str]) -> list[dict[str, Any]]:
    """The rows of scenario 10 for the keys of it in ``keys``."""
    keys = [k for k in FILETAIL if k in keys]
    if not keys:
        return []
    n = plan.filetail_lines
    outs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number in range(plan.filetail_runs):
        started = time.monotonic()
        floor = run_one("floor", {"n": n}, plan.warmup)
        for key in keys:
            # The same floor for both: one reading of the file per round.
            outs.setdefault((key, "file_floor"), []).append(floor)
            params = {
                "n": n,
                "journal": key.endswith("_journal"),
                "batch": FILETAIL_BATCH if key.startswith("filetail_batch") else None,
            }
            got = run_one("nexus", params, plan.warmup)
            outs.setdefault((key, "nexus"), []).append(got)
        took = time.monotonic() - started
        print(f"  filetail: round {number + 1} of {plan.filetail_runs} in {took:.1f} s", flush=True)
    clean()
    rows: list[dict[str, Any]] = []
    for (key, impl), results in outs.items():
        labels = {"name": NAMES[impl], "version": next((r["version"] for r in results if "version" in r), "")}
        failed = next((r["error"] for r in results if "error" in r), None)
        if failed is not None:
            rows.append(
                row(key, impl, "asyncio", **labels, note="crashed", failed=True, detail={"error": failed})
            )
            continue
        runs = [float(r["seconds"]) for r in results]
        value = statistics.median(n / seconds for seconds in runs)
        rows.append(row(key, impl, "asyncio", **labels, value=value, detail={"runs": runs, "n": n}))
    return rows


def clean() -> None:
    """Remove ``benchmarks/.filetail`` when no run left anything in it."""
    try:
        os.rmdir(HOME)
    except OSError:
        pass
