"""The guide's demo runs as a real program, shows the teapot and stops by itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "async_events.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=30, env=env
    )


def test_demo_runs_stops_gracefully_and_shows_the_teapot() -> None:
    done = _run("--seconds", "2")
    assert done.returncode == 0, done.stderr
    assert "TEAPOT" in done.stdout
    assert "stopped gracefully" in done.stdout
    assert "Traceback" not in done.stderr
    # Every kind of handler was reached: fanout (both), NamedEvent, default, per-type.
    for marker in ("[display] countdown", "[log] countdown", "kettle ", "default handler got", "heartbeat"):
        assert marker in done.stdout, marker


def test_demo_help_explains_itself() -> None:
    done = _run("-h")
    assert done.returncode == 0
    assert "--seconds" in done.stdout
    assert "default: 5" in done.stdout
