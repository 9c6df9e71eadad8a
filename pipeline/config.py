"""Typed pipeline configuration: a TOML file plus `--set section.key=value` overrides.

Every section is a frozen dataclass; a field's metadata says what values it allows, so
validation and error messages come from one table (devices/sections.py, shared with the
target profiles) instead of hand-written checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from devices.artifact_kinds import FORMATS, PRECISIONS
from devices.errors import ConfigError
from devices.literals import parse_value
from devices.sections import bounded, build_section, choice, subset
from pipeline.conversion.onnx_int8_schemes import DEFAULT_ONNX_INT8, ONNX_INT8_SCHEMES
from pipeline.model_files import FILE_PREFIX, is_model_file

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"


# How pixels reach the model, model_input = (pixel - mean) / std per channel (pipeline/data.py:
# INPUT_CONVENTIONS): the pipeline's own ("dataset", also what None means), or what a user's
# model was trained with: 0..255 ("raw", the model holds its own Rescaling), 0..1 ("unit"),
# or data.mean and data.std on the 0..255 scale ("mean_std")
NORMALISATIONS = ("dataset", "raw", "unit", "mean_std")
MEAN_STD = "mean_std"


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist5k"
    seed: int = 0
    validation_split: float = bounded(0.1, 0.0, 0.5)
    test_split: float = bounded(0.2, 0.05, 0.5)
    bundle_samples: int = bounded(200, 1, 10_000)  # test samples shipped in inputs.npz
    normalisation: str | None = choice(None, *NORMALISATIONS)
    mean: tuple[float, ...] | None = None  # normalisation = "mean_std": one per channel, or one
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        given = [key for key in ("mean", "std") if getattr(self, key) is not None]
        if self.normalisation != MEAN_STD and given:
            raise ConfigError(
                f"data.{given[0]} is read only by data.normalisation = \"{MEAN_STD}\", and it "
                f"is {self.normalisation or 'dataset'!r} (hint: set data.normalisation = "
                f"\"{MEAN_STD}\", or drop data.{given[0]})")
        if self.normalisation == MEAN_STD and len(given) < 2:
            raise ConfigError(
                f'data.normalisation = "{MEAN_STD}" needs data.mean and data.std, per channel '
                "on the 0..255 pixel scale (hint: ImageNet's are data.mean=123.675,116.28,103.53 "
                "data.std=58.395,57.12,57.375)")
        if self.std is not None and (not self.std or min(self.std) <= 0):
            raise ConfigError(f"data.std = {list(self.std)} must hold values above 0 (hint: "
                              "one standard deviation per channel, on the 0..255 scale)")
        if self.mean is not None and not self.mean:
            raise ConfigError("data.mean is empty (hint: one mean per channel, or one for all)")


AUGMENT_SHIFT_PIXELS = 2  # default largest random shift of `augment`
LABELS_ONLY = "labels"  # student.loss without a teacher


@dataclass(frozen=True)
class TrainingSection:
    """Fields shared by every stage that trains a network."""

    model: str = "seed_teacher"
    width: float = bounded(1.0, 0.05, 8.0)
    batch_norm: bool = False
    epochs: int = bounded(10, 1, 10_000)
    batch_size: int = bounded(64, 1, 65_536)
    learning_rate: float = bounded(0.002, 1e-7, 10.0)
    optimizer: str = choice("adam", "adam", "sgd")
    schedule: str = choice("cosine", "cosine", "constant", "step")
    augment: bool = False
    augment_shift: int = bounded(AUGMENT_SHIFT_PIXELS, 1, 16)  # pixels, each direction
    early_stopping_patience: int = bounded(4, 0, 1000)
    label_smoothing: float = bounded(0.0, 0.0, 0.5)  # share of each hard label spread evenly
    # initial weights, batch order and augmentation draws; None: data.seed. A study varies
    # it to measure seed-to-seed spread on one data split.
    seed: int | None = bounded(None, 0, 2**31 - 1)
    # A model file (model = "file:PATH") whose layers run Python code (Lambda) is refused;
    # true loads it and runs that code: DANGEROUS, only for a file you trust (CVE-2024-3660).
    trust_model_code: bool | None = None

    def training_seed(self, data: DataConfig) -> int:
        return data.seed if self.seed is None else self.seed


ZOO_MODEL_KEYS = ("width", "batch_norm")  # a model file fixes its own architecture
AS_SAVED_KEYS = ("model", "trust_model_code")  # all a file teacher used as saved reads


@dataclass(frozen=True)
class TeacherConfig(TrainingSection):
    # A file teacher is used as saved; a number above 0 fine-tunes it for that many epochs on
    # the labels. (teacher.epochs trains a zoo teacher from scratch: the config files set it,
    # so it cannot also be the file's default of none.)
    finetune_epochs: int | None = bounded(None, 0, 10_000)


STUDENT_INITS = ("file", "scratch")  # a file student's starting weights: its own, or fresh


@dataclass(frozen=True)
class StudentConfig(TrainingSection):
    model: str = "seed_student"
    init: str | None = choice(None, *STUDENT_INITS)  # None: "file" for a file student
    # "labels": no teacher at all, the student trained on the labels alone (a study's control)
    loss: str = choice("kd", "kd", "soft_ce", "seed", LABELS_ONLY)
    temperature: float = bounded(4.0, 0.1, 100.0)
    alpha: float = bounded(0.1, 0.0, 1.0)
    contrastive_weight: float = bounded(0.5, 0.0, 100.0)  # lambda of loss = "seed"
    # the images the teacher's soft labels come from: the student's augmented batch, every
    # step, or the clean training images, once
    teacher_view: str = choice("augmented", "augmented", "clean")
    baseline: bool = False


# What each adapter's cost measurer (pipeline/hardware_cost/measurers.py) can hold a budget
# to: the emulated Cortex-M4 counts instructions (its latency_ms is their estimate at the
# profile's clock and CPI), the host times LiteRT
BUDGET_QUANTITIES: dict[str, tuple[str, ...]] = {
    "mcu-qemu": ("instructions", "latency_ms"),
    "host": ("latency_ms",),
}
BUDGET_EXAMPLE = 'prune.budget = { target = "mcu", instructions = 300000 }'


@dataclass(frozen=True)
class BudgetConfig:
    """`prune.budget`: prune to what the target measures, not to a ratio (README, "Pruning to
    a budget"). Exactly one quantity; the search removes channels where they cost the most
    per point of validation top-1 (pipeline/pruning/budget_search.py)."""

    target: str | None = None  # a target profile (devices/targets/), e.g. "mcu" or "host"
    instructions: int | None = bounded(None, 1)
    latency_ms: float | None = bounded(None, 1e-6)
    # greedy steps from the unpruned cost to the budget, each cutting an equal share of the
    # way (NetAdapt's resource reduction schedule); each step judges one candidate per layer
    steps: int = bounded(6, 1, 100)
    # training images each step's chosen model is fine-tuned on (one pass) before the next
    # step; candidates are judged after BatchNorm re-calibration alone. 0: no fine-tune
    step_samples: int = bounded(1024, 0, 10_000_000)

    def __post_init__(self) -> None:
        if self.target is None:
            raise ConfigError(f"prune.budget names no target (hint: {BUDGET_EXAMPLE})")
        quantities = [key for key in ("instructions", "latency_ms") if getattr(self, key)]
        if len(quantities) != 1:
            raise ConfigError(
                f"prune.budget needs exactly one of instructions and latency_ms, got "
                f"{' and '.join(quantities) or 'neither'} (hint: {BUDGET_EXAMPLE}, or "
                f'{{ target = "host", latency_ms = 4.0 }})')
        adapter = budget_adapter(self.target)
        allowed = BUDGET_QUANTITIES.get(adapter)
        if allowed is None:
            able = ", ".join(sorted(BUDGET_QUANTITIES))
            raise ConfigError(
                f"prune.budget.target = {self.target!r} runs on adapter {adapter!r}, whose cost "
                f"per layer is not measured yet (adapters that measure it: {able}) (hint: "
                'target = "mcu" or "host")')
        if quantities[0] not in allowed:
            raise ConfigError(
                f"prune.budget.{quantities[0]}: target {self.target!r} measures "
                f"{' and '.join(allowed)}, not {quantities[0]} (hint: prune.budget = "
                f'{{ target = "{self.target}", {allowed[0]} = … }})')

    @property
    def quantity(self) -> str:
        return "instructions" if self.instructions else "latency_ms"

    @property
    def limit(self) -> float:
        return float(self.instructions or self.latency_ms or 0.0)


def budget_adapter(target: str) -> str:
    """The adapter a target profile names (ConfigError naming the known targets)."""
    from devices.profiles import load_profile  # deferred: only a budget reads a profile

    try:
        return load_profile(target).adapter
    except ConfigError as exc:
        raise ConfigError(f"prune.budget.target: {exc}") from exc


@dataclass(frozen=True)
class PruneConfig:
    method: str = choice("channel", "channel", "magnitude", "m_by_n", "none")
    source: str = choice("student", "student", "teacher")  # which trained model to prune
    criterion: str = choice("l1", "l1", "apoz", "bn_scale", "seed")
    ratio: float = bounded(0.5, 0.0, 0.95)
    threshold: float = bounded(0.0, 0.0, 1.0)  # > 0 selects by the criterion's rule instead
    activation_threshold: float = bounded(0.0, 0.0, 1.0)  # alpha of criterion "seed"
    scope: str = choice("layer", "layer", "global")
    layers: str = choice("all", "all", "conv")  # conv: hidden Dense layers stay whole
    min_channels: int = bounded(2, 1, 4096)
    round_to: int = choice(1, 1, 2, 4, 8, 16, 32)
    finetune: str = choice("kd", "finetune", "retrain", "kd")
    finetune_epochs: int = bounded(4, 0, 10_000)
    learning_rate: float = bounded(0.002, 1e-7, 10.0)
    iterations: int = bounded(1, 1, 100)
    slimming_penalty: float = bounded(0.0, 0.0, 1.0)
    sample_size: int = bounded(512, 16, 100_000)  # training samples for apoz
    # prune to a measured cost on a target instead of by ratio (BudgetConfig); replaces
    # prune.ratio and prune.scope
    budget: BudgetConfig | None = None

    def __post_init__(self) -> None:
        if self.budget is None:
            return
        conflicts = {"method": (self.method, "channel"), "iterations": (self.iterations, 1),
                     "round_to": (self.round_to, 1)}
        for key, (value, needed) in conflicts.items():
            if value != needed:
                raise ConfigError(
                    f"prune.budget chooses every layer's channel count by its measured cost, "
                    f"and prune.{key} = {value!r} (hint: set prune.{key} = {needed!r}, or drop "
                    "prune.budget)")


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = subset(FORMATS, *FORMATS)
    precisions: tuple[str, ...] = subset(PRECISIONS, *PRECISIONS)
    representative_samples: int = bounded(200, 1, 100_000)
    opset: int = bounded(17, 13, 21)
    onnx_int8: str = choice(DEFAULT_ONNX_INT8, *ONNX_INT8_SCHEMES)  # quantization settings


QUANTIZE_METHODS = ("ptq", "qat")  # pipeline/flow.py: QUANTIZE_FLOWS
POST_TRAINING = "ptq"


@dataclass(frozen=True)
class QuantizeConfig:
    """How the int8 TFLite file is made: `ptq` calibrates the final model after training;
    `qat` fine-tunes it with fake quantization first (TFMOT's `quantize_model`), then converts
    (README, "Quantization-aware training"). The int8 ONNX file is post-training in both."""

    method: str = choice(POST_TRAINING, *QUANTIZE_METHODS)
    # qat only: hard labels (`finetune`) or the teacher through the student's loss (`kd`)
    finetune: str = choice("kd", "finetune", "kd")  # pipeline/stages/qat.py: FINETUNES
    epochs: int = bounded(3, 1, 1000)
    learning_rate: float = bounded(0.0001, 1e-7, 10.0)


@dataclass(frozen=True)
class ValidateConfig:
    max_accuracy_drop: float = bounded(1.0, 0.0, 100.0)  # points of top-1
    min_float_agreement: float = bounded(0.995, 0.0, 1.0)


@dataclass(frozen=True)
class ProfileConfig:
    warmup: int = bounded(10, 0, 100_000)
    runs: int = bounded(50, 1, 1_000_000)
    threads: int = bounded(0, 0, 256)  # 0 = the target profile's thread count
    op_profiling: bool = False
    parallel: int = bounded(4, 1, 64)  # devices profiled at once by a fleet deploy
    # true: reports name the Pi's host/IP and the phone's serial (default: a stable hash)
    record_device_address: bool = False


@dataclass(frozen=True)
class DistributeConfig:
    """How training runs: one process (`default`), every local GPU or the CPU (`mirrored`),
    or several machines (`multi_worker`, the cluster from the TF_CONFIG variable)."""

    strategy: str = choice("default", "default", "mirrored", "multi_worker")


STUDY_ARMS = ("scratch", "distill", "prune", "prune+kd", "distill+prune", "prune-hw",
              "distill+prune-hw")  # pipeline/study/arms.py
STUDY_EXECUTORS = ("serial", "ray")  # pipeline/study/executors.py
# how a study runs its points, not what they compute: left out of the fingerprint, so a
# bundle (and the cache entry holding it) is the same from one machine or a cluster
STUDY_RUN_KEYS = ("executor", "point_cpus")


def parse_level(text: str) -> float:
    """A study level: a fraction of the teacher's MACs, written `1/4` or `0.25`."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"study.levels item {text!r} is not a fraction (hint: write 1/4 or "
                          "0.25)") from exc
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"study.levels item {text!r} = {value:g} must be above 0 and at most "
                          "1 (a fraction of the teacher's MACs)")
    return value


