"""A venv of its own for async-nexus 1.0.2, whose import name is the same as this tree's.

Created once under ``benchmarks/.venv-peers`` (git ignores it) and reused while it holds
the right version; uvloop goes in too when this interpreter has it, so 1.0.2 also runs there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VERSION = "1.0.2"
HOME = Path(__file__).resolve().parent / ".venv-peers"


def _python() -> Path:
    return HOME / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _has(python: Path, code: str) -> bool:
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def ensure(*, uvloop: bool) -> tuple[Path | None, str]:
    """Return (python of the venv, "") or (None, why it could not be made)."""
    python = _python()
    wanted = ["async-nexus==" + VERSION] + (["uvloop"] if uvloop else [])
    check = f"import async_nexus; assert async_nexus.__version__ == {VERSION!r}" + (
        "; import uvloop" if uvloop else ""
    )
    if python.exists() and _has(python, check):
        return python, ""
    steps: list[list[str | Path]] = [
        [sys.executable, "-m", "venv", "--clear", str(HOME)],
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            return None, f"could not install async-nexus {VERSION}: {done.stderr.strip()[-300:]}"
    return python, ""
