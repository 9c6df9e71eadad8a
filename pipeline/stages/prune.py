"""Prune stage: the distilled student made smaller, then retrained.

`prune.method` picks one entry of `METHODS`:
- `channel`: structured pruning (pipeline.pruning): fewer channels in the dense model, so
  the file shrinks and every runtime runs fewer MACs; optional iterative rounds;
- `magnitude` / `m_by_n`: TFMOT's unstructured modes, for comparison: zeros in a dense
  model of the same size (the record shows gzip bytes and sparsity instead);
- `none`: the student unchanged, so one command can compare with and without pruning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import ConfigError, PruningError
from models.complexity import count_macs, count_params
from pipeline.config import PipelineConfig, PruneConfig, StudentConfig
from pipeline.data import Dataset
from pipeline.hardware_cost.cost_model import CostModel
from pipeline.hardware_cost.int8_graph import Int8Graph, int8_graph
from pipeline.hardware_cost.layer_costs import layer_cost_rows, layer_cost_table
from pipeline.hardware_cost.measurers import load_measurer
from pipeline.hardware_cost.model_cost import target_cost_model
from pipeline.model_files import model_label
from pipeline.pruning import magnitude
from pipeline.pruning.budget_search import BudgetSearch, SearchOutcome, SearchSettings
from pipeline.pruning.channel import prune_channels
from pipeline.pruning.graph import leaf_layers
from pipeline.pruning.layer_rules import find_rule
from pipeline.pruning.prunability import check_prunable
from pipeline.pruning.recalibration import recalibrate_batch_norm
from pipeline.pruning.retraining import RetrainSettings, retrain
from pipeline.pruning.selection import SelectionRule
from pipeline.pruning.slimming import add_slimming_penalty
from pipeline.stage import MODEL_FILE, Stage, StageContext, load_model, uncompiled_copy
from pipeline.training import top1


@dataclass(frozen=True)
class PruneResult:
    method: str
    criterion: str | None
    finetune: str | None
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    bytes_before: int  # the saved .keras file
    bytes_after: int
    gzip_bytes_before: int  # the same file after gzip -9: where unstructured zeros show
    gzip_bytes_after: int
    layer_channels: dict[str, tuple[int, int]]  # layers with a kernel -> (before, after)
    top1_before_pruning: float
    top1_before_finetune: float  # right after pruning, no retraining (iterative: last round)
    top1: float  # after retraining
    wall_time_s: float
    finetune_epochs: int
    top1_after_bn_recalibration: float | None = None  # channel + BatchNorm models only
    sparsity: float | None = None  # magnitude / m_by_n: zeros in the pruned kernels
    sparsity_before_finetune: float | None = None
    rounds: tuple[dict[str, Any], ...] = ()
    plan: dict[str, Any] | None = None
    history: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    # prune.budget: the search, the measured result and each layer's cost (README, "Pruning
    # to a measured budget"); layer_costs: layer -> its cost before and after
    budget: dict[str, Any] | None = None
    layer_costs: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["layer_channels"] = {
            name: {"before": before, "after": after}
            for name, (before, after) in self.layer_channels.items()
        }
        record["rounds"] = list(self.rounds)
        # metrics.pruned (docs/architecture.md, Contracts) describes the model that ships
        record.update(
            params=self.params_after, macs=self.macs_after, bytes=self.bytes_after,
            mac_ratio=self.macs_after / self.macs_before if self.macs_before else 1.0,
            param_ratio=self.params_after / self.params_before if self.params_before else 1.0,
        )
        return record


@dataclass(frozen=True)
class StageInputs:
    config: PruneConfig
    student: Any
    teacher: Any
    data: Dataset
    training: StudentConfig
    seed: int
    cost_model: CostModel | None = None  # prune.budget: the target's costs
    echo: Callable[[str], None] = print


@dataclass(frozen=True)
class MethodOutcome:
    model: Any
    top1_before_finetune: float
    finetune: str | None
    top1_after_bn_recalibration: float | None = None
    history: dict[str, Any] = field(default_factory=dict)
    rounds: tuple[dict[str, Any], ...] = ()
    plan: dict[str, Any] | None = None
    sparsity: float | None = None
    sparsity_before_finetune: float | None = None
    note: str = ""
    budget: dict[str, Any] | None = None
    layer_costs: dict[str, dict[str, float]] | None = None


def _test_top1(model: Any, data: Dataset) -> float:
    return top1(model, data.x_test, data.y_test)


def _settings(inputs: StageInputs, epochs: int, callbacks: tuple[Any, ...] = ()) -> RetrainSettings:
    return RetrainSettings(inputs.training, epochs, inputs.config.learning_rate, inputs.seed,
                           callbacks)


def _none(inputs: StageInputs) -> MethodOutcome:
    return MethodOutcome(
        model=inputs.student, top1_before_finetune=_test_top1(inputs.student, inputs.data),
        finetune=None, note="prune.method = none: the student is passed on unchanged",
    )


def _round_ratios(ratio: float, iterations: int) -> list[float]:
    """Per-round ratios whose product of kept fractions reaches 1 - ratio linearly:
    after round i the model keeps 1 - ratio * i / n of its original channels."""
    kept = [1.0 - ratio * step / iterations for step in range(iterations + 1)]
    return [1.0 - kept[step + 1] / kept[step] for step in range(iterations)]


def _sample_inputs(inputs: StageInputs, round_index: int = 0) -> np.ndarray:
    """`prune.sample_size` training images (apoz activations, BatchNorm re-calibration)."""
    rng = np.random.default_rng([inputs.seed, round_index])
    count = min(inputs.config.sample_size, len(inputs.data.x_train))
    return inputs.data.x_train[np.sort(rng.choice(len(inputs.data.x_train), count, replace=False))]


def _slimming(inputs: StageInputs, model: Any) -> tuple[Any, dict[str, Any]]:
    """Network Slimming: train with an L1 penalty on BN gammas before bn_scale pruning."""
    config = inputs.config
    penalised = uncompiled_copy(model)
    layers = add_slimming_penalty(penalised, config.slimming_penalty)
    penalised, history = retrain(
        _intermediate_strategy(config.finetune), penalised, inputs.teacher, inputs.data,
        _settings(inputs, config.finetune_epochs),
    )
    return penalised, {"penalty": config.slimming_penalty, "batch_norms": layers,
                       "history": history}


def _intermediate_strategy(strategy: str) -> str:
    # Re-initialising between rounds would throw away what the round kept: only the last
    # round may retrain from scratch; earlier rounds (and slimming) fine-tune instead.
    return "finetune" if strategy == "retrain" else strategy


def _channel(inputs: StageInputs) -> MethodOutcome:
    config = inputs.config
    if config.budget is not None:
        return _budgeted(inputs)
    model, notes, slimming = inputs.student, [], None
    if config.criterion == "bn_scale" and config.slimming_penalty > 0:
        model, slimming = _slimming(inputs, model)
        notes.append(f"slimming: {config.finetune_epochs} epochs of L1 on BN gammas first")
    rounds, plans, history = [], [], {}
    use_threshold = config.threshold > 0
    ratios = _round_ratios(config.ratio, config.iterations)
    for index, round_ratio in enumerate(ratios, start=1):
        last = index == len(ratios)
        samples = _sample_inputs(inputs, index)
        model, plan = prune_channels(
            model, config.criterion,
            ratio=None if use_threshold else round_ratio,
            threshold=config.threshold if use_threshold else None,
            activation_threshold=config.activation_threshold or None, layers=config.layers,
            scope=config.scope, min_channels=config.min_channels, round_to=config.round_to,
            sample_inputs=samples,
        )
        plans.append(plan)
        record = {"round": index, "ratio": round_ratio, "channels": plan.channels_after,
                  "macs": count_macs(model), "top1_before_finetune": _test_top1(model, inputs.data),
                  "top1_after_bn_recalibration": None}
        if recalibrate_batch_norm(model, samples):
            record["top1_after_bn_recalibration"] = _test_top1(model, inputs.data)
        record["strategy"] = config.finetune if last else _intermediate_strategy(config.finetune)
        model, history = retrain(record["strategy"], model, inputs.teacher, inputs.data,
                                 _settings(inputs, config.finetune_epochs))
        record["top1"] = _test_top1(model, inputs.data)
        rounds.append(record)
    if config.finetune_epochs == 0:
        notes.append("prune.finetune_epochs = 0: no retraining")
    plan_record = plans[-1].to_dict()
    plan_record["slimming"] = slimming
    return MethodOutcome(
        model=model, top1_before_finetune=rounds[-1]["top1_before_finetune"],
        top1_after_bn_recalibration=rounds[-1]["top1_after_bn_recalibration"],
        finetune=config.finetune if config.finetune_epochs > 0 else None, history=history,
        rounds=tuple(rounds), plan=plan_record,
        note="; ".join(notes),
    )


BUDGET_NOTE = ("prune.budget: channel counts searched per layer on the target's measured "
               "cost; prune.ratio and prune.scope are not used")


def _search_settings(inputs: StageInputs, limit: float, aim: float) -> SearchSettings:
    config = inputs.config
    assert config.budget is not None  # _budgeted's caller checked
    rule = SelectionRule(ratio=None, threshold=config.threshold or None,
                         activation_threshold=config.activation_threshold or None,
                         layers=config.layers, min_channels=config.min_channels)
    return SearchSettings(
        limit=limit, aim=aim, steps=config.budget.steps, criterion=config.criterion, rule=rule,
        step_samples=config.budget.step_samples,
        strategy=_intermediate_strategy(config.finetune), training=inputs.training,
        learning_rate=config.learning_rate, seed=inputs.seed)


def _budgeted(inputs: StageInputs) -> MethodOutcome:
    """prune.budget: the search, the usual fine-tune, then the result measured on the target."""
    config, cost_model, data = inputs.config, inputs.cost_model, inputs.data
    if cost_model is None or config.budget is None:
        raise PruningError("prune.budget needs the target's cost model (hint: run the prune "
                           "stage through the runner, `python -m pipeline deploy`)")
    if len(data.y_val) == 0:
        raise ConfigError("prune.budget judges each candidate on the validation split, and "
                          "data.validation_split is 0 (hint: data.validation_split = 0.1)")
    started = time.perf_counter()
    measurer = cost_model.measurer
    limit = measurer.native_limit(config.budget)
    base = int8_graph(inputs.student, data.x_train)
    settings = _search_settings(inputs, limit, limit - measurer.margin(len(base.signatures)))
    search = BudgetSearch(settings, cost_model, data, inputs.teacher, _sample_inputs(inputs),
                          lambda model: int8_graph(model, data.x_train), inputs.echo)
    outcome = search.run(inputs.student, base)
    top1_searched = _test_top1(outcome.model, data)
    model, history = retrain(config.finetune, outcome.model, inputs.teacher, data,
                             _settings(inputs, config.finetune_epochs))
    record = _budget_record(inputs, settings, base, outcome, int8_graph(model, data.x_train))
    record["search_seconds"] = round(time.perf_counter() - started, 1)
    notes = [BUDGET_NOTE]
    if not record["met"]:
        notes.append(f"the fine-tuned model measures {measurer.describe(record['measured'])}, "
                     f"over the budget's {measurer.describe(limit)}")
    return MethodOutcome(
        model=model, top1_before_finetune=top1_searched,
        finetune=config.finetune if config.finetune_epochs > 0 else None, history=history,
        plan=_budget_plan(config, outcome), note="; ".join(notes), budget=record,
        layer_costs={row["layer"]: {"before": row["cost_before"], "after": row["cost_after"]}
                     for row in record["layers"]},
    )


def _budget_record(inputs: StageInputs, settings: SearchSettings, base: Int8Graph,
                   outcome: SearchOutcome, final: Int8Graph) -> dict[str, Any]:
    """The fine-tuned model predicted and measured on the target, the unpruned one measured,
    each layer's cost before and after, the search's steps and the table values it used."""
    config, cost_model, data = inputs.config, inputs.cost_model, inputs.data
    assert config.budget is not None and cost_model is not None  # _budgeted checked
    measurer = cost_model.measurer
    predicted = cost_model.predict(final.signatures, final.io)
    measured = measurer.measure_model(final.content, data.x_test)
    unpruned = measurer.measure_model(base.content, data.x_test)
    rows = layer_cost_rows(
        outcome.shape_model.group_of_op(), outcome.groups, outcome.channels_before,
        outcome.counts, unpruned.per_op or outcome.unpruned_cost.per_op,
        measured.per_op or predicted.per_op, final.signatures,
        (outcome.unpruned_cost.invoke, predicted.invoke))
    inputs.echo(f"  budget: {measurer.describe(measured.value)} measured on "
                f"{config.budget.target} ({100 * measured.value / settings.limit:.1f}% of the "
                f"limit {measurer.describe(settings.limit)}; predicted "
                f"{measurer.describe(predicted.total)})")
    for line in layer_cost_table(rows, measurer.unit):
        inputs.echo(line)
    return {
        "target": config.budget.target, "quantity": config.budget.quantity,
        "limit": config.budget.limit, "unit": measurer.unit, "limit_in_unit": settings.limit,
        "aim": settings.aim,
        "unpruned": {"predicted": outcome.unpruned_cost.total, "measured": unpruned.value,
                     "spread": unpruned.spread},
        "searched": {"predicted": outcome.cost.total, "top1_val": outcome.top1_val},
        "predicted": predicted.total, "measured": measured.value, "spread": measured.spread,
        "met": measured.value <= settings.limit, "of_limit": measured.value / settings.limit,
        "prediction_error": predicted.total / measured.value - 1.0 if measured.value else None,
        "per_op_measured": measured.per_op is not None,
        "steps": list(outcome.steps), "layers": rows, "table": cost_model.table.stats(),
        "values_used": cost_model.used,
    }


def _budget_plan(config: PruneConfig, outcome: SearchOutcome) -> dict[str, Any]:
    return {"criterion": config.criterion, "budget": True, "min_channels": config.min_channels,
            "layers": config.layers,
            "groups": [{"index": group, "producers": outcome.groups[group].split(", "),
                        "channels_before": outcome.channels_before[group],
                        "channels_after": outcome.counts[group]} for group in outcome.counts]}


def _sparse(inputs: StageInputs) -> MethodOutcome:
    config = inputs.config
    mode = magnitude.get_mode(config.method)
    targets = magnitude.target_sparsities(
        inputs.student, mode, ratio=config.ratio, threshold=config.threshold)
    one_shot = magnitude.prune_one_shot(inputs.student, mode, targets)
    notes = [f"unstructured {mode.name}: dense shapes unchanged, zeros only"]
    if mode.fixed_sparsity is not None:
        notes.append(f"2:4 pattern fixes sparsity at {mode.fixed_sparsity:.2f}; "
                     "prune.ratio and prune.threshold ignored")
    elif config.threshold > 0:
        notes.append(f"|w| < {config.threshold:g} * max|w| per layer; prune.ratio ignored")
    model, history = one_shot, {}
    if config.finetune_epochs > 0:
        strategy = "finetune" if config.finetune == "retrain" else config.finetune
        if strategy != config.finetune:
            notes.append("retrain is not meaningful for masks: fine-tuned instead")
        steps = magnitude.steps_for(len(inputs.data.x_train), inputs.training.batch_size,
                                    config.finetune_epochs)
        wrapped = magnitude.wrap(inputs.student, mode, targets,
                                 magnitude.polynomial_schedule(steps))
        wrapped, history = retrain(
            strategy, wrapped, inputs.teacher, inputs.data,
            _settings(inputs, config.finetune_epochs, (magnitude.update_step_callback(),)),
        )
        # Early stopping may restore mid-schedule weights: re-apply the final masks.
        model = magnitude.prune_one_shot(magnitude.strip(wrapped), mode, targets)
    return MethodOutcome(
        model=model, top1_before_finetune=_test_top1(one_shot, inputs.data),
        finetune=config.finetune if config.finetune_epochs > 0 else None, history=history,
        sparsity=magnitude.sparsity_stats(model, mode).sparsity,
        sparsity_before_finetune=magnitude.sparsity_stats(one_shot, mode).sparsity,
        note="; ".join(notes),
    )


METHODS: dict[str, Callable[[StageInputs], MethodOutcome]] = {
    "none": _none,
    "channel": _channel,
    "magnitude": _sparse,
    "m_by_n": _sparse,
}


def layer_widths(model: Any) -> dict[str, int]:
    """Output width of each layer with a kernel (convs, Dense, depthwise; a nested model's
    as 'outer/inner'), per the layer table; layers it does not know are left out
    (magnitude modes take any model)."""
    return {name: int(layer.output.shape[-1]) for name, layer in leaf_layers(model).items()
            if (rule := find_rule(layer)) is not None and rule.kernel is not None}


def check_prune_source(config: PruneConfig, model: Any) -> None:
    """Refuse, before any training, a source model `prune.method = "channel"` cannot take
    (PruningError naming the layer); `model` may be the untrained architecture."""
    if config.method == "channel":
        check_prunable(model)


def save_model_atomically(model: Any, path: Path) -> int:
    """Save to a temp name beside `path`, then rename; returns the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        uncompiled_copy(model).save(temp)  # an uncompiled copy: the file holds no optimizer state
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.stat().st_size


