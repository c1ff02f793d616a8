"""``python -m benchmarks [--quick]``: every scenario, every peer, one table, JSON and a chart.

A full run (no options that narrow it) writes ``benchmarks/results/latest.json``,
a chart per scenario in ``docs/_static/benchmarks/`` and ``docs/_static/benchmarks.inc``
(which docs/performance.rst includes). Any other run writes to ``benchmarks/results/quick/``.
``--render`` measures nothing: it draws the charts and writes the docs' table again from
``benchmarks/results/latest.json``. The exit status is 1 when a scenario crashed; missed
goals are reported, never fatal.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from . import durable, filetail, nats_scenario, peer_venv, plot, redis_scenario, report, runner
from .peers import IMPLEMENTATIONS, REQUIRES
from .plan import (
    DURABLE,
    FILETAIL,
    FULL,
    GROUPS,
    IO_CONCURRENCY,
    IO_IDEAL,
    IO_OVERLOAD_SLEEP,
    IO_SLEEP,
    MEMORY,
    OWN_PEERS,
    QUICK,
    SCENARIOS,
    child_tasks,
    measured,
)

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each: a smoke test")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenario keys of {list(SCENARIOS)}, or {list(GROUPS)} for all of its keys",
    )
    parser.add_argument(
        "--impl", default="", help=f"comma-separated implementations of {list(IMPLEMENTATIONS)}"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="only the default asyncio loop")
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: redraw the docs' charts and table from benchmarks/results/latest.json",
    )
    return parser.parse_args(argv)


DOCS_STATIC = ROOT / "docs" / "_static"
LATEST = ROOT / "benchmarks" / "results" / "latest.json"


def write_docs(run: dict[str, Any]) -> str:
    """The charts and the table docs/performance.rst shows; "" or why no chart was drawn."""
    why = plot.plot(run["rows"], DOCS_STATIC / "benchmarks")
    chart = None if why else plot.chart_name
    report.write_rst(DOCS_STATIC / "benchmarks.inc", run, "_static/benchmarks", chart)
    return why


def render() -> int:
    """``--render``: the docs' charts and table from the last full run, without measuring."""
    run = json.loads(LATEST.read_text())
    why = write_docs(run)
    print(f"Rendered {LATEST} into {DOCS_STATIC}" + (f"; {why}" if why else ""))
    return 1 if why else 0


def _chosen(text: str, known: Any, what: str, groups: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    named = [n.strip() for n in text.split(",") if n.strip()]
    names = [k for n in named for k in (groups or {}).get(n, (n,))] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        uvloop = dist_version("uvloop")
    except PackageNotFoundError:
        uvloop = ""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "uvloop": uvloop,
    }


def python_for(impl: str, loops: list[str]) -> tuple[str, str]:
    """(interpreter, "") to measure ``impl`` with, or ("", why it cannot run)."""
    if impl == "nexus_v1":
        python, why = peer_venv.ensure(uvloop="uvloop" in loops)
        return (str(python), "") if python else ("", why)
    needed = REQUIRES.get(impl)
    if needed and find_spec(needed) is None:
        return "", f"not installed: pip install -e '.[bench]' for {needed}"
    return runner.interpreter(), ""


def measure_all(impls: list[str], keys: list[str], loops: list[str], plan: Any) -> list[dict[str, Any]]:
    """Rows for every implementation, measured in rounds.

    A round runs one group of scenarios once for every implementation, each in a child of
    its own, back to back; the median is taken over the rounds. A machine whose speed
    drifts (a shared or virtual one) then slows every implementation of a round alike,
    and the ratios, taken round by round, stay fair.
    """
    if all(key in OWN_PEERS or key in DURABLE or key in FILETAIL for key in keys):
        return []  # scenarios 7, 9, 10 and 11 drive their own peers: no interpreter (nor venv) to prepare
    groups = [
        [[name, dict(params)] for name, params in group if params.get("key", name) in keys]
        for group in child_tasks(plan)
    ]
    if "latency" in keys:  # it runs at half the rate of scenario 1, measured in the same child
        groups[0] = [[name, dict(params)] for name, params in child_tasks(plan)[0]]
    groups = [group for group in groups if group]
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, str, str]] = []
    interpreters = {impl: python_for(impl, loops) for impl in impls}
    for loop in loops:
        for impl, (python, why) in interpreters.items():
            if why:
                rows += [
                    runner.row(k, impl, loop, note=why)
                    for k in keys
                    if k not in OWN_PEERS and k not in MEMORY and measured(k, impl, loop)
                ]
            elif groups:
                jobs.append((impl, loop, python))
    for group in groups:
        started = time.monotonic()
        # Each implementation runs the scenarios of the group it takes part in, if any.
        tasks = {
            (impl, loop): [
                [name, params] for name, params in group if measured(params.get("key", name), impl, loop)
            ]
            for impl, loop, _ in jobs
        }
        outputs: dict[tuple[str, str], list[dict[str, Any]]] = {
            job: [] for job, mine in tasks.items() if mine
        }
        for _ in range(plan.runs):
            for impl, loop, python in jobs:
                if (impl, loop) not in outputs:
                    continue
                copies = [[name, dict(params)] for name, params in tasks[impl, loop]]
                outputs[impl, loop].append(
                    runner.run_child(python, impl, loop, copies, runs=1, warmup=plan.warmup)
                )
        for (impl, loop), outs in outputs.items():
            mine = [params.get("key", name) for name, params in tasks[impl, loop]]
            rows += runner.rows_for(impl, loop, mine, outs)
        group_keys = [params.get("key", name) for name, params in group]
        took = time.monotonic() - started
        print(f"  {', '.join(group_keys)}: {plan.runs} rounds in {took:.1f} s", flush=True)
    memory = [
        ("overload", plan.overload_events, plan.memory_runs, {}),
        (
            "io_overload",
            plan.io_overload_events,
            plan.io_memory_runs,
            {"sleep": IO_OVERLOAD_SLEEP, "concurrency": IO_CONCURRENCY},
        ),
    ]
    for key, events, runs, params in memory:
        if key not in keys:
            continue
        started = time.monotonic()
        for impl, (python, why) in interpreters.items():
            if not measured(key, impl):
                continue
            if why:
                rows.append(runner.row(key, impl, "asyncio", note=why))
            else:
                rows.append(runner.measure_memory(python, impl, events, runs, key, **params))
                print(f"  {IMPLEMENTATIONS[impl]}: {SCENARIOS[key].title} done", flush=True)
        print(f"  {key}: {runs} runs in {time.monotonic() - started:.1f} s", flush=True)
    return [r for r in rows if r["key"] in keys]


