"""Real redis-server processes for the tests: started on a free loopback port, killed, restarted.

``REDIS_URL`` (set by ``.ci/run``) names the shared server most tests use; tests that kill or
restart a server start their own with :class:`RedisServer`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def require_redis_server() -> str:
    """The redis-server binary; without one, fail under CI=true, skip otherwise."""
    binary = redis_server_binary()
    if binary is None:
        message = "redis-server is not on PATH (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class RedisServer:
    """One redis-server subprocess on 127.0.0.1.

    :param durable: append-only file synced on every write, so what a client was told is
        written survives :meth:`kill` and :meth:`start` again.
    :param password: ``requirepass``.
    """

    def __init__(self, *, durable: bool = False, password: str | None = None) -> None:
        self.binary = require_redis_server()
        self.port = free_port()
        self.password = password
        self.durable = durable
        self._dir = tempfile.TemporaryDirectory(prefix="nexus-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", self._dir.name,
            "--appendonly", "yes" if self.durable else "no",
        ]  # fmt: skip
        if self.durable:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(Path(self._dir.name) / "redis.log", "ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_until_serving(timeout)
        return self

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        command = b"PING\r\n"
        if self.password:
            command = f"AUTH {self.password}\r\nPING\r\n".encode()
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(command)
                    answer = b""
                    while b"PONG" not in answer and (chunk := sock.recv(100)):
                        answer += chunk
                    if b"PONG" in answer:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not serve on port {self.port}: {self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        path = Path(self._dir.name) / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections drop at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
