"""Whether TensorFlow's own logs are let through (`python -m pipeline --tf-logs …`): kept out
of devices/tf_env.py so the CLI can set it without importing TensorFlow."""

TF_LOGS_VARIABLE = "EDGE_TF_LOGS"

# What TensorFlow's native code prints on every start on a machine without a GPU, before
# any log level applies (measured with tensorflow 2.21: two cudart_stub lines survive even
# TF_CPP_MIN_LOG_LEVEL=3). None is a failure; newcomers read them as one. devices/tf_env.py
# drops exactly these lines unless --tf-logs; every other line goes through.
STARTUP_NOISE = (
    "cudart_stub.cc",  # "Could not find cuda drivers on your machine, GPU will not be used."
    "failed call to cuInit",  # no CUDA driver: the CPU is used
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",  # the default on x86, documented in tf_env
    "cpu_feature_guard.cc",  # "This TensorFlow binary is optimized to use available CPU..."
    "To enable the following instructions",  # the second line of that notice
)