def _file_sizes(model: Any, path: Path) -> tuple[int, int]:
    return save_model_atomically(model, path), magnitude.gzip_bytes(path)


def run_prune(
    config: PruneConfig, *, student: Any, teacher: Any, data: Dataset, out_dir: Path,
    training: StudentConfig | None = None, seed: int = 0, cost_model: CostModel | None = None,
    echo: Callable[[str], None] = print,
) -> PruneResult:
    """Prune `student` per `config`, retrain, save out_dir/model.keras, return the record.

    `training` gives batch size, optimizer, schedule, temperature and alpha for retraining
    (default: StudentConfig()); `prune.learning_rate` and `prune.finetune_epochs` override
    its rate and epochs.
    """
    if config.method not in METHODS:
        raise PruningError(
            f"unknown prune.method {config.method!r}; expected one of {', '.join(METHODS)}"
        )
    started = time.perf_counter()
    out_dir = Path(out_dir)
    inputs = StageInputs(config, student, teacher, data, training or StudentConfig(), seed,
                         cost_model, echo)
    top1_before = _test_top1(student, data)
    outcome = METHODS[config.method](inputs)
    before_path = out_dir / ".unpruned-size-probe.keras"
    try:
        bytes_before, gzip_before = _file_sizes(student, before_path)
    finally:
        before_path.unlink(missing_ok=True)
    bytes_after, gzip_after = _file_sizes(outcome.model, out_dir / MODEL_FILE)
    widths_before, widths_after = layer_widths(student), layer_widths(outcome.model)
    return PruneResult(
        method=config.method,
        criterion=config.criterion if config.method == "channel" else None,
        finetune=outcome.finetune,
        params_before=count_params(student), params_after=count_params(outcome.model),
        macs_before=count_macs(student), macs_after=count_macs(outcome.model),
        bytes_before=bytes_before, bytes_after=bytes_after,
        gzip_bytes_before=gzip_before, gzip_bytes_after=gzip_after,
        layer_channels={name: (widths_before[name], widths_after.get(name, 0))
                        for name in widths_before},
        top1_before_pruning=top1_before,
        top1_before_finetune=outcome.top1_before_finetune,
        top1_after_bn_recalibration=outcome.top1_after_bn_recalibration,
        top1=top1_before if config.method == "none" else _test_top1(outcome.model, data),
        wall_time_s=round(time.perf_counter() - started, 3),
        finetune_epochs=config.finetune_epochs if outcome.finetune else 0,
        sparsity=outcome.sparsity, sparsity_before_finetune=outcome.sparsity_before_finetune,
        rounds=outcome.rounds, plan=outcome.plan, history=outcome.history, note=outcome.note,
        budget=outcome.budget, layer_costs=outcome.layer_costs,
    )