def ideal_rows(keys: list[str]) -> list[dict[str, Any]]:
    """Scenario 8's ideal: every handler call costs its await and nothing else. Computed."""
    note = f"computed: {IO_CONCURRENCY} at once / {IO_SLEEP * 1000:g} ms"
    return [
        runner.row(key, "ideal", "asyncio", name="ideal", value=IO_IDEAL, note=note)
        for key in ("io_bound", "io_bound_keyed")
        if key in keys
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        return render()
    keys = _chosen(args.only, SCENARIOS, "scenario", GROUPS)
    impls = _chosen(args.impl, IMPLEMENTATIONS, "implementation")
    plan = QUICK if args.quick else FULL
    loops = ["asyncio"] + (["uvloop"] if find_spec("uvloop") and not args.no_uvloop else [])
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks", *given])
    print(f"{command}: {len(impls)} implementations on {', '.join(loops)}", flush=True)
    started = time.monotonic()
    rows = measure_all(impls, keys, loops, plan)
    if "redis" in keys:
        rows += redis_scenario.measure(plan, with_nexus="nexus" in impls)
    if "nats" in keys:
        rows += nats_scenario.measure(plan, with_nexus="nexus" in impls)
    rows += durable.measure(plan, keys)
    rows += filetail.measure(plan, keys)
    rows += ideal_rows(keys)
    versions = {r["impl"]: r["version"] for r in rows if r["version"]}
    for r in rows:
        r["version"] = r["version"] or versions.get(r["impl"], "")
    every = [
        "ideal",
        *IMPLEMENTATIONS,
        *redis_scenario.IMPLEMENTATIONS,
        *durable.IMPLEMENTATIONS,
        *filetail.IMPLEMENTATIONS,
        *nats_scenario.IMPLEMENTATIONS,
    ]
    order = {k: i for i, k in enumerate(every)}
    keys_order = list(SCENARIOS)
    rows.sort(key=lambda r: (keys_order.index(r["key"]), r["loop"] != "asyncio", order.get(r["impl"], 99)))
    print()
    report.print_table(rows)
    verdicts = report.goals(rows) + (report.goals(rows, "uvloop") if "uvloop" in loops else [])
    print("\nGoals (reported, never enforced):")
    report.print_goals(verdicts)
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "plan": plan.as_dict(),
        "rows": rows,
        "goals": [g for g in verdicts if g["loop"] == "asyncio"],
        "goals_uvloop": verdicts,
    }
    full = not (args.quick or args.only or args.impl or args.no_uvloop)
    out = ROOT / "benchmarks" / "results" / ("" if full else "quick")
    report.write_json(out / "latest.json", run)
    if full:
        why, image = write_docs(run), DOCS_STATIC / "benchmarks"
    else:
        image = out
        why = plot.plot(rows, image, f"Async Nexus benchmarks, {run['date']}, {command}")
    print(f"\nWrote {out / 'latest.json'}" + (f"; {why}" if why else f" and the charts in {image}"))
    print(f"Took {time.monotonic() - started:.0f} s.")
    crashed = [r for r in rows if r["failed"]]
    for r in crashed:
        print(f"CRASHED: {SCENARIOS[r['key']].title}, {r['name']} on {r['loop']}:\n{r['detail']['error']}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
