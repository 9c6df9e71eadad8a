"""Whether a model can be channel-pruned at all, asked before any training: a run that
would be refused at the prune stage is refused at its start, naming the layer."""

from __future__ import annotations

from typing import Any

from devices.errors import PruningError
from pipeline.pruning.graph import analyse
from pipeline.pruning.surgery import model_config, rebuild

SHOWN_REASONS = 5


def check_prunable(model: Any) -> None:
    """Raise PruningError unless structured pruning can take `model` (built, untrained
    weights are fine): every layer has a channel rule, some group of channels may go, and
    the model rebuilds from its config (custom layers with a complete get_config)."""
    graph = analyse(model)
    if not graph.prunable_groups():
        fixed = [f"{', '.join(group.producers)}: {group.reason}" for group in graph.fixed_groups()]
        shown = "; ".join(fixed[:SHOWN_REASONS]) + (" ..." if len(fixed) > SHOWN_REASONS else "")
        raise PruningError(
            f"model {model.name!r} has no channel group that can be pruned "
            f"({shown or 'no layer produces channels'}) (hint: prune.method = \"magnitude\" "
            "zeroes weights in any model)"
        )
    rebuild(model, model_config(model))
