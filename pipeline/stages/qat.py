"""QAT stage (`quantize.method = "qat"`, README "Quantization-aware training"): the final
model fine-tuned a few epochs inside TFMOT's fake-quantization wrappers, then converted to
the int8 TFLite file, which the export stage ships instead of post-training quantization's
and the validate stage validates like every artifact.

Beside it the stage converts the same final model the post-training way (the file a
`quantize.method = "ptq"` run ships) and runs both through LiteRT on the test split, so the
record, the manifest (`metrics.qat`) and the report set one top-1 against the other.
The int8 ONNX file stays post-training: see pipeline/stages/export.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.artifact_kinds import artifact_kind
from devices.fsutil import atomic_write_bytes
from models.complexity import count_macs, count_params
from pipeline.config import QuantizeConfig, StudentConfig
from pipeline.conversion.qat import (
    DENSE_SCHEME,
    SPARSE_SCHEME,
    calibrate_ranges,
    quantize_aware,
)
from pipeline.conversion.tflite_converter import convert_tflite
from pipeline.data import Dataset
from pipeline.pruning.retraining import STRATEGIES, RetrainSettings, retrain
from pipeline.stage import Stage, StageContext, load_model
from pipeline.stages.export import representative_subset
from pipeline.stages.validate import ArtifactMetrics, validate_artifact
from pipeline.training import predict_logits

STAGE_NAME = "qat"
QAT_FILE = artifact_kind("tflite", "int8").file  # what the export stage takes from this entry
PTQ_FILE = "model_int8_ptq.tflite"  # the comparison; stays in the cache entry
FINETUNES = {name: STRATEGIES[name] for name in ("finetune", "kd")}  # quantize.finetune
ONNX_NOTE = ("the int8 ONNX file is post-training quantized (export.onnx_int8): QAT's wrappers "
             "learn 8-bit weights, which onnxruntime's int8 GEMM on AVX2 without VNNI saturates")


@dataclass(frozen=True)
class QatResult:
    model: str
    finetune: str
    epochs: int
    learning_rate: float
    scheme: str  # conversion/qat.py SCHEMES: pruning-preserving for a sparse final model
    calibrated_ranges: int  # activation ranges started at the float model's, not TFMOT's
    float_top1: float  # the final model before QAT (Keras)
    top1: float  # the fake-quantized Keras model after QAT
    qat: ArtifactMetrics  # QAT_FILE on the test split
    ptq: ArtifactMetrics  # PTQ_FILE: the same final model, post-training quantized
    params: int
    macs: int
    representative_samples: int
    conversion_s: float
    wall_time_s: float
    epochs_run: int
    history: dict[str, Any] = field(default_factory=dict)
    note: str = ONNX_NOTE

    @property
    def gain_points(self) -> float:
        return 100.0 * (self.qat.top1 - self.ptq.top1)

    def export_scheme(self) -> dict[str, Any]:
        """The shipped file's `quantization_scheme` (export record, manifest)."""
        return {"name": "qat", "finetune": self.finetune, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "wrappers": self.scheme,
                "ptq_top1": self.ptq.top1}

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(qat=self.qat.to_dict(), ptq=self.ptq.to_dict(), int8_top1=self.qat.top1,
                      ptq_top1=self.ptq.top1, gain_points=self.gain_points,
                      # what the export stage ships from this entry (export.supplied_artifacts)
                      supplies={QAT_FILE: {"scheme": self.export_scheme(),
                                           "seconds": self.conversion_s}})
        return record

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> QatResult:
        fields = {key: document[key] for key in cls.__dataclass_fields__}
        return cls(**{**fields, "qat": ArtifactMetrics.from_dict(document["qat"]),
                      "ptq": ArtifactMetrics.from_dict(document["ptq"])})

    @property
    def headline(self) -> str:
        return (f"int8 top1 qat={self.qat.top1:.4f} ptq={self.ptq.top1:.4f} "
                f"({self.gain_points:+.2f} points); fake-quant keras {self.top1:.4f}, "
                f"{self.epochs_run} epochs {self.finetune}")


