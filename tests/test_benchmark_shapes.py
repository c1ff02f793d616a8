"""The benchmark programs run to the end at small sizes (no timing asserted): the shapes that
``python -m benchmarks.instructions`` counts (here without valgrind), and scenario 9."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "instructions.py"


@pytest.mark.parametrize("shape", ["ceiling", "minimal", "nexus", "plain_queue"])
def test_each_shape_runs_to_the_end(shape: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), shape, "3000"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


#: Scenario 9 at tiny sizes, in a child of the suite's own shape: its rows as JSON.
DURABLE_RUN = """
import dataclasses, json
from benchmarks import durable
from benchmarks.plan import DURABLE, QUICK
plan = dataclasses.replace(QUICK, durable_events=300, durable_latency_events=200, durable_runs=1, warmup=0)
print(json.dumps(durable.measure(plan, list(DURABLE))))
"""


def test_the_durable_scenario_hands_every_event_to_the_handler_and_removes_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", DURABLE_RUN],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    cells = {(r["key"], r["impl"]): r for r in rows}
    expected = {
        (key, impl)
        for key in ("durable_full", "durable_normal")
        for impl in ("nexus", "persist_queue", "litequeue", "sqlite_floor")
    } | {("durable_latency", "nexus")}
    assert set(cells) == expected
    # A run that did not hand every event to the handler, or left a row behind, is a failed row.
    failed = {cell: r["detail"].get("error") or r["note"] for cell, r in cells.items() if r["value"] is None}
    assert not failed
    for level in ("full", "normal"):
        journal = cells[f"durable_{level}", "nexus"]["detail"]
        assert journal["group"] >= 1 and journal["longest_commit_s"] > 0
        # The floor wrote in batches of the nexus's mean group.
        assert cells[f"durable_{level}", "sqlite_floor"]["detail"]["batches"] == [round(journal["group"])]
    latency = cells["durable_latency", "nexus"]["detail"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


#: Scenario 10 at a tiny size, in a child of the suite's own shape: its rows as JSON.
FILETAIL_RUN = """
import dataclasses, json
from benchmarks import filetail
from benchmarks.plan import FILETAIL, QUICK
plan = dataclasses.replace(QUICK, filetail_lines=500, filetail_runs=1, warmup=0)
print(json.dumps(filetail.measure(plan, list(FILETAIL))))
"""


def test_the_filetail_scenario_hands_every_line_to_the_handler() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FILETAIL_RUN],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    cells = {(r["key"], r["impl"]): r for r in rows}
    keys = ("filetail", "filetail_journal", "filetail_batch", "filetail_batch_journal")
    assert set(cells) == {(k, i) for k in keys for i in ("nexus", "file_floor")}
    # A run whose handler did not get every line is a failed row, without a value.
    failed = {cell: r["detail"].get("error") for cell, r in cells.items() if r["value"] is None}
    assert not failed
