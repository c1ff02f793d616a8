"""The table, the goals and the files a run leaves: JSON and the reStructuredText the docs include."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .plan import GOALS, SCENARIOS

OURS = "nexus"
HEADER = ("scenario", "implementation", "version", "loop", "result", "async-nexus ×")


def find(rows: list[dict[str, Any]], key: str, impl: str, loop: str = "asyncio") -> dict[str, Any] | None:
    for r in rows:
        if r["key"] == key and r["impl"] == impl and r["loop"] == loop:
            return r
    return None


def advantage(rows: list[dict[str, Any]], r: dict[str, Any]) -> float | None:
    """How many times better async-nexus did than row ``r`` (above 1: async-nexus is better)."""
    ours = find(rows, r["key"], OURS, r["loop"])
    if not ours or ours["value"] is None or r["value"] is None:
        return None
    if min(ours["value"], r["value"]) < (1.0 if SCENARIOS[r["key"]].unit == "MB" else 1e-9):
        return None  # no meaningful ratio between two figures of about nothing
    if SCENARIOS[r["key"]].higher_is_better:
        paired = _paired(ours, r)
        return paired if paired is not None else float(ours["value"] / r["value"])
    return float(r["value"] / ours["value"])


def _paired(ours: dict[str, Any], r: dict[str, Any]) -> float | None:
    """The median of the ratios round by round, when both rows timed the same rounds.

    Runs of one round were taken within seconds of each other: a machine whose speed
    drifts over minutes moves both, and their ratio stays put.
    """
    mine, theirs = ours["detail"].get("runs", []), r["detail"].get("runs", [])
    if len(mine) < 2 or len(mine) != len(theirs):
        return None
    if not all(isinstance(x, float) and x > 0 for x in (*mine, *theirs)):
        return None
    return float(statistics.median(t / m for m, t in zip(mine, theirs, strict=True)))  # seconds


def result_text(r: dict[str, Any]) -> str:
    if r["value"] is None:
        note: str = r["note"]  # a result without a value always says why
        return note
    unit = SCENARIOS[r["key"]].unit
    if r["key"] == "latency":
        d = r["detail"]
        return f"p50 {d['p50']:,.1f} / p99 {d['p99']:,.1f} / max {d['max']:,.0f} µs at {d['rate']:,.0f}/s"
    if r["key"] == "durable_latency":
        d = r["detail"]
        text = f"p50 {d['p50']:,.2f} / p99 {d['p99']:,.2f} / max {d['max']:,.1f} ms at {d['rate']:,.0f}/s"
        return f"{text} ({r['note']})"
    text = f"{r['value']:,.0f} {unit}" if r["value"] >= 100 else f"{r['value']:,.2f} {unit}"
    return f"{text} ({r['note']})" if r["note"] else text


def table(rows: list[dict[str, Any]], every: list[dict[str, Any]] | None = None) -> list[tuple[str, ...]]:
    """Rows as text; ``every`` holds the async-nexus rows the ratios need (default: ``rows``)."""
    lines: list[tuple[str, ...]] = []
    for r in rows:
        ratio = advantage(every or rows, r)
        lines.append(
            (
                SCENARIOS[r["key"]].title,
                r["name"],
                r["version"] or "-",
                r["loop"],
                result_text(r),
                "-" if ratio is None else f"{ratio:.2f}",
            )
        )
    return lines


def print_table(rows: list[dict[str, Any]]) -> None:
    lines = [HEADER, *table(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def goals(rows: list[dict[str, Any]], loop: str = "asyncio") -> list[dict[str, Any]]:
    """Each goal with the measured figure and PASS, MISS or n/a (never a failure of the run)."""
    out = []
    for goal in GOALS:
        figure = None
        if goal.key == "routing":
            many, one = find(rows, "routing_1000", OURS, loop), find(rows, "routing_1", OURS, loop)
            if many and one and many["value"] and one["value"]:
                # The per-event cost ratio: the two ran in the same child, round by round.
                figure = _paired(one, many) or one["value"] / many["value"]
        elif goal.peer:
            peer, ours = find(rows, goal.key, goal.peer, loop), find(rows, goal.key, OURS, loop)
            if peer and ours:
                figure = advantage(rows, peer)
        else:
            ours = find(rows, goal.key, OURS, loop)
            figure = ours["value"] if ours else None
        if figure is None and loop != "asyncio":
            continue  # absolute goals and Redis are judged on the default loop only
        if figure is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if (figure >= goal.bound if goal.at_least else figure < goal.bound) else "MISS"
        out.append({"goal": goal.text, "loop": loop, "measured": figure, "verdict": verdict})
    return out


def print_goals(results: list[dict[str, Any]]) -> None:
    for g in results:
        figure = "-" if g["measured"] is None else f"{g['measured']:.2f}"
        print(f"  {g['verdict']:4}  {g['goal']} [{g['loop']}]: {figure}")


def write_json(path: Path, run: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1, ensure_ascii=False) + "\n")


def cell_text(r: dict[str, Any]) -> str:
    """A result for the docs' table, whose heading already names the unit."""
    if r["value"] is None:
        return str(r["note"])
    if r["key"] == "latency":
        d = r["detail"]
        return f"{d['p99']:,.1f} ({d['p50']:,.1f}, {d['max']:,.0f}) at {_short(d['rate'])}/s"
    if r["key"] == "durable_latency":
        d = r["detail"]
        return f"{d['p99']:,.2f} ({d['p50']:,.2f}, {d['max']:,.1f}) at {_short(d['rate'])}/s; {r['note']}"
    text = f"{r['value']:,.0f}" if r["value"] >= 100 else f"{r['value']:,.2f}"
    note = str(r["note"])
    if note.startswith("stopped"):  # "stopped at 1,024 MB resident: grows without bound"
        return f"≥{text}: {note.rsplit(': ', 1)[-1]}"
    return f"{text} ({note})" if note else text


