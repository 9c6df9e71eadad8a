"""Per-target cost measurers, a registry by adapter name (the adapter a target profile
names): what a target's cost is (instructions, milliseconds), how one op of a signature is
measured (a one-op model, devices/op_models.py), what the invoke itself costs, and how a
whole model is measured to check a prediction. The device work itself is in devices/.

`pipeline/config.py`'s BUDGET_QUANTITIES lists the same adapters and what each can hold a
budget to (tests/pipeline/test_config_registries.py keeps them equal).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.base import TargetProfile
from devices.errors import ConfigError
from devices.op_signature import IoSignature, OpSignature
from devices.profiles import load_profile
from pipeline.config import BudgetConfig, PipelineConfig


@dataclass(frozen=True)
class Measured:
    value: float  # in the measurer's unit
    spread: dict[str, float] | None = None  # timings: the lowest and highest block medians

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "spread": self.spread}


@dataclass(frozen=True)
class ModelMeasurement:
    value: float  # the whole model, one inference
    spread: dict[str, float] | None = None
    per_op: tuple[float, ...] | None = None  # where the device reports each op (the MCU)


class CostMeasurer(ABC):
    unit: str  # "instructions" or "ms"
    exact: bool  # the same value on every measurement (an instruction count)
    quantities: tuple[str, ...]  # what a budget on this target may name

    def __init__(self, profile: TargetProfile) -> None:
        self.profile = profile

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """What a cost depends on besides the op: the table's key."""

    @abstractmethod
    def native_limit(self, budget: BudgetConfig) -> float:
        """The budget in this measurer's unit."""

    @abstractmethod
    def measure_ops(self, signatures: list[OpSignature]) -> list[Measured]:
        """Each op's own cost, from a one-op model per signature."""

    @abstractmethod
    def measure_invoke(self, io: IoSignature) -> Measured:
        """What one inference costs besides its ops (input and output copies, dispatch)."""

    @abstractmethod
    def measure_model(self, tflite: bytes, samples: np.ndarray) -> ModelMeasurement:
        """The whole model on the target, as its deploy measures it."""

    def margin(self, op_count: int) -> float:
        """How far under the limit a prediction aims: an exact count's rounding."""
        return 0.0

    def describe(self, value: float) -> str:
        return f"{value:,.0f} instructions" if self.unit == "instructions" else f"{value:.4g} ms"


# adapter name -> module whose MEASURER is its CostMeasurer class (imported when used)
MEASURER_MODULES: dict[str, str] = {
    "mcu-qemu": "pipeline.hardware_cost.mcu",
    "host": "pipeline.hardware_cost.litert",
}


def measurer_class(adapter: str) -> type[CostMeasurer]:
    if adapter not in MEASURER_MODULES:
        raise ConfigError(f"no cost measurer for adapter {adapter!r}; expected one of "
                          f"{', '.join(sorted(MEASURER_MODULES))} (hint: prune.budget.target "
                          "= \"mcu\" or \"host\")")
    return importlib.import_module(MEASURER_MODULES[adapter]).MEASURER


def load_measurer(target: str, config: PipelineConfig) -> CostMeasurer:
    """The target's profile as a deploy loads it (the config's [targets.<name>] tables, then
    `--set target.…`), and its measurer: the budget is measured as the deploy runs."""
    profile = load_profile(target, config.overrides_for(target))
    return measurer_class(profile.adapter)(profile)