@dataclass(frozen=True)
class QatInputs:
    config: QuantizeConfig
    model: Any  # the final (pruned, fine-tuned) Keras model
    teacher: Any
    data: Dataset
    training: StudentConfig  # batch size, optimizer, schedule, augmentation, kd's loss
    representative_samples: int
    seed: int = 0
    sparse: bool = False  # the final model's zeros must survive (magnitude, m_by_n)


def _int8_file(model: Any, samples: Any, path: Path, reference: Any,
               data: Dataset) -> tuple[ArtifactMetrics, float]:
    started = time.perf_counter()
    atomic_write_bytes(path, convert_tflite(model, "int8", samples))
    seconds = time.perf_counter() - started
    metrics = validate_artifact(path, data.x_test, data.y_test, reference)
    return metrics, seconds


def run_qat(inputs: QatInputs, out_dir: Path) -> QatResult:
    """Post-training int8 of `inputs.model`, then QAT and its int8, both validated."""
    started = time.perf_counter()
    out_dir, data, model = Path(out_dir), inputs.data, inputs.model
    samples = representative_subset(data.x_train, inputs.representative_samples,
                                    tuple(int(d) for d in model.input_shape[1:]))
    reference = predict_logits(model, data.x_test)
    float_top1 = float((reference.argmax(axis=1) == data.y_test).mean())
    ptq, _ = _int8_file(model, samples, out_dir / PTQ_FILE, reference, data)
    scheme = SPARSE_SCHEME if inputs.sparse else DENSE_SCHEME
    wrapped = quantize_aware(model, scheme)
    calibrated = calibrate_ranges(wrapped, model, samples)  # where PTQ calibrates them too
    config = inputs.config
    wrapped, history = retrain(
        config.finetune, wrapped, inputs.teacher, data,
        RetrainSettings(inputs.training, config.epochs, config.learning_rate, inputs.seed))
    fake_quant_top1 = float((predict_logits(wrapped, data.x_test).argmax(axis=1)
                             == data.y_test).mean())
    qat, seconds = _int8_file(wrapped, samples, out_dir / QAT_FILE, reference, data)
    return QatResult(
        model=model.name, finetune=config.finetune, epochs=config.epochs,
        learning_rate=config.learning_rate, scheme=scheme, calibrated_ranges=calibrated,
        float_top1=float_top1,
        top1=fake_quant_top1, qat=qat, ptq=ptq, params=count_params(model),
        macs=count_macs(model), representative_samples=len(samples),
        conversion_s=round(seconds, 3), wall_time_s=round(time.perf_counter() - started, 3),
        epochs_run=int(history.get("epochs_run", 0)), history=history.get("history", {}),
    )


def qat_stage(model_stage: str) -> Stage:
    """The runner's Stage: QAT of the model saved by `model_stage` (the final model)."""

    def run(context: StageContext) -> dict[str, Any]:
        config = context.config
        upstream = context.upstream[model_stage]
        inputs = QatInputs(
            config=config.quantize, model=load_model(upstream.path),
            teacher=load_model(context.upstream["teacher"].path), data=context.dataset,
            training=config.student, representative_samples=config.export.representative_samples,
            seed=config.student.training_seed(config.data),
            sparse=upstream.record.get("sparsity") is not None,
        )
        return run_qat(inputs, context.out_dir).to_dict()

    # student: the fine-tuning's batch size, optimizer, schedule, augmentation and kd loss;
    # export: representative_samples, which both int8 files are calibrated on
    return Stage(
        name=STAGE_NAME, version=2, sections=("quantize", "student", "export", "distribute"),
        upstream=(model_stage, "teacher"), run=run, trains=True,
        headline=lambda record: QatResult.from_dict(record).headline,
    )
