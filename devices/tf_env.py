"""The one place TensorFlow is imported.

tensorflow-model-optimization needs Keras 2 (`tf_keras`), and TensorFlow picks the Keras
flavour at import time, so the variable must be set before the first `import tensorflow`.
Every module that needs TF does `from devices.tf_env import tf, keras`.
"""

import os

from devices.bench_runner import CapturedStderr
from devices.tf_logs import STARTUP_NOISE, TF_LOGS_VARIABLE

TF_LOGS = os.environ.get(TF_LOGS_VARIABLE) == "1"  # --tf-logs
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if TF_LOGS:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN stays on (TensorFlow's default on x86): it trains about 2x faster on CPU and, with
# op determinism below, repeats bit for bit on one machine (measured: the same weights'
# sha256 run after run; tests/pipeline/test_cache_runner.py). Across CPUs nothing does.

with CapturedStderr(drop=() if TF_LOGS else STARTUP_NOISE):
    import tensorflow as tf
    import tf_keras as keras

    tf.config.list_physical_devices()  # the CUDA probe (cuInit) runs here, inside the filter

tf.get_logger().setLevel("INFO" if TF_LOGS else "ERROR")
# Same seed, same data -> the same model, run after run (costs nothing measurable on CPU).
tf.config.experimental.enable_op_determinism()

__all__ = ["tf", "keras"]
