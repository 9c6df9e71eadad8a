"""tf.distribute for the training stages.

`default` is TensorFlow's no-op strategy, `mirrored` copies the model to every local GPU
(the CPU when there is none), `multi_worker` is MultiWorkerMirroredStrategy over the cluster
in the standard TF_CONFIG variable. Config `batch_size` is per replica; the global batch is
that times the replicas in sync. In a cluster every worker runs every training stage in
lockstep, and only the chief writes cache entries and `dist/`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.errors import ConfigError
from pipeline.config import DistributeConfig

_strategy: Any = None
_strategy_name: str | None = None


@dataclass(frozen=True)
class ClusterRole:
    task_type: str
    task_index: int
    workers: int
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        # Without an explicit "chief" task, worker 0 is the chief (TensorFlow's convention).
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_index == 0 and not self.has_chief_task


def cluster_role(environ: dict[str, str] | None = None) -> ClusterRole:
    text = (environ if environ is not None else os.environ).get("TF_CONFIG", "")
    if not text:
        return ClusterRole("chief", 0, 1)
    try:
        document = json.loads(text)
        cluster, task = document["cluster"], document["task"]
        role = ClusterRole(
            str(task["type"]), int(task["index"]),
            sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")),
            has_chief_task=bool(cluster.get("chief")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"TF_CONFIG is not a valid cluster description: {exc} (hint: "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
            '"index": 0}})'
        ) from exc
    return role


def _multi_worker() -> Any:
    from devices.tf_env import tf  # deferred: cluster_role() runs without TensorFlow

    role = cluster_role()
    if role.workers < 1 or not os.environ.get("TF_CONFIG"):
        raise ConfigError(
            "distribute.strategy = 'multi_worker' needs the TF_CONFIG variable describing the "
            "cluster (hint: see README 'Training on several machines', or `make train-cluster`)"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored() -> Any:
    from devices.tf_env import tf  # deferred: cluster_role() runs without TensorFlow

    return tf.distribute.MirroredStrategy()


def _default() -> Any:
    from devices.tf_env import tf  # deferred: cluster_role() runs without TensorFlow

    return tf.distribute.get_strategy()


STRATEGIES: dict[str, Callable[[], Any]] = {
    "default": _default, "mirrored": _mirrored, "multi_worker": _multi_worker,
}


def strategy_for(config: DistributeConfig) -> Any:
    """The process-wide strategy; created once, before any other TensorFlow op, as
    MultiWorkerMirroredStrategy requires."""
    global _strategy, _strategy_name
    if _strategy is None or _strategy_name != config.strategy:
        if _strategy is not None and config.strategy == "multi_worker":
            raise ConfigError("a multi_worker strategy must be the first one a process creates")
        _strategy, _strategy_name = STRATEGIES[config.strategy](), config.strategy
    return _strategy


def current_strategy() -> Any:
    from devices.tf_env import tf  # deferred: cluster_role() runs without TensorFlow

    return tf.distribute.get_strategy()


def replicas_in_sync() -> int:
    return int(current_strategy().num_replicas_in_sync)


def describe(config: DistributeConfig, batch_size: int) -> dict[str, Any]:
    replicas = replicas_in_sync()
    return {
        "strategy": config.strategy, "replicas": replicas, "workers": cluster_role().workers,
        "batch_size_per_replica": batch_size, "global_batch_size": batch_size * replicas,
    }
