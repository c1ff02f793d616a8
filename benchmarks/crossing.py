"""What the crossing scenarios (7, Redis; 11, NATS) share: free ports and timing two end processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cross(ends: Path, side: str, url: str, stream: str, n: int, timeout: float) -> float:
    """Seconds from the sender's first event to the receiver's handling of the last one.

    ``ends`` is a script run as ``ends ROLE URL STREAM N`` with ROLE ``<side>-receive`` (it
    prints ``ready``, then the time of the last event) and ``<side>-send`` (it prints the
    time of its first event). Each end may take ``timeout`` seconds.
    """
    receiver = subprocess.Popen(
        [sys.executable, str(ends), f"{side}-receive", url, stream, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{side} receiver did not start: {receiver.communicate()[1][-600:]}")
        sender = subprocess.run(
            [sys.executable, str(ends), f"{side}-send", url, stream, str(n)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if sender.returncode:
            raise RuntimeError(f"{side} sender failed: {sender.stderr[-600:]}")
        try:
            out, err = receiver.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            receiver.kill()
            raise RuntimeError(f"{side} receiver timed out: {receiver.communicate()[1][-600:]}") from None
        if receiver.returncode:
            raise RuntimeError(f"{side} receiver failed: {err[-600:]}")
        return float(out.split()[-1]) - float(sender.stdout.split()[0])
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
