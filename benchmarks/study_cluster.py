"""Time the default study serially and on local Ray clusters of 1 and 2 nodes.

Each run starts from an empty cache. The 1-node cluster runs one point at a time, as the
serial study does, so its extra time per point is Ray's overhead (worker start, shipping
entries both ways, the head receiving them); the 2-node one shows what two task slots
buy on this machine (on one machine they share its cores: TensorFlow in each task uses
all of them, as the serial run does, which keeps the numbers equal). Every cluster run's
study.json points are compared with the serial run's. Per arm, the mean of each point's
own run time on its worker (from the progress lines) is printed: each point's cost.
Usage: .venv/bin/python benchmarks/study_cluster.py [--targets mcu] [--nodes 1 2]
       [--keep DIR] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ray_nodes import LocalCluster  # noqa: E402 - after the path insert

POINT_LINE = re.compile(r"^study      (\S+) at \S+, seed \d+ \[[^\]]*?, ([\d.]+)s\]")


def timed_study(root: Path, targets: str, extra: list[str], log: Path,
                cluster: str | None = None) -> float:
    command = [sys.executable, "-m", "pipeline", "study", "--targets", targets,
               "--build-dir", str(root / "build"), "--dist-dir", str(root / "dist"), *extra]
    command += ["--cluster", cluster] if cluster else []
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        subprocess.run(command, check=True, stdout=output, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def points_of(root: Path) -> list[dict]:
    return json.loads((root / "dist" / "study" / "study.json").read_text())["points"]


def point_costs(log: Path) -> dict[str, float]:
    """Mean seconds of a point's task per arm, from the lines the head printed."""
    seconds = defaultdict(list)
    for line in log.read_text().splitlines():
        if match := POINT_LINE.match(line):
            seconds[match.group(1)].append(float(match.group(2)))
    return {arm: statistics.mean(values) for arm, values in seconds.items()}


def cluster_line(log: Path) -> str:
    return next((line for line in log.read_text().splitlines()
                 if line.startswith("cluster    ")), "no cluster line")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="mcu")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", type=Path, default=Path("build/study-cluster-benchmark"))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    extra = [item for value in args.set for item in ("--set", value)]
    args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        serial_root = Path(folder) / "serial"
        serial = timed_study(serial_root, args.targets, extra, args.keep / "serial.log")
        reference = points_of(serial_root)
        count = len(reference)
        print(f"serial          {serial:7.1f}s  {count} points, {serial / count:.1f}s per point",
              flush=True)
        for nodes in args.nodes:
            cluster = LocalCluster.start(workers=nodes - 1, cpus=1,
                                         resources={"mcu-qemu": 1}).wait()
            try:
                root = Path(folder) / f"ray-{nodes}"
                log = args.keep / f"ray-{nodes}.log"
                seconds = timed_study(root, args.targets, extra, log, cluster.address)
            finally:
                cluster.stop()
            same = points_of(root) == reference
            print(f"ray, {nodes} node{'s' if nodes > 1 else ' '}    {seconds:7.1f}s  "
                  f"{serial / seconds:.2f}x the serial speed, "
                  f"{(seconds - serial) / count:+.2f}s per point; points equal to the serial "
                  f"run's: {'yes' if same else 'NO'}", flush=True)
            print(f"                {cluster_line(log)}")
            costs = ", ".join(f"{arm} {value:.1f}s" for arm, value in point_costs(log).items())
            print(f"                each point's own run time, mean per arm: {costs}")
    print(f"logs in {args.keep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
