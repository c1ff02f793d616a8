"""Scenario 9: durable. Events kept in SQLite until handled, at both ``synchronous`` levels.

async-nexus with a :class:`~async_nexus.journal.SqliteJournal` against persist-queue's
``SQLiteAckQueue``, litequeue and a floor of bare ``sqlite3``, each in a child process of its
own (``child.py`` with ``peers/durable_peers.py``) writing a fresh file under
``benchmarks/.durable/``: on the file system of the checkout, where a daemon's journal would
be, rather than in a temporary directory that may be held in memory.

The suite measures in rounds here too. In each round and at each level, async-nexus goes
first: the floor then writes in batches of the nexus's mean group size in that run, and (at
``normal``) the latency run offers half the rate it reached. The median over the rounds is
reported, and the ratios are taken round by round.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from . import runner
from .plan import DURABLE, DURABLE_PRODUCERS, Plan
from .runner import row

HOME = Path(__file__).resolve().parent / ".durable"
LEVELS = ("full", "normal")
#: The peers of scenario 9, in table order after async-nexus.
IMPLEMENTATIONS = {
    "persist_queue": "persist-queue",
    "litequeue": "litequeue",
    "sqlite_floor": "bare sqlite3 (floor)",
}
NAMES = {"nexus": "async-nexus", **IMPLEMENTATIONS}
#: Peer -> (import name, distribution): installed by the ``bench`` extra.
REQUIRES = {"persist_queue": ("persistqueue", "persist-queue"), "litequeue": ("litequeue", "litequeue")}

Outputs = dict[tuple[str, str], list[dict[str, Any]]]


def filesystem(path: Path) -> str:
    """The type of the file system that holds ``path`` (Linux), or ""."""
    best, kind = "", ""
    target = str(path.resolve())
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, fields[2]
    except (OSError, IndexError):
        return ""
    return kind


def _versions() -> dict[str, str]:
    import async_nexus

    found = {
        "nexus": f"{async_nexus.__version__} (this tree)",
        "sqlite_floor": f"SQLite {sqlite3.sqlite_version}",
    }
    for impl, (_, distribution) in REQUIRES.items():
        try:
            found[impl] = dist_version(distribution)
        except PackageNotFoundError:
            found[impl] = ""
    return found


def missing(impl: str) -> str:
    """Why ``impl`` cannot run in this interpreter, or ""."""
    needed = REQUIRES.get(impl)
    if needed and find_spec(needed[0]) is None:
        return f"not installed: pip install -e '.[bench]' for {needed[1]}"
    return ""


def run_one(task: str, params: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Run ``task`` of ``peers/durable_peers.py`` in a child, in a directory of its own.

    Returns what the task returned, or ``{"error": why}``; an implementation that did not
    hand every event to the handler, or left rows behind, counts as failed.
    """
    got = runner.run_in_directory("durable_peers", task, params, warmup, HOME)
    if "error" in got:
        return got
    if got["handled"] != params["n"] or got["left"]:
        return {"error": f"{got['handled']:,} of {params['n']:,} events handled, {got['left']:,} rows left"}
    return got


def _round(plan: Plan, keys: list[str], impls: list[str], outs: Outputs) -> None:
    """One round: each level, async-nexus first; the floor and the latency run depend on it."""

    def take(key: str, impl: str, task: str, params: dict[str, Any]) -> dict[str, Any] | None:
        got = run_one(task, params, plan.warmup)
        outs.setdefault((key, impl), []).append(got)
        return None if "error" in got else got

    for level in LEVELS:
        key = f"durable_{level}"
        latency = level == "normal" and "durable_latency" in keys
        if key not in keys and not latency:
            continue
        base = {"n": plan.durable_events, "synchronous": level}
        ours = take(key, "nexus", "nexus", {**base, "producers": DURABLE_PRODUCERS})
        if latency and ours is not None:
            rate = plan.durable_events / ours["seconds"] / 2
            params = {
                "n": plan.durable_latency_events,
                "rate": rate,
                "synchronous": level,
                "producers": DURABLE_PRODUCERS,
            }
            take("durable_latency", "nexus", "nexus_latency", params)
        if key not in keys:
            continue
        batch = max(1, round(ours["group"])) if ours is not None else DURABLE_PRODUCERS
        take(key, "sqlite_floor", "sqlite_floor", {**base, "batch": batch})
        for impl in impls:
            take(key, impl, impl, base)


