"""Under CI=true a skipped test fails, so a missing server cannot pass unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_a_skip_fails_only_under_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    (tmp_path / "test_needs_a_server.py").write_text(
        "import pytest\n\ndef test_it():\n    pytest.skip('no server here')\n"
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert outcome in done.stdout, done.stdout + done.stderr
    if ci:
        assert "skipped under CI=true, where every test must run: Skipped: no server here" in done.stdout
