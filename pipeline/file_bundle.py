"""Device bundles from a user's TFLite or ONNX file alone, no training: `profile --model
FILE` and `artifacts --model FILE` (docs/architecture.md, "The flow").

Everything that can refuse the file runs before dist/ or a device is touched: the runtime
loads and runs it here (pipeline/artifact_file.py), the target's adapter must run its kind
(`supports`) and its ops (`check_artifact`: a microcontroller's op set), and labelled data
must fit its input and classes. The bundle is then written by the deploy's writer
(pipeline/bundle.py) and profiled by the deploy's profiler (pipeline/profile.py), so the
manifest and the latency report are a deploy's, schemas and statistics alike.

With labelled data (`--set data.name=…`) the bundle carries the test split's first
`data.bundle_samples` images, normalised as the pipeline normalises them, and the file's
top-1 measured in this process (on the test split, and on exactly the bundled samples as
`bundle_top1`, which the device must reproduce). Without, it carries seeded random inputs
of the file's own shape and no labels: the device reports no top-1, saying why, and the
target's accuracy limit is not judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from devices.base import DeviceAdapter, TargetProfile
from devices.bench_runner import cpu_facts
from devices.errors import ArtifactError, ConfigError, DataError
from devices.profiles import load_profile
from devices.registry import adapter_class
from pipeline.artifact_file import ArtifactFile, staged_artifact
from pipeline.bundle import (
    bundle_accuracy,
    bundle_locks,
    top1_in_process,
    write_device_bundle,
)
from pipeline.config import PipelineConfig
from pipeline.data import load_dataset
from pipeline.profile import DeployOutcome, Echo, profile_bundle
from pipeline.version import __version__

# The config sections a file bundle reads; `--set` on any other (training, pruning,
# export, …) would change nothing, so it is refused rather than ignored.
FILE_SECTIONS = ("data", "profile", "target")
DATASET_KEY = "data.name"  # naming a dataset with --set asks for labelled samples
# A profile's Python runtime follows the file's format (bench_runner.py picks by suffix);
# other runtimes (benchmark_model, generated C) are the device's and stay.
INTERPRETER_RUNTIMES: dict[str, str] = {"tflite": "litert", "onnx": "onnxruntime"}


@dataclass(frozen=True)
class Samples:
    """What inputs.npz carries, and how the manifest describes where it came from."""

    x: np.ndarray
    y: np.ndarray | None  # None: random inputs, no labels
    labels: list[str]
    dataset: dict[str, Any]  # manifest `dataset`
    input: dict[str, Any]  # manifest `input` additions (normalisation)
    test_top1: dict[str, Any] | None  # the file's top-1 on the whole test split


@dataclass(frozen=True)
class FileBundle:
    """One target's bundle of the file, checked and ready to write."""

    model: ArtifactFile
    profile: TargetProfile
    samples: Samples
    manifest_fields: dict[str, Any]


def dataset_requested(overrides: Iterable[str]) -> bool:
    """Whether the user named a dataset (`--set data.name=…`): the config file's default
    dataset says nothing about the file, whose input may be any shape."""
    return any(item.partition("=")[0].strip() == DATASET_KEY for item in overrides)


def refuse_training_settings(overrides: Iterable[str]) -> None:
    """ConfigError (exit 2) for `--set` keys a file bundle never reads."""
    ignored = [item.partition("=")[0].strip() for item in overrides
               if item.partition(".")[0].strip() not in FILE_SECTIONS]
    if ignored:
        raise ConfigError(
            f"--model profiles the file as it is, so {', '.join(ignored)} would change nothing "
            f"(only {', '.join(f'{section}.*' for section in FILE_SECTIONS)} apply) (hint: drop "
            "them, or run `deploy` to train, compress and convert a model of the zoo)")


def file_profile(profile: TargetProfile, model: ArtifactFile) -> TargetProfile:
    """The target's profile running the file's kind, or ArtifactError (exit 2) when the
    target's adapter cannot run that kind or one of its ops; no device is touched."""
    kind = model.kind
    runtime = (INTERPRETER_RUNTIMES[kind.format]
               if profile.runtime in INTERPRETER_RUNTIMES.values() else profile.runtime)
    candidate = replace(profile, artifact_format=kind.format, artifact_precision=kind.precision,
                        runtime=runtime)
    adapter = adapter_class(profile.adapter)
    if not _supports(adapter, candidate):
        raise ArtifactError(
            f"target {profile.name} ({profile.adapter}, {profile.runtime}) cannot run "
            f"{model.name}, a {kind.precision} {kind.format} file; it runs "
            f"{profile.artifact_precision} {profile.artifact_format} (hint: convert the model "
            "to the kind the target runs, or pick another target: `make targets` lists what "
            "each runs)")
    adapter.check_artifact(candidate, model.path, model.name)
    return candidate


def _supports(adapter: type[DeviceAdapter], profile: TargetProfile) -> bool:
    """The adapter's own `supports`, asked of an instance built by the base constructor
    only: a subclass's constructor may need its connection (ssh: a host), which building
    bundles for CI must not (`supports` reads the profile alone)."""
    probe = adapter.__new__(adapter)
    DeviceAdapter.__init__(probe, profile)
    return probe.supports(profile.artifact_format, profile.artifact_precision)


