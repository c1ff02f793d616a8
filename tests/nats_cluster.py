"""A 3-node JetStream cluster of one nats-server build, on free loopback ports, for fault tests.

Each node gets a client port, a cluster (route) port, a monitoring port, a store directory
and a config file written to a temporary directory: ``server_name`` (JetStream clustering
needs one per node, and it must stay the same across restarts), the cluster's name and the
routes to every node. Both builds (2.9 and the current release) read the same file. A node
is started with :func:`start_nats_server`, and can be killed (SIGKILL), stopped (SIGTERM)
and restarted on the same ports and store.

Used by ``tests/test_nats_cluster.py`` and ``benchmarks/nats_failover.py``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from nats_server import free_port, kill_server, start_nats_server, stop_server, tail

CLUSTER_NAME = "nexus"


class ClusterNode:
    """One server of the cluster: its ports stay the same across restarts, and so does its store."""

    def __init__(self, binary: str, name: str, root: Path) -> None:
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.cluster_port = free_port()
        self.monitor_port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self, routes: list[int]) -> None:
        listed = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
        (self.dir / "nats.conf").write_text(
            f"server_name: {self.name}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "cluster {\n"
            f"  name: {CLUSTER_NAME}\n"
            f"  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{listed}]\n"
            "}\n"
        )

    def start(self) -> None:
        # start_nats_server adds -js, the store, the address and the client port.
        self.process = start_nats_server(
            self.binary,
            self.dir / "store",
            self.port,
            extra_args=["-c", str(self.dir / "nats.conf")],
            log_path=self.dir / "nats.log",
        )

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a word to the others."""
        kill_server(self.process)
        self.process = None

    def stop(self) -> None:
        """SIGTERM and wait: the node shuts down cleanly (and hands its leaderships over)."""
        stop_server(self.process, 15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def jsz(self) -> dict[str, object]:
        """The node's JetStream monitoring report (``/jsz``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/jsz", timeout=2) as reply:
            report: dict[str, object] = json.loads(reply.read())
        return report

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows of, or ``None``."""
        try:
            meta = self.jsz().get("meta_cluster")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        leader = meta.get("leader") if isinstance(meta, dict) else None
        return leader if isinstance(leader, str) and leader else None

    def log(self) -> str:
        return tail(self.dir / "nats.log")


class NatsCluster:
    """Three JetStream servers of ``binary`` routed to one another, ``n1`` to ``n3``."""

    def __init__(self, binary: str, size: int = 3) -> None:
        self.binary = binary
        self._dir = tempfile.TemporaryDirectory(prefix="nexus-nats-cluster-")
        root = Path(self._dir.name)
        self.nodes = [ClusterNode(binary, f"n{i}", root) for i in range(1, size + 1)]
        routes = [node.cluster_port for node in self.nodes]
        for node in self.nodes:
            node.write_config(routes)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start every node, then wait until JetStream has a meta leader that all running nodes know."""
        try:
            for node in self.nodes:
                node.start()
            self.wait_meta_leader(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """The meta leader's name, once every running node names the same one."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = {node.meta_leader() for node in self.nodes if node.running}
            if len(leaders) == 1 and None not in leaders:
                return str(leaders.pop())
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {node.name}\n{node.log()[-800:]}" for node in self.nodes)
                raise RuntimeError(f"the cluster has no JetStream meta leader after {timeout} s:\n{logs}")
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- {node.name}\n{node.log()}" for node in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        self._dir.cleanup()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
