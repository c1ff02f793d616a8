"""The programs ``python -m benchmarks.instructions`` counts run to the end (here without valgrind)."""

from __future__ import annotations

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
