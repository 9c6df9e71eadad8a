"""tf.distribute in the training stages: the strategy registry, the TF_CONFIG roles, and a
real two-worker MultiWorkerMirroredStrategy run over loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.errors import ConfigError
from pipeline.cluster import run_local_cluster, tf_config
from pipeline.config import load_config
from pipeline.distribute import cluster_role
from pipeline.runner import Runner
from pipeline.stage import load_model
from pipeline.training import top1

# two and four epochs: the student near 0.95 already, the two workers 0.4 points from one
# process when measured (the test allows 1), in half the time of four and six
COMMON = ["teacher.epochs=2", "student.epochs=4", "teacher.width=0.5",
          "teacher.early_stopping_patience=0", "student.early_stopping_patience=0"]


def test_roles_from_tf_config() -> None:
    addresses = ["127.0.0.1:1", "127.0.0.1:2"]
    chief = cluster_role({"TF_CONFIG": tf_config(addresses, 0)})
    worker = cluster_role({"TF_CONFIG": tf_config(addresses, 1)})
    assert (chief.is_chief, chief.workers) == (True, 2)
    assert (worker.is_chief, worker.task_index) == (False, 1)
    explicit = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "worker", "index": 0}}
    assert not cluster_role({"TF_CONFIG": json.dumps(explicit)}).is_chief
    assert cluster_role({}).is_chief  # a single process is its own chief


def test_bad_tf_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="TF_CONFIG is not a valid cluster description"):
        cluster_role({"TF_CONFIG": '{"cluster": {}}'})


def test_strategy_is_validated() -> None:
    with pytest.raises(ConfigError, match="distribute.strategy = 'horovod' is not allowed"):
        load_config(overrides=["distribute.strategy=horovod"])


@pytest.mark.slow
def test_two_local_workers_distill_like_one_process(tmp_path: Path) -> None:
    single_config = load_config(overrides=COMMON)
    single = Runner(single_config, tmp_path / "single", echo=lambda _: None).run(until="student")
    assert single.record("student")["distribute"]["global_batch_size"] == 64

    # Two workers with half the per-replica batch: the same global batch of 64.
    arguments = ["--build-dir", str(tmp_path / "cluster"), "--until", "student"]
    arguments += [part for item in COMMON + ["teacher.batch_size=32", "student.batch_size=32"]
                  for part in ("--set", item)]
    outcomes = run_local_cluster(2, arguments, tmp_path / "logs", timeout_s=900)
    assert [o.returncode for o in outcomes] == [0, 0], [o.log.read_text()[-2000:] for o in outcomes]

    chief_entries = list((tmp_path / "cluster" / "cache" / "student").iterdir())
    worker_entries = list((tmp_path / "cluster" / "worker-1" / "cache" / "student").iterdir())
    assert len(chief_entries) == 1 and len(worker_entries) == 1
    assert not (tmp_path / "cluster" / "cache" / "worker-1").exists()
    record = json.loads((chief_entries[0] / "entry.json").read_text())["record"]
    assert record["distribute"] == {
        "strategy": "multi_worker", "replicas": 2, "workers": 2,
        "batch_size_per_replica": 32, "global_batch_size": 64,
    }
    dataset = single.dataset
    saved_top1 = top1(load_model(chief_entries[0]), dataset.x_test, dataset.y_test)
    assert saved_top1 == record["top1"]
    assert abs(record["top1"] - single.record("student")["top1"]) <= 0.01 + 1e-9  # 1 point
