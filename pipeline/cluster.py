"""Try multi-worker training on one machine: start N local workers on 127.0.0.1 ports,
each running `python -m pipeline run` with its own TF_CONFIG, and wait for all of them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devices.errors import ConfigError, StageError


@dataclass(frozen=True)
class WorkerOutcome:
    index: int
    returncode: int
    log: Path


def free_loopback_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(addresses: list[str], index: int) -> str:
    task = {"type": "worker", "index": index}
    return json.dumps({"cluster": {"worker": addresses}, "task": task})


def run_local_cluster(
    workers: int, run_arguments: list[str], log_dir: Path, timeout_s: float = 3600.0
) -> list[WorkerOutcome]:
    """Worker 0 is the chief: it alone writes the cache; the others log to log_dir."""
    if workers < 2:
        raise ConfigError(f"a local cluster needs at least 2 workers, got {workers}")
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(workers)]
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pipeline", "run", *run_arguments,
               "--set", "distribute.strategy=multi_worker"]
    processes = []
    for index in range(workers):
        log = log_dir / f"worker-{index}.log"
        environment = os.environ | {"TF_CONFIG": tf_config(addresses, index)}
        with open(log, "w") as handle:
            processes.append((index, log, subprocess.Popen(
                command, env=environment, stdout=handle, stderr=subprocess.STDOUT,
            )))
    try:
        _wait_all_or_first_failure([process for _, _, process in processes], timeout_s)
    finally:
        for _, _, process in processes:  # a dead worker leaves the others hanging in
            if process.poll() is None:   # collective ops: stop them
                process.kill()
                process.wait()
    return [WorkerOutcome(index, process.returncode, log) for index, log, process in processes]


def _wait_all_or_first_failure(processes: list[subprocess.Popen], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(process.poll() is None for process in processes):
        if any(process.poll() not in (None, 0) for process in processes):
            return
        if time.monotonic() > deadline:
            raise StageError(f"local cluster did not finish within {timeout_s:.0f}s")
        time.sleep(0.5)