def labelled_samples(config: PipelineConfig, model: ArtifactFile) -> Samples:
    """The test split, normalised as the pipeline normalises it (pipeline/data.py), checked
    against the file's input shape and classes."""
    dataset = load_dataset(config.data)
    image = tuple(dataset.input_shape)
    if image != model.input_shape:
        channels_first = image[-1:] + image[:-1] == model.input_shape
        raise DataError(
            f"{model.name} takes inputs of shape {list(model.input_shape)}, but {config.data.name}"
            f"'s images are {list(image)} (hint: "
            + ("the file looks channels-first (NCHW); bundles carry NHWC images: export it "
               "with an NHWC input" if channels_first else
               f"name a dataset of {list(model.input_shape)} images, or drop "
               f"--set {DATASET_KEY} to profile on random inputs") + ")")
    if dataset.num_classes != model.classes:
        raise DataError(f"{model.name} gives {model.classes} classes, {config.data.name} has "
                        f"{dataset.num_classes} (hint: name the dataset the model was "
                        f"trained on, or drop --set {DATASET_KEY} to profile on random inputs)")
    count = config.data.bundle_samples
    top1 = top1_in_process(model.path, dataset.x_test, dataset.y_test, "optimised")
    return Samples(dataset.x_test[:count], dataset.y_test[:count], list(dataset.labels),
                   dataset.summary(), {"normalisation": dataset.normalisation},
                   {"top1": top1, "test_samples": len(dataset.y_test)})


def random_samples(config: PipelineConfig, model: ArtifactFile) -> Samples:
    """`data.bundle_samples` seeded (`data.seed`) random inputs of the file's shape: every
    value of an int8/uint8 input with equal odds (as floats the runners quantise back to
    exactly those), or uniform in [0, 1) for a float input."""
    generator = np.random.default_rng(config.data.seed)
    shape = (config.data.bundle_samples, *model.input_shape)
    if model.input_quantization is not None:
        scale, zero_point = model.input_quantization
        limits = np.iinfo(np.dtype(model.input_dtype))
        quantized = generator.integers(limits.min, limits.max + 1, shape)
        x = ((quantized - zero_point) * scale).astype(np.float32)
        values = f"every {model.input_dtype} input value, uniform"
    else:
        x = generator.random(shape, dtype=np.float32)
        values = "uniform in [0, 1)"
    return Samples(x, None, [f"class {index}" for index in range(model.classes)],
                   {"name": "random", "seed": config.data.seed, "samples": len(x),
                    "values": values, "input_shape": list(model.input_shape)},
                   {}, None)


def _manifest_fields(config: PipelineConfig, model: ArtifactFile, profile: TargetProfile,
                     samples: Samples) -> dict[str, Any]:
    metrics: dict[str, Any] = {"model_file": model.to_dict()}
    machines: dict[str, Any] = {}
    if samples.y is not None and samples.test_top1 is not None:
        kernels = adapter_class(profile.adapter).accuracy_kernels
        kind = model.kind
        metrics["artifacts"] = {kind.file: {
            **samples.test_top1, "agreement": None, "bytes": model.path.stat().st_size,
            "weight_bytes": model.weight_bytes, "precision": kind.precision,
            "format": kind.format, "measured": "in this process, by the file's runtime; no "
                                               "validation stage ran",
            **bundle_accuracy(model.path, samples.x, samples.y, kernels),
        }}
        # Whose kernels measured that top-1: the validate role, so a host run on this same
        # CPU may judge the accuracy limit on the whole test split (devices/host.py).
        machines["validate"] = cpu_facts()
    # The config alone does not say what was bundled: the file's sha256 does.
    fingerprint = hashlib.sha256(
        f"{config.fingerprint()}|{metrics['model_file']['sha256']}".encode()).hexdigest()[:16]
    return {"pipeline_version": __version__, "config_fingerprint": fingerprint,
            "dataset": samples.dataset, "input": samples.input, "metrics": metrics,
            "machines": machines}


def plan_file_bundles(config: PipelineConfig, model: ArtifactFile, targets: list[str], *,
                      labelled: bool) -> list[FileBundle]:
    """Every check, for every target, before anything is written."""
    profiles = [file_profile(load_profile(name, overrides=config.overrides_for(name)), model)
                for name in targets]
    samples = labelled_samples(config, model) if labelled else random_samples(config, model)
    return [FileBundle(model, profile, samples, _manifest_fields(config, model, profile, samples))
            for profile in profiles]


def write_file_bundle(bundle: FileBundle, dist_dir: Path, echo: Echo = print) -> Path:
    written = write_device_bundle(
        dist_dir, bundle.profile, bundle.model.path, labels=bundle.samples.labels,
        x_samples=bundle.samples.x, y_samples=bundle.samples.y,
        manifest_fields=bundle.manifest_fields)
    echo(f"bundle     {written}  ({bundle.model.name} as {bundle.profile.artifact_file}, "
         f"{bundle.model.kind.precision} {bundle.model.kind.format})")
    return written


def build_file_artifacts(config: PipelineConfig, model_path: Path, targets: list[str], *,
                         dist_dir: Path, labelled: bool, echo: Echo = print) -> dict[str, Path]:
    """`artifacts --model FILE`: the file's bundle for every target, no device touched."""
    with staged_artifact(model_path) as model:
        bundles = plan_file_bundles(config, model, targets, labelled=labelled)
        with bundle_locks(dist_dir, targets, echo):
            return {bundle.profile.name: write_file_bundle(bundle, dist_dir, echo)
                    for bundle in bundles}


def profile_model_file(config: PipelineConfig, model_path: Path, target: str, *,
                       dist_dir: Path, labelled: bool, echo: Echo = print) -> DeployOutcome:
    """`profile --model FILE --target T`: the file's bundle, profiled as a deploy's is."""
    with staged_artifact(model_path) as model:
        (bundle,) = plan_file_bundles(config, model, [target], labelled=labelled)
        with bundle_locks(dist_dir, [target], echo):
            write_file_bundle(bundle, dist_dir, echo)
            return profile_bundle(config, bundle.profile, dist_dir, echo)
