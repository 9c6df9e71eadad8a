"""`study.executor = "ray"`: each point is a Ray task on a cluster that shares nothing with
this process (the head) but the installed project (README, "The study on a cluster").

- Entries travel as bytes. A point's task gets the head's entries of its chain (each put
  into Ray's object store once, fetched once per node), computes the rest in a private
  cache and ships every entry it sealed back; the head writes them with
  `StageCache.receive` (verified, one rename, under the entry's lock). The head's cache is
  the source of truth: a study on 3 nodes leaves the same entries as on 1.
- Each entry is computed once: a point waits while another computes an entry it needs
  (pipeline/study/schedule.py), so the teacher is trained once and the points fan out.
- Where a target is profiled: its adapter's `cluster_resource` (the emulated Cortex-M4's
  "mcu-qemu": in the point's task, on a node advertising it); None (the host, a device
  attached to the head): on the head, from the head's cache, after the point's entries
  arrive, so one CPU times every point.
- Faults: a worker or node lost mid-point is Ray's to retry (`POINT_RETRIES`) on another
  node, and its half-done work stays in its temp folder; a head killed mid-study resumes
  from its cache when run again (finished points are not sent again).

`import ray` lives only here: Ray is the optional `[cluster]` extra.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from devices.artifact_kinds import model_file
from devices.base import DeviceError, TargetProfile
from devices.errors import ConfigError, PipelineError
from devices.fsutil import sha256_file
from devices.registry import adapter_class
from pipeline.cache import StageCache
from pipeline.cache_transfer import PackedEntry, pack_entry, receive_packed
from pipeline.profile import Echo
from pipeline.progress import VERBOSE, verbosity
from pipeline.runner import RunResult
from pipeline.study.executors import PointsJob
from pipeline.study.points import (
    PROFILE_CACHE,
    Point,
    PointSpec,
    Profiler,
    failed_point,
    measure_point,
    profile_key,
    profile_point,
)
from pipeline.study.progress_line import StudyClock, finished_line
from pipeline.study.remote_point import RemotePointJob, RemotePointResult, run_remote_point
from pipeline.study.schedule import EntryName, Schedule, chain_entries

INSTALL_HINT = 'pip install -e ".[cluster]"'
try:
    import ray
    from ray.exceptions import RayError, RayTaskError
except ImportError as missing:  # the optional extra: say how to get it, exit 2
    raise ConfigError(f'study.executor = "ray" runs the points on a Ray cluster, and Ray is not '
                      f"installed here ({missing}) (hint: {INSTALL_HINT}, or set "
                      'study.executor = "serial")') from missing

LOCAL_CLUSTER = "auto"  # Ray's word for the cluster `ray start` started on this machine
POINT_RETRIES = 3  # a task whose worker or node died is run again, on any node that fits
REACH_TIMEOUT_S = 5.0
WAIT_S = 10.0  # how often the head looks whether the cluster can still run what it waits on


def cluster_address(cluster: str | None) -> str:
    """`--cluster`, else RAY_ADDRESS, else this machine's cluster."""
    return cluster or os.environ.get("RAY_ADDRESS") or LOCAL_CLUSTER


def check(cluster: str | None) -> None:
    """A HOST:PORT address answers (Ray's own connect waits much longer to fail)."""
    address = cluster_address(cluster)
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto": Ray looks for this machine's cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as error:
        raise DeviceError(_unreachable(address, f"nothing answers on {host}:{port}: "
                                       f"{error}")) from error


def _unreachable(address: str, why: str) -> str:
    return (f"no Ray cluster reachable at {address} ({why}) (hint: start one with `ray start "
            "--head --port 6379` and a worker per machine with `ray start --address "
            "HEAD:6379`, then pass --cluster HEAD:6379 or set RAY_ADDRESS)")


def connect(address: str) -> None:
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise DeviceError(_unreachable(address, str(error).splitlines()[0])) from error


def measure_points(job: PointsJob) -> list[Point]:
    address = cluster_address(job.cluster)
    check(job.cluster)
    connect(address)
    try:
        return ClusterStudy(job, address).run()
    finally:
        ray.shutdown()


@ray.remote
def _point_task(job: RemotePointJob, dataset: Any, *shipped: PackedEntry) -> RemotePointResult:
    result = run_remote_point(job, dataset, shipped)
    node = ray.get_runtime_context().get_node_id()[:8]
    return dataclasses.replace(result, node=f"{result.node} node {node}")


