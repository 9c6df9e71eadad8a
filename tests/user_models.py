"""Model files this repository did not build, made as a user's team would make them: a
small tf_keras CNN trained here and converted with TensorFlow's own `TFLiteConverter`
(not pipeline/conversion/), and an ONNX graph written with the `onnx` helper API. The
`profile --model` / `artifacts --model` tests (pipeline/file_bundle.py) profile them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SHAPE = (8, 8, 1)
CLASSES = 3


def synthetic_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k = a bright 4x4 patch at one of three places on noise, pixels in [0, 1]."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, CLASSES, size=count)
    images = generator.uniform(0.0, 0.5, size=(count, *IMAGE_SHAPE)).astype(np.float32)
    for index, (row, column) in enumerate([(0, 0), (2, 2), (4, 4)][label] for label in labels):
        images[index, row:row + 4, column:column + 4, 0] += 0.5
    return images, labels.astype(np.int64)


def write_dataset(path: Path) -> Path:
    """An `npz:PATH` dataset of the files' input shape (pipeline/data.py's format)."""
    x_train, y_train = synthetic_split(240, seed=1)
    x_test, y_test = synthetic_split(60, seed=2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def trained_cnn(head_activation: str | None = None):
    """Conv, max-pool, dense: ops every target runs, the microcontroller included;
    `head_activation="tanh"` adds an op its int8 kernels lack (TANH)."""
    from devices.tf_env import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(CLASSES, activation=head_activation),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = synthetic_split(240, seed=1)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model


def write_tflite(model, path: Path, precision: str) -> Path:
    """fp32, or full int8 (int8 input and output) calibrated on the training images."""
    from devices.tf_env import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        samples = synthetic_split(64, seed=1)[0]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[np.newaxis]] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def write_onnx(path: Path, seed: int = 0) -> Path:
    """NHWC input transposed to NCHW, Conv + Relu, global average pool, Gemm: the shape
    of a tf2onnx export, written by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(seed)
    conv = generator.normal(size=(4, IMAGE_SHAPE[-1], 3, 3)).astype(np.float32)
    dense = generator.normal(size=(4, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("Conv", ["nchw", "conv"], ["features"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["features"], ["active"]),
         helper.make_node("GlobalAveragePool", ["active"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "dense"], ["logits"])],
        "user_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[numpy_helper.from_array(conv, "conv"),
                     numpy_helper.from_array(dense, "dense")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_user_models(folder: Path) -> dict[str, Path]:
    """Every file the tests profile or refuse, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    cnn = trained_cnn()
    files = {
        "fp32": write_tflite(cnn, folder / "user_cnn_fp32.tflite", "fp32"),
        "int8": write_tflite(cnn, folder / "user_cnn_int8.tflite", "int8"),
        "tanh_int8": write_tflite(trained_cnn("tanh"), folder / "user_tanh_int8.tflite",
                                  "int8"),
        "onnx": write_onnx(folder / "user_cnn.onnx"),
        "dataset": write_dataset(folder / "user_set.npz"),
    }
    content = files["int8"].read_bytes()
    files["truncated"] = folder / "truncated.tflite"
    files["truncated"].write_bytes(content[: len(content) // 2])
    files["not_a_model"] = folder / "notes.tflite"
    files["not_a_model"].write_text("these are my notes, not a model\n")
    return files
