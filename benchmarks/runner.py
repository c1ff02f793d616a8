"""Start the children that measure, and turn what they print into rows of the table."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .peers import IMPLEMENTATIONS

CHILD = Path(__file__).resolve().parent / "child.py"
#: No single child may take longer than this (seconds).
TIMEOUT = 900
#: A child of the overload scenario holding more than this (MB resident) is stopped.
CAP_MB = 1024


def row(key: str, impl: str, loop: str, **fields: Any) -> dict[str, Any]:
    """One cell of the results: ``value`` is None when the scenario did not run."""
    base = {"key": key, "impl": impl, "name": IMPLEMENTATIONS.get(impl, impl), "loop": loop, "version": ""}
    return {**base, "value": None, "detail": {}, "note": "", "failed": False, **fields}


def _resident_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _wait(child: subprocess.Popen[bytes], cap_mb: float | None) -> bool:
    """Wait for ``child``; True if it was killed for holding more than ``cap_mb`` resident."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            child.wait(0.02)
            return False
        except subprocess.TimeoutExpired:
            pass
        capped = cap_mb is not None and _resident_mb(child.pid) > cap_mb
        if capped or time.monotonic() > deadline:
            child.kill()
            child.wait()
            if capped:
                return True
            raise subprocess.TimeoutExpired(child.args, TIMEOUT)


def run_child(
    python: str,
    impl: str,
    loop: str,
    tasks: list[Any],
    *,
    runs: int,
    warmup: int,
    cap_mb: float | None = None,
) -> dict[str, Any]:
    """Run ``child.py`` with ``python``; its JSON, ``{"capped_mb": cap_mb}``, or ``{"error": why}``.

    With ``cap_mb`` the child is killed once it holds more than that much resident memory
    (watched through /proc, on Linux): a peer without backpressure would otherwise take
    the machine.
    """
    spec = {"impl": impl, "loop": loop, "runs": runs, "warmup": warmup, "tasks": tasks}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # A peer dying of its own backlog can print a traceback per task: keep that on disk.
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(
            [python, str(CHILD), json.dumps(spec)], stdout=output, stderr=errors, env=env
        )
        try:
            if _wait(child, cap_mb):
                return {"capped_mb": cap_mb}
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {TIMEOUT} s"}
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 600))
        tail = errors.read().decode(errors="replace").strip()
        output.seek(0)
        lines = output.read().strip().splitlines()
    if child.returncode or not lines:
        return {"error": f"exit status {child.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _summarise(key: str, result: dict[str, Any]) -> dict[str, Any]:
    if "unsupported" in result:
        return {"note": "n/a: " + result["unsupported"]}
    if "error" in result:
        return {"note": "crashed", "failed": True, "detail": {"error": result["error"]}}
    runs = result["runs"]
    if key == "latency":
        detail = {stat: statistics.median(run[stat] for run in runs) for stat in ("p50", "p99", "max")}
        detail["rate"] = result["params"]["rate"]
        return {"value": detail["p99"], "detail": detail}
    return {"value": result["rate"], "detail": {"runs": runs}}


def merge(outs: list[dict[str, Any]]) -> dict[str, Any]:
    """One child's output from the outputs of several rounds: their runs pooled per scenario."""
    errors = [out["error"] for out in outs if "error" in out]
    if errors:
        return {"error": errors[0]}
    merged: dict[str, Any] = {"version": outs[0]["version"], "results": {}}
    for key, first in outs[0]["results"].items():
        results = [out["results"][key] for out in outs]
        failed = next((r for r in results if "runs" not in r), None)
        if failed is not None:
            merged["results"][key] = failed
            continue
        runs = [run for r in results for run in r["runs"]]
        pooled = {"runs": runs, "params": first["params"]}
        if "rate" in first:
            pooled["rate"] = statistics.median(first["params"]["n"] / seconds for seconds in runs)
        merged["results"][key] = pooled
    return merged


def rows_for(impl: str, loop: str, keys: list[str], outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for every scenario of one implementation on one loop, from its children's outputs."""
    out = merge(outs)
    if "error" in out:
        return [row(k, impl, loop, note="crashed", failed=True, detail={"error": out["error"]}) for k in keys]
    return [
        row(key, impl, loop, version=out["version"], **_summarise(key, out["results"][key])) for key in keys
    ]


def measure_memory(
    python: str, impl: str, events: int, runs: int, key: str = "overload", **params: Any
) -> dict[str, Any]:
    """Peak RSS growth under overload, each run in a fresh child; a run that hits the cap ends it.

    ``key`` names the scenario (the child's function of that name is run with ``n=events``
    and ``params``).
    """
    growths: list[float] = []
    version = ""
    for _ in range(runs):
        out = run_child(
            python, impl, "asyncio", [[key, {"n": events, **params}]], runs=1, warmup=0, cap_mb=CAP_MB
        )
        if "capped_mb" in out:
            note = f"stopped at {CAP_MB:,} MB resident: grows without bound"
            return row(key, impl, "asyncio", version=version, value=float(CAP_MB), note=note)
        if "error" in out:
            return row(key, impl, "asyncio", note="crashed", failed=True, detail={"error": out["error"]})
        version, result = out["version"], out["results"][key]
        if "runs" not in result:
            return row(key, impl, "asyncio", version=version, **_summarise(key, result))
        growth = result["runs"][0]
        if isinstance(growth, dict):
            cap = growth["capped_mb"]
            note = f"stopped at the {cap} MB cap: grows without bound"
            return row(key, impl, "asyncio", version=version, value=float(cap), note=note)
        growths.append(growth)
    return row(
        key,
        impl,
        "asyncio",
        version=version,
        value=statistics.median(growths),
        detail={"runs": growths},
    )


def interpreter() -> str:
    return sys.executable


def run_in_directory(
    peers: str, task: str, params: dict[str, Any], warmup: int, home: Path
) -> dict[str, Any]:
    """Run ``task`` of ``peers/<peers>.py`` once in a child, in a new directory under ``home``.

    The task gets the directory as its ``directory`` parameter; the directory is removed
    afterwards. Returns what the run returned, with the child's ``version``, or
    ``{"error": why}``.
    """
    home.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix=f"{task}-", dir=home)
    try:
        spec = [[task, {**params, "directory": directory}]]
        out = run_child(interpreter(), peers, "asyncio", spec, runs=1, warmup=warmup)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if "error" in out:
        return {"error": str(out["error"])}
    result = out["results"][task]
    if "runs" not in result:
        return {"error": str(result.get("error") or result.get("unsupported"))}
    got: dict[str, Any] = result["runs"][0]
    got["version"] = out["version"]
    return got