@dataclass(frozen=True)
class StudyConfig:
    """`make study`: which arms, at which fractions of the teacher's MACs, with how many
    seeds (README, "Distillation or pruning? The study")."""

    arms: tuple[str, ...] = subset(STUDY_ARMS, *STUDY_ARMS)
    levels: tuple[str, ...] = ("1/2", "1/4", "1/8", "1/16")
    seeds: int = bounded(2, 1, 100)  # student.seed = 0 .. seeds-1 per point
    # where the points run: this process, or a Ray cluster's tasks (`--cluster ADDRESS`)
    executor: str = choice("serial", *STUDY_EXECUTORS)
    point_cpus: int = bounded(1, 1, 1024)  # the CPUs each point's Ray task asks for

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("study.levels is empty (hint: study.levels=1/2,1/4)")
        for level in self.levels:
            parse_level(level)

    def level_fractions(self) -> tuple[float, ...]:
        return tuple(parse_level(level) for level in self.levels)


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    prune: PruneConfig = PruneConfig()
    export: ExportConfig = ExportConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    validate: ValidateConfig = ValidateConfig()
    profile: ProfileConfig = ProfileConfig()
    distribute: DistributeConfig = DistributeConfig()
    study: StudyConfig = StudyConfig()
    target_overrides: tuple[tuple[str, str], ...] = ()  # `--set target.x=y`, for the profile
    # [targets.NAME.section] tables of the config file: (target, "section.key", value text)
    target_settings: tuple[tuple[str, str, str], ...] = ()

    def section(self, name: str) -> Any:
        return getattr(self, name)

    def overrides_for(self, target: str) -> dict[str, str]:
        """Profile overrides for one target: the file's [targets.NAME] tables, then `--set`."""
        settings = {key: value for name, key, value in self.target_settings if name == target}
        return settings | dict(self.target_overrides)

    def to_dict(self) -> dict[str, Any]:
        return {name: section_to_dict(getattr(self, name)) for name in SECTION_NAMES}

    def fingerprint(self) -> str:
        hashed = {name: hashed_section(getattr(self, name)) for name in SECTION_NAMES}
        if self.quantize.method == POST_TRAINING:
            # post-training quantization reads none of [quantize]'s keys: without it the
            # fingerprint stays what it was before the section existed
            del hashed["quantize"]
        hashed["study"] = {key: value for key, value in hashed["study"].items()
                           if key not in STUDY_RUN_KEYS}
        return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()[:16]


