"""Whether TensorFlow's own logs are let through (`python -m pipeline --tf-logs …`): kept out
of devices/tf_env.py so the CLI can set it without importing TensorFlow."""

TF_LOGS_VARIABLE = "EDGE_TF_LOGS"
