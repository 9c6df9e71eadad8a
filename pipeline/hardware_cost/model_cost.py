"""A whole Keras model's cost on a budget's target, from the cost table: converted to int8
once, its ops looked up (measured where the table lacks them). Planning a level by cost
(the study's hardware-aware arms, benchmarks/budget_vs_uniform.py) reads it on untrained
models: the cost of a layer is its shapes', not its weights'."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.hardware_cost.cost_model import CostModel
from pipeline.hardware_cost.int8_graph import int8_graph
from pipeline.hardware_cost.measurers import load_measurer
from pipeline.hardware_cost.table import TABLE_FOLDER, CostTable


def target_cost_model(target: str, config: PipelineConfig, build_dir: Path,
                      echo: Callable[[str], None] = print) -> CostModel:
    """The cost model of `target`: its measurer and the build folder's table."""
    measurer = load_measurer(target, config)
    return CostModel(measurer, CostTable(Path(build_dir) / TABLE_FOLDER, measurer.settings()),
                     echo)


def model_cost(model: Any, cost_model: CostModel, training_images: np.ndarray) -> float:
    converted = int8_graph(model, training_images)
    return cost_model.predict(converted.signatures, converted.io).total