def measure(plan: Plan, keys: list[str]) -> list[dict[str, Any]]:
    """The rows of scenario 9 for the keys of it in ``keys`` (notes only, for peers missing)."""
    keys = [k for k in DURABLE if k in keys]
    if not keys:
        return []
    versions = _versions()
    rows: list[dict[str, Any]] = []
    impls = []
    for impl in ("persist_queue", "litequeue"):
        why = missing(impl)
        if why:
            rows += [
                row(k, impl, "asyncio", name=NAMES[impl], note=why) for k in keys if k != "durable_latency"
            ]
        else:
            impls.append(impl)
    HOME.mkdir(parents=True, exist_ok=True)
    kind = filesystem(HOME)
    print(f"  durable: files under {HOME}" + (f" ({kind})" if kind else ""), flush=True)
    outs: Outputs = {}
    for number in range(plan.durable_runs):
        started = time.monotonic()
        _round(plan, keys, impls, outs)
        took = time.monotonic() - started
        print(f"  durable: round {number + 1} of {plan.durable_runs} in {took:.1f} s", flush=True)
    clean()
    for (key, impl), results in outs.items():
        labels = {"name": NAMES[impl], "version": versions[impl]}
        failed = next((r["error"] for r in results if "error" in r), None)
        if failed is not None:
            rows.append(
                row(key, impl, "asyncio", **labels, note="crashed", failed=True, detail={"error": failed})
            )
        elif key == "durable_latency":
            rows.append(row(key, impl, "asyncio", **labels, **_latency(results, kind)))
        else:
            rows.append(row(key, impl, "asyncio", **labels, **_throughput(impl, results, plan, kind)))
    # The latency run needs the nexus at ``normal``, measured whether or not it was asked for.
    return [r for r in rows if r["key"] in keys]


def _throughput(impl: str, results: list[dict[str, Any]], plan: Plan, kind: str) -> dict[str, Any]:
    runs = [r["seconds"] for r in results]
    detail: dict[str, Any] = {"runs": runs, "n": plan.durable_events, "filesystem": kind}
    note = ""
    if impl == "nexus":
        detail.update(_journal(results))
        detail["producers"] = DURABLE_PRODUCERS
        note = (
            f"groups of {detail['group']:,.0f}; longest commit {detail['longest_commit_s'] * 1e3:,.1f} ms, "
            f"longest loop stall {detail['longest_loop_stall_s'] * 1e3:,.1f} ms"
        )
    elif impl == "sqlite_floor":
        detail["batches"] = [r.get("batch") for r in results]
    value = statistics.median(plan.durable_events / seconds for seconds in runs)
    return {"value": value, "detail": detail, "note": note}


def _journal(results: list[dict[str, Any]]) -> dict[str, float]:
    """The journal's figures over the rounds: the median group, the longest of the longests."""
    return {
        "group": statistics.median(r["group"] for r in results),
        "longest_commit_s": max(r["longest_commit_s"] for r in results),
        "longest_loop_stall_s": max(r["longest_loop_stall_s"] for r in results),
    }


def _latency(results: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    detail: dict[str, Any] = {stat: statistics.median(r[stat] for r in results) for stat in ("p50", "p99")}
    detail["max"] = max(r["max"] for r in results)
    detail["rate"] = statistics.median(r["rate"] for r in results)
    detail["lag_p99"] = statistics.median(r["lag_p99"] for r in results)
    detail["lag_max"] = max(r["lag_max"] for r in results)
    stats = ("p50", "p99", "max", "rate", "lag_p99", "lag_max")
    detail["rounds"] = [{k: r[k] for k in stats} for r in results]
    detail.update(_journal(results))
    detail["filesystem"] = kind
    detail["producers"] = DURABLE_PRODUCERS
    note = (
        f"groups of {detail['group']:,.1f}; longest commit {detail['longest_commit_s'] * 1e3:,.1f} ms, "
        f"longest loop stall {detail['longest_loop_stall_s'] * 1e3:,.1f} ms; sends behind the pace "
        f"by {detail['lag_p99']:,.1f} ms at p99"
    )
    return {"value": detail["p99"], "detail": detail, "note": note}


def clean() -> None:
    """Remove ``benchmarks/.durable`` when no run left anything in it."""
    try:
        os.rmdir(HOME)
    except OSError:
        pass
