"""Real Ray nodes on 127.0.0.1, for the cluster study's tests and benchmark.

Each node is one `ray start --block` process in a session of its own, with its own temp
folder and ports, so exactly these nodes are stopped (SIGTERM: Ray drains the node and
stops its processes) or killed (SIGKILL to the node's processes and its raylet's
workers). `ray stop` is never used: it stops every Ray process of this user on the
machine, other people's clusters included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cluster import free_loopback_ports

RAY = Path(sys.executable).with_name("ray")
POINT_TASK = "ray::_point_task"  # a Ray worker's process title while it runs a point
STOP_TIMEOUT_S = 45.0  # Ray drains a node for up to 30 s on SIGTERM


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    group: int
    command: str


def processes() -> list[ProcessInfo]:
    """Every process this user can read, from /proc (no psutil in the environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        found.append(ProcessInfo(int(entry.name), int(fields[1]), int(fields[2]), command))
    return found


@dataclass
class RayNode:
    process: subprocess.Popen
    temp_dir: Path
    log: Path
    killed: bool = field(default=False)

    def raylet(self) -> int | None:
        return next((info.pid for info in processes() if info.group == self.process.pid
                     and "raylet/raylet" in info.command), None)

    def workers(self) -> list[ProcessInfo]:
        """The raylet's worker processes (each in a session of its own)."""
        raylet = self.raylet()
        return [info for info in processes() if raylet is not None and info.ppid == raylet]

    def running_points(self) -> list[int]:
        return [info.pid for info in self.workers() if info.command.startswith(POINT_TASK)]

    def kill(self) -> None:
        """The node dies at once, as a machine that loses power: its workers and every
        process of its session, SIGKILL."""
        for info in self.workers():
            _signal(info.pid, signal.SIGKILL)
        _signal(-self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)
        self.killed = True

    def stop(self) -> None:
        workers = {info.pid for info in self.workers()}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal(-self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        for info in processes():  # a worker outliving its raylet (each has its own session)
            if info.pid in workers and info.command.startswith("ray::"):
                _signal(info.pid, signal.SIGKILL)


def _signal(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def start_node(root: Path, name: str, *, head: str | None = None, cpus: int = 1,
               resources: dict[str, float] | None = None) -> tuple[RayNode, str]:
    """A node (the head when `head` is None, else a worker joining `head`'s address);
    returns it and the cluster's address."""
    temp_dir = root / name
    temp_dir.mkdir(parents=True)
    node_manager, object_manager, metrics, agent, agent_grpc, runtime_env = free_loopback_ports(6)
    command = [str(RAY), "start", "--block", "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(cpus), "--temp-dir", str(temp_dir), "--disable-usage-stats",
               "--resources", json.dumps(resources or {}),
               "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager),
               "--metrics-export-port", str(metrics),
               "--dashboard-agent-listen-port", str(agent),
               "--dashboard-agent-grpc-port", str(agent_grpc),
               "--runtime-env-agent-port", str(runtime_env)]
    if head is None:
        port, client = free_loopback_ports(2)
        address = f"127.0.0.1:{port}"
        command += ["--head", "--port", str(port), "--ray-client-server-port", str(client),
                    "--include-dashboard", "false"]
    else:
        address = head
        command += ["--address", head]
    log = root / f"{name}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})
    return RayNode(process, temp_dir, log), address


def wait_for_port(address: str, node: RayNode, timeout_s: float = 120.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start exited {node.process.returncode}: "
                               f"{node.log.read_text()[-2000:]}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the Ray head at {address} did not answer in {timeout_s:.0f}s")


def wait_for_nodes(address: str, count: int, nodes: list[RayNode],
                   timeout_s: float = 120.0) -> None:
    """Until `ray status` counts `count` live nodes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node in nodes:
            if node.process.poll() is not None:
                raise RuntimeError(f"a Ray node exited: {node.log.read_text()[-2000:]}")
        status = subprocess.run([str(RAY), "status", "--address", address],
                                capture_output=True, text=True, timeout=60)
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if status.returncode == 0 and active.count("node_") >= count:
            return
        time.sleep(1.0)
    raise TimeoutError(f"the cluster at {address} did not reach {count} nodes")


@dataclass
class LocalCluster:
    """A head and workers on this machine, each with 1 CPU by default."""

    root: Path
    address: str = ""
    nodes: list[RayNode] = field(default_factory=list)

    @classmethod
    def start(cls, workers: int = 1, cpus: int = 1,
              resources: dict[str, float] | None = None) -> LocalCluster:
        # a short folder: Ray's socket paths inside it must fit in 107 bytes
        cluster = cls(Path(tempfile.mkdtemp(prefix="edge-ray-", dir="/tmp")))
        head, cluster.address = start_node(cluster.root, "head", cpus=cpus,
                                           resources=resources)
        cluster.nodes.append(head)
        wait_for_port(cluster.address, head)
        for index in range(workers):
            node, _ = start_node(cluster.root, f"worker{index}", head=cluster.address,
                                 cpus=cpus, resources=resources)
            cluster.nodes.append(node)
        return cluster

    def wait(self) -> LocalCluster:
        wait_for_nodes(self.address, sum(not node.killed for node in self.nodes), self.nodes)
        return self

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    @property
    def workers(self) -> list[RayNode]:
        return self.nodes[1:]

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
