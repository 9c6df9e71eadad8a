"""Each config key that selects from a registry allows exactly the registry's names.

The config module stays free of TensorFlow (every command loads it, `check` must start in
milliseconds), so it cannot import the registries whose entries build TF objects; this test
is what keeps the two lists one fact (docs/architecture.md, Configuration)."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline import config, distribute, flow
from pipeline.pruning import criteria, retraining, selection
from pipeline.stages import prune, qat
from pipeline.study import arms, executors

SELECTORS = {
    ("prune", "method"): prune.METHODS,
    ("prune", "criterion"): criteria.CRITERIA,
    ("prune", "finetune"): retraining.STRATEGIES,
    ("prune", "scope"): selection.SCOPES,
    ("prune", "layers"): selection.LAYER_CHOICES,
    ("distribute", "strategy"): distribute.STRATEGIES,
    ("study", "arms"): arms.ARMS,
    ("study", "executor"): executors.EXECUTORS,
    ("quantize", "method"): flow.QUANTIZE_FLOWS,
    ("quantize", "finetune"): qat.FINETUNES,
}


def _choices(section: str, key: str) -> set:
    cls = type(getattr(config.PipelineConfig(), section))
    spec = next(f for f in dataclasses.fields(cls) if f.name == key)
    return set(spec.metadata.get("choices") or spec.metadata["subset"])


@pytest.mark.parametrize(("section", "key"), sorted(SELECTORS))
def test_config_choices_are_the_registry_names(section: str, key: str) -> None:
    assert _choices(section, key) == set(SELECTORS[(section, key)])