SECTION_NAMES = (
    "data", "teacher", "student", "prune", "export", "quantize", "validate", "profile",
    "distribute", "study",
)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def with_values(config: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """`config` with `section.key` values replaced, checked like `--set` items."""
    raw = config.to_dict()
    for key, value in values.items():
        section, _, name = key.partition(".")
        raw[section][name] = value
    return build_config(raw, config.target_overrides, config.target_settings)


def hashed_section(section: Any) -> dict[str, Any]:
    """What cache keys and fingerprints hash: the section without its unset (None) keys, so
    adding an optional key leaves every cached entry and fingerprint valid (a section inside
    the section likewise)."""
    return {key: hashed_section(value) if dataclasses.is_dataclass(value) else value
            for key, value in _fields(section) if value is not None}


def section_to_dict(section: Any) -> dict[str, Any]:
    return {key: section_to_dict(value) if dataclasses.is_dataclass(value) else value
            for key, value in _fields(section)}


def _fields(section: Any) -> list[tuple[str, Any]]:
    return [(f.name, list(v) if isinstance(v := getattr(section, f.name), tuple) else v)
            for f in dataclasses.fields(section)]


def load_config(
    path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> PipelineConfig:
    """Read a TOML file (default: configs/default.toml) and apply `section.key=value` items."""
    raw = _read_toml(Path(path) if path else DEFAULT_CONFIG)
    target_settings = _target_settings(raw.pop("targets", {}))
    target_overrides: list[tuple[str, str]] = []
    for item in overrides:
        key, value = _split_override(item)
        section_name, _, field_name = key.partition(".")
        if section_name == "target":
            target_overrides.append((field_name, value))
            continue
        _set_nested(raw.setdefault(section_name, {}), field_name, parse_value(value))
    return build_config(raw, tuple(target_overrides), target_settings)


def _set_nested(section: dict[str, Any], field_name: str, value: Any) -> None:
    """`prune.budget.target=mcu` sets one key of the inline table `prune.budget`."""
    *tables, key = field_name.split(".")
    for table in tables:
        inner = section.get(table)
        section = section.setdefault(table, {}) if inner is None else inner
        if not isinstance(section, dict):
            raise ConfigError(f"cannot set {field_name}: {table} is not a table (hint: "
                              f"--set {field_name.split('.')[0]}.{table}={{ … }})")
    section[key] = value


def build_config(
    raw: dict[str, Any], target_overrides: tuple[tuple[str, str], ...] = (),
    target_settings: tuple[tuple[str, str, str], ...] = (),
) -> PipelineConfig:
    unknown = sorted(set(raw) - set(SECTION_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown config section [{unknown[0]}]; expected one of {', '.join(SECTION_NAMES)}"
        )
    hints = typing.get_type_hints(PipelineConfig)
    sections = {
        name: build_section(name, hints[name], raw.get(name, {})) for name in SECTION_NAMES
    }
    _refuse_conflicts(sections)
    return PipelineConfig(**sections, target_overrides=target_overrides,
                          target_settings=target_settings)


def _refuse_file_model_conflicts(sections: dict[str, Any]) -> None:
    """Keys that only mean something for a model file, or only for a zoo model."""
    for name in ("teacher", "student"):
        model = sections[name].model
        if is_model_file(model) and not model[len(FILE_PREFIX):].strip():
            raise ConfigError(f"{name}.model = {model!r} names no file (hint: "
                              f"{name}.model = \"file:models/my_model.keras\")")
    teacher, student = sections["teacher"], sections["student"]
    if teacher.finetune_epochs is not None and not is_model_file(teacher.model):
        raise ConfigError(
            f"teacher.finetune_epochs fine-tunes a file teacher, and teacher.model = "
            f"{teacher.model!r} is a zoo model, trained for teacher.epochs (hint: drop "
            "teacher.finetune_epochs, or set teacher.model = \"file:PATH\")")
    if student.init == "file" and not is_model_file(student.model):
        raise ConfigError(
            f'student.init = "file" starts from a file\'s weights, and student.model = '
            f'{student.model!r} is a zoo model (hint: student.model = "file:PATH", or drop '
            "student.init)")


def _refuse_conflicts(sections: dict[str, Any]) -> None:
    _refuse_file_model_conflicts(sections)
    student, prune = sections["student"], sections["prune"]
    if student.loss == LABELS_ONLY and prune.method != "none" and prune.finetune == "kd":
        raise ConfigError(
            'prune.finetune = "kd" distils with student.loss, and student.loss = "labels" '
            'uses no teacher (hint: set prune.finetune = "finetune", or student.loss = "kd")')
    quantize, export = sections["quantize"], sections["export"]
    if quantize.method == POST_TRAINING:
        return
    if student.loss == LABELS_ONLY and quantize.finetune == "kd":
        raise ConfigError(
            'quantize.finetune = "kd" distils with student.loss, and student.loss = "labels" '
            'uses no teacher (hint: set quantize.finetune = "finetune")')
    if "tflite" not in export.formats or "int8" not in export.precisions:
        raise ConfigError(
            f'quantize.method = "{quantize.method}" trains the int8 TFLite file, which [export] '
            f"does not make (formats {list(export.formats)}, precisions "
            f'{list(export.precisions)}) (hint: add "tflite" and "int8" to them, or set '
            f'quantize.method = "{POST_TRAINING}")')


def _target_settings(tables: Any) -> tuple[tuple[str, str, str], ...]:
    """`[targets.host.budget] min_accuracy = 0.8` -> ("host", "budget.min_accuracy", "0.8");
    the target profile checks the section and key when the target is loaded."""
    hint = "(hint: [targets.host.budget] then min_accuracy = 0.8)"
    if not isinstance(tables, dict):
        raise ConfigError(f"[targets] must hold one table per target {hint}")
    settings = []
    for target, sections in tables.items():
        if not isinstance(sections, dict) or not all(
                isinstance(fields, dict) for fields in sections.values()):
            raise ConfigError(f"[targets.{target}] must hold section tables {hint}")
        settings.extend(
            (target, f"{section}.{key}", str(value).lower() if isinstance(value, bool)
             else str(value))
            for section, fields in sections.items() for key, value in fields.items()
        )
    return tuple(settings)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {path} not found (hint: pass an existing file, e.g. {DEFAULT_CONFIG})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _split_override(item: str) -> tuple[str, str]:
    key, separator, value = item.partition("=")
    if not separator or "." not in key or not key.split(".", 1)[1]:
        raise ConfigError(
            f"override {item!r} is not of the form section.key=value "
            "(hint: e.g. --set teacher.epochs=5)"
        )
    return key.strip(), value.strip()