def _short(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.0f}k" if value >= 1e3 else f"{value:.0f}"


def _versions(rows: list[dict[str, Any]]) -> str:
    """Each implementation's version, once (the hand-written ones run on the Python named above)."""
    seen: dict[str, str] = {}
    for r in rows:
        version = r["version"]
        if not version or r["impl"] == "ideal" or version.startswith("python "):
            continue
        if version in r["name"]:
            seen.setdefault(r["name"], r["name"])
        elif "," in version:
            seen.setdefault(r["name"], f"{r['name']} ({version})")
        else:
            seen.setdefault(r["name"], f"{r['name']} {version}")
    return "; ".join(seen.values())


def _rst_cell(cell: str) -> str:
    # A lone "-" would start a bullet list in reStructuredText.
    return cell.replace("*", "\\*") if cell not in ("", "-") else "—"


def write_rst(path: Path, run: dict[str, Any], images: str, chart_name: Any = None) -> None:
    """The part of docs/performance.rst that each full run rewrites: when, where, the results.

    One section per scenario: its chart (``images``/``chart_name(key)``, when given) and a
    compact table, one line per implementation, a column per loop.
    """
    m = run["machine"]
    rows = run["rows"]
    loops = list(dict.fromkeys(r["loop"] for r in rows))
    out = [
        f"Measured on {run['date']} with ``{run['command']}``: {m['cores']} cores ({m['cpu']}), "
        f"Python {m['python']}, {m['platform']}; uvloop {m['uvloop'] or 'not installed'}.",
        "",
        f"Versions: {_versions(rows)}.",
    ]
    for key, scenario in SCENARIOS.items():
        cells = [r for r in rows if r["key"] == key]
        if not cells:
            continue
        better = "higher is better" if scenario.higher_is_better else "lower is better"
        heading = f"{scenario.title} ({scenario.unit}, {better})"
        out += ["", heading, "~" * len(heading), ""]
        if chart_name is not None and any(r["value"] is not None for r in cells):
            out += [
                f".. image:: {images}/{chart_name(key)}",
                f"   :alt: {scenario.title}: a bar per implementation and loop",
                "",
            ]
        if key in ("latency", "durable_latency"):
            unit = "µs" if key == "latency" else "ms"
            out += [f"In each cell: p99 (p50, max) in {unit}, at the rate offered.", ""]
        on = [loop for loop in loops if any(r["loop"] == loop for r in cells)]
        out += [".. list-table::", "   :header-rows: 1", "", "   * - implementation"]
        for loop in on:
            out += [f"     - {loop}", "     - ×"]
        for name in dict.fromkeys(r["name"] for r in cells):
            out.append(f"   * - {_rst_cell(name)}")
            for loop in on:
                r = next((r for r in cells if r["name"] == name and r["loop"] == loop), None)
                ratio = None if r is None else advantage(rows, r)
                out.append("     - " + _rst_cell("" if r is None else cell_text(r)))
                out.append("     - " + _rst_cell("" if ratio is None else f"{ratio:.2f}"))
    out += ["", "Goals (on the default asyncio loop):", ""]
    for g in run["goals"]:
        figure = "-" if g["measured"] is None else f"{g['measured']:.2f}"
        out.append(f"- **{g['verdict']}** {g['goal']}: {figure}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