def headline(record: dict[str, Any]) -> str:
    text = (f"{record['method']} top1={record['top1']:.4f} "
            f"(before finetune {record['top1_before_finetune']:.4f}) "
            f"macs={record['macs_after']:,} ({record['mac_ratio']:.2f}x)")
    if record.get("sparsity") is not None:
        text += f" sparsity={record['sparsity']:.2f} gzip={record['gzip_bytes_after']:,}B"
    budget = record.get("budget")
    if budget:
        measured = (f"{budget['measured']:,.0f}" if budget["unit"] == "instructions"
                    else f"{budget['measured']:.4g}")
        text += (f" {budget['target']}={measured} {budget['unit']} "
                 f"({100 * budget['of_limit']:.1f}% of the budget"
                 f"{'' if budget['met'] else ', OVER'})")
    return text


def cost_model_for(config: PipelineConfig, build_dir: Path,
                   echo: Callable[[str], None] = print) -> CostModel | None:
    """prune.budget's cost model: its target's measurer and table (None without a budget)."""
    if config.prune.budget is None or config.prune.method != "channel":
        return None
    return target_cost_model(config.prune.budget.target, config, build_dir, echo)


def budget_key(config: PipelineConfig) -> dict[str, Any]:
    """The prune stage's key beyond its sections: the budget target's settings (a kernel
    or compiler change, another CPU, is another result)."""
    if config.prune.budget is None:
        return {}
    return {"budget_target": load_measurer(config.prune.budget.target, config).settings()}


def run_stage(context: StageContext) -> dict[str, Any]:
    """The runner's entry point: prunes the upstream model named by `prune.source` (the
    distilled student by default, or the teacher), with the teacher for kd retraining."""
    section = context.config.prune
    teacher = load_model(context.upstream["teacher"].path)
    source = teacher if section.source == "teacher" else load_model(
        context.upstream[section.source].path)
    result = run_prune(
        section, student=source, teacher=teacher, data=context.dataset,
        out_dir=context.out_dir, training=context.config.student,
        seed=context.config.student.training_seed(context.config.data),
        cost_model=cost_model_for(context.config, context.build_dir, context.echo),
        echo=context.echo,
    )
    record = result.to_dict()
    record["source"] = section.source
    record["model"] = model_label(context.config.section(section.source).model)  # no folders
    return record


STAGE = Stage(
    name="pruned", version=4, sections=("prune", "student", "distribute"),
    upstream=("student", "teacher"), run=run_stage, headline=headline, trains=True,
    key_extras=budget_key,
)
