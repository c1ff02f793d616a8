"""Run scenarios of one implementation in this process and print the results as one JSON line.

Started by the suite as ``python benchmarks/child.py SPEC`` (a script, not ``-m``: then
``peers`` is a top-level package and ``async_nexus`` is whichever the interpreter has
installed, so the venv of async-nexus 1.0.2 runs the same code). SPEC is JSON:
``{"impl": module, "loop": "asyncio"|"uvloop", "warmup": int, "runs": int,
"tasks": [[scenario, params], ...]}``. A latency task without ``rate`` runs at half the
median rate of this child's ``throughput_async`` task.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import resource
import statistics
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

#: The scenarios that report the growth of peak resident memory rather than seconds.
MEMORY = ("overload", "io_overload")
#: A backstop for the overload scenarios (address-space growth): the suite itself stops a
#: child at 1 GiB resident, but where it cannot watch (no /proc) this limit still holds.
OVERLOAD_CAP_MB = 2048


def run_on(loop: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    if loop == "uvloop":
        import uvloop

        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coroutine)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(coroutine)


def peak_rss_mb() -> float:
    """The high-water mark of this process's resident memory, in MB."""
    try:
        # VmHWM belongs to this program's own memory map; ru_maxrss would include the
        # parent's peak, which Linux carries across fork and exec.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def cap_address_space(extra_mb: int) -> tuple[int, int] | None:
    """Stop a runaway peer with MemoryError instead of letting it take the machine.

    Returns the limits to restore afterwards (None: no cap on this platform).
    """
    try:
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None
    before = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_mb * (1 << 20), before[1]))
    return before


def measure(function: Callable[..., Any], name: str, params: dict[str, Any], spec: dict[str, Any]) -> Any:
    if name in MEMORY:
        before = peak_rss_mb()
        limits = cap_address_space(OVERLOAD_CAP_MB)
        try:
            run_on(spec["loop"], function(**params))
        except MemoryError:
            return {"capped_mb": OVERLOAD_CAP_MB}
        finally:
            if limits is not None:
                resource.setrlimit(resource.RLIMIT_AS, limits)  # room to report
        return peak_rss_mb() - before
    return run_on(spec["loop"], function(**params))


def main() -> None:
    spec = json.loads(sys.argv[1])
    module = importlib.import_module(f"peers.{spec['impl']}")
    out: dict[str, Any] = {"version": module.version(), "results": {}}
    for name, params in spec["tasks"]:
        key = params.pop("key", name)
        function = getattr(module, name, None)
        if name in module.UNSUPPORTED or function is None:
            out["results"][key] = {"unsupported": module.UNSUPPORTED.get(name, "not offered")}
            continue
        try:
            if name == "latency" and "rate" not in params:
                rate = out["results"]["throughput_async"]["rate"]
                params["rate"] = rate / 2
            # The warm-up runs are a tenth of the size: they only need to warm, not to count.
            smaller = {**params, "n": max(1, params["n"] // 10)} if "n" in params else params
            for _ in range(spec["warmup"]):
                measure(function, name, dict(smaller), spec)
            runs = [measure(function, name, dict(params), spec) for _ in range(spec["runs"])]
            result: dict[str, Any] = {"runs": runs, "params": params}
            if isinstance(runs[0], float) and name not in MEMORY:
                result["rate"] = statistics.median(params["n"] / seconds for seconds in runs)
            out["results"][key] = result
        except Exception:
            out["results"][key] = {"error": traceback.format_exc(limit=4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
