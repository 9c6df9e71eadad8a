"""One registry of artifact kinds (devices/artifact_kinds.py): the export stage converts and
inspects exactly those kinds, the config allows exactly their formats and precisions, and
every target profile runs one of them (or the C sources made from one)."""

from __future__ import annotations

import pytest

from devices.artifact_kinds import (
    ARTIFACT_KINDS,
    C_SOURCES,
    FORMATS,
    PRECISIONS,
    ArtifactKind,
    artifact_kind,
    model_file,
)
from devices.errors import ArtifactError
from devices.profiles import list_profiles
from pipeline.config import ExportConfig
from pipeline.stages.export import CONSTANT_BYTES, CONVERTERS, IO_QUANTIZATION


def test_the_export_stage_converts_exactly_the_registered_kinds() -> None:
    assert set(CONVERTERS) == {(kind.format, kind.precision) for kind in ARTIFACT_KINDS}
    assert set(IO_QUANTIZATION) == set(CONSTANT_BYTES) == set(FORMATS)


def test_the_config_allows_exactly_the_registered_formats_and_precisions() -> None:
    assert ExportConfig().formats == FORMATS == ("tflite", "onnx")
    assert ExportConfig().precisions == PRECISIONS == ("fp32", "fp16", "dynamic", "int8")


def test_every_target_runs_a_registered_kind() -> None:
    files = {kind.file for kind in ARTIFACT_KINDS} | {C_SOURCES}
    for profile in list_profiles(environ={}):
        assert profile.artifact_file in files, profile.name
        assert model_file(profile.artifact_format, profile.artifact_precision) in files


def test_kinds_round_trip_and_unknown_kinds_are_refused() -> None:
    for kind in ARTIFACT_KINDS:
        assert ArtifactKind.from_dict(kind.to_dict()) == kind
    assert artifact_kind("onnx", "fp16") is None
    with pytest.raises(ArtifactError, match="is not an artifact kind"):
        ArtifactKind.from_dict({"format": "onnx", "precision": "fp16", "file": "x.onnx",
                                "float_arithmetic": True})
    with pytest.raises(ArtifactError, match="no fp16 onnx artifact exists"):
        model_file("onnx", "fp16")
    assert model_file("c", "int8") == "model_int8.tflite"
