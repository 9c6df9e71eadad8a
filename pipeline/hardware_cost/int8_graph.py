"""A Keras model as the target runs it: the export stage's full-int8 TFLite conversion,
calibrated on the first training images as the export is by default, read as a graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.mcu.graph import Graph, parse_graph
from devices.op_signature import IoSignature, OpSignature, io_signature, op_signatures

# ExportConfig.representative_samples' default: the same calibration, so the quantisation
# facts in a signature (the activation range, slow channels) are the shipped file's
CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class Int8Graph:
    content: bytes
    graph: Graph
    signatures: tuple[OpSignature, ...]
    io: IoSignature


def int8_graph(model: Any, training_images: np.ndarray) -> Int8Graph:
    from pipeline.conversion.tflite_converter import convert_tflite  # deferred: TensorFlow

    content = convert_tflite(model, "int8",
                             np.asarray(training_images[:CALIBRATION_SAMPLES], np.float32))
    graph = parse_graph(content)
    return Int8Graph(content, graph, op_signatures(graph), io_signature(graph))