@dataclasses.dataclass
class Traffic:
    """What the cluster did beside the points' own work, for the study's last line."""

    sent: dict[EntryName, int] = dataclasses.field(default_factory=dict)  # put once each
    received: list[int] = dataclasses.field(default_factory=list)  # bytes of each entry
    task_seconds: list[float] = dataclasses.field(default_factory=list)
    moving_seconds: float = 0.0  # in the tasks: writing shipped entries, packing sealed ones
    receiving_seconds: float = 0.0  # at the head
    recording_seconds: list[float] = dataclasses.field(default_factory=list)  # head, per point

    def line(self, wall_s: float, nodes: int) -> str:
        if not self.task_seconds:
            return "cluster    every point came from the head's cache: no task ran"
        entry = statistics.median(self.received) if self.received else 0
        return (f"cluster    {len(self.task_seconds)} point tasks on {nodes} node"
                f"{'s' if nodes != 1 else ''} in {wall_s:.1f}s (their own run time "
                f"{sum(self.task_seconds):.1f}s, {self.moving_seconds:.2f}s of it moving "
                f"entries); sent {_mb(sum(self.sent.values()))} in {len(self.sent)} entries, "
                f"received {_mb(sum(self.received))} in {len(self.received)} entries "
                f"({entry / 1e3:.0f} kB median) in {self.receiving_seconds:.2f}s; the head "
                f"{statistics.mean(self.recording_seconds):.2f}s per point on its record")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class ClusterStudy:
    def __init__(self, job: PointsJob, address: str) -> None:
        self.job = job
        self.address = address
        self.head = StageCache(job.build_dir / "cache")
        self.worker_targets = tuple(t for t in job.targets if _resource(t) is not None)
        self.chains = [chain_entries(spec.config, job.dataset) for spec in job.specs]
        self.refs: dict[EntryName, Any] = {}  # the head's entries in the object store
        self.traffic = Traffic()
        self.points: dict[int, Point] = {}
        self.clock = StudyClock(len(job.specs))

    def run(self) -> list[Point]:
        started = time.perf_counter()
        self._check_resources()
        dataset = ray.put(self.job.dataset)  # once; every node fetches it once
        schedule = Schedule(self.chains)
        running: dict[Any, int] = {}  # task -> its point
        while not schedule.done or running:
            for index, missing in schedule.startable(self._at_head):
                if not missing and not self._worker_profiles_missing(index):
                    self._measure(index, "from the head's cache")  # resumed: nothing to send
                    schedule.finished(index)
                    continue
                running[self._send(index, missing, dataset)] = index
            if running:
                index, result = self._next_result(running)
                schedule.finished(index)
                self._receive(index, result)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self.job.echo(self.traffic.line(time.perf_counter() - started, nodes))
        return [self.points[index] for index in range(len(self.job.specs))]

    def _at_head(self, name: EntryName) -> bool:
        return self.head.entry_path(*name).is_dir()

    def _worker_profiles_missing(self, index: int) -> bool:
        export = self.head.entry_path("export", dict(self.chains[index])["export"])
        config = self.job.specs[index].config
        for profile in self.worker_targets:
            sha256 = sha256_file(export / model_file(profile.artifact_format,
                                                 profile.artifact_precision))
            if not self._at_head((PROFILE_CACHE, profile_key(profile, config, sha256))):
                return True
        return False

    def _send(self, index: int, missing: list[EntryName], dataset: Any) -> Any:
        spec = self.job.specs[index]
        shipped = [ref for name in self.chains[index] if name not in missing
                   if (ref := self._ref(name)) is not None]
        computes = " ".join(stage for stage, _ in missing) or "nothing (profiles only)"
        self.job.echo(f"study      sent {spec.arm} at {spec.level}, seed {spec.seed}; it "
                      f"computes: {computes}")
        resources = {_resource(t): 1.0 for t in self.worker_targets}
        task = _point_task.options(num_cpus=spec.config.study.point_cpus, resources=resources,
                                   max_retries=POINT_RETRIES, retry_exceptions=False)
        return task.remote(RemotePointJob(spec, self.worker_targets), dataset, *shipped)

    def _ref(self, name: EntryName) -> Any:
        """The head's entry in the object store (put once), or None if it went corrupt:
        lookup deleted it, so the worker computes it again."""
        if name not in self.refs:
            entry = self.head.lookup(*name, warn=self._warn)
            if entry is None:
                return None
            packed = pack_entry(entry)
            self.refs[name] = ray.put(packed)
            self.traffic.sent[name] = len(packed.data)
        return self.refs[name]

    def _next_result(self, running: dict[Any, int]) -> tuple[int, RemotePointResult]:
        while True:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            if ready:
                break
            self._check_resources()  # a node that alone could run them has gone
        index = running.pop(ready[0])
        spec = self.job.specs[index]
        try:
            result = ray.get(ready[0])
        except RayTaskError as error:  # the task raised what is not the point's own answer
            cause = getattr(error, "cause", None)
            raise (cause if isinstance(cause, PipelineError) else error) from error
        except RayError as error:  # its worker or node lost, and Ray's retries spent
            raise DeviceError(f"the Ray cluster at {self.address} lost point {spec.name} "
                              f"after {POINT_RETRIES} retries ({type(error).__name__}: "
                              f"{str(error).splitlines()[0]}) (hint: finished points are in "
                              "the head's cache; run the study again to resume)") from error
        self.traffic.task_seconds.append(result.seconds)
        self.traffic.moving_seconds += result.moving_seconds
        return index, result

    def _receive(self, index: int, result: RemotePointResult) -> None:
        started = time.perf_counter()
        for packed in result.entries:
            receive_packed(self.head, packed, origin=result.node,
                           waiting=lambda lock: self._warn(f"waiting for {lock}"))
            self.traffic.received.append(len(packed.data))
        self.traffic.receiving_seconds += time.perf_counter() - started
        for line in result.lines:
            if verbosity() == VERBOSE or line.lstrip().startswith("warning"):
                self.job.echo(line)
        self._measure(index, f"{result.node}, {result.seconds:.1f}s", result.error,
                      result.profile_errors)

    def _measure(self, index: int, where: str, error: str | None = None,
                 profile_errors: dict[str, str] | None = None) -> None:
        """The point's record from the head's cache, as a serial study makes it; the
        head's own targets are profiled here."""
        spec = self.job.specs[index]
        started = time.perf_counter()
        if error is not None:
            point = failed_point(spec, error)
        else:
            point = measure_point(spec, list(self.job.targets), self.job.dataset,
                                  build_dir=self.job.build_dir,
                                  points_dir=self.job.points_dir, echo=self._quiet,
                                  profiler=_profiled_on_workers(profile_errors or {}))
        self.traffic.recording_seconds.append(time.perf_counter() - started)
        self.points[index] = point
        self.job.echo(finished_line(spec, point, self.clock, where))

    def _check_resources(self) -> None:
        """Every point's task fits on some live node, or the study would wait forever."""
        wanted = {"CPU": float(max(spec.config.study.point_cpus for spec in self.job.specs))}
        wanted |= {_resource(t): 1.0 for t in self.worker_targets}
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if any(all(node.get(name, 0.0) >= amount for name, amount in wanted.items())
               for node in nodes):
            return
        needs = ", ".join(f"{name}: {amount:g}" for name, amount in wanted.items())
        raise DeviceError(
            f"no live node of the Ray cluster at {self.address} has {{{needs}}} for a point "
            f"(nodes: {[{k: v for k, v in n.items() if not k.startswith('node:')} for n in nodes]}"
            f") (hint: study.point_cpus at most a node's CPUs; a target profiled on workers "
            f"needs a node started with `ray start --resources '{{\"mcu-qemu\": 1}}'` that has "
            "qemu-system-arm and arm-none-eabi-gcc)")

    def _quiet(self, line: str) -> None:
        if verbosity() == VERBOSE or line.lstrip().startswith("warning"):
            self.job.echo(line)

    def _warn(self, message: str) -> None:
        self.job.echo(f"warning: {message}")


def _resource(profile: TargetProfile) -> str | None:
    return adapter_class(profile.adapter).cluster_resource


def _profiled_on_workers(errors: dict[str, str]) -> Profiler:
    """profile_point, except that a target whose profile failed on the worker is not
    profiled again here: that failure is this point's."""

    def profile(spec: PointSpec, run: RunResult, target: TargetProfile, sha256: str,
                points_dir: Path, build_dir: Path, echo: Echo) -> dict[str, Any]:
        if target.name in errors:
            raise DeviceError(errors[target.name])
        return profile_point(spec, run, target, sha256, points_dir, build_dir, echo)

    return profile
