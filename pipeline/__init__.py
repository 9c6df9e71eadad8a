"""Edge-deployment pipeline: dataset -> teacher -> distilled student -> pruned -> exported
-> validated -> profiled on a device.

From Python (a notebook): `from pipeline import Pipeline, load_config` (pipeline/api.py).
"""

from __future__ import annotations

from typing import Any

from pipeline.version import __version__

__all__ = ["Pipeline", "load_config", "__version__"]


def __getattr__(name: str) -> Any:
    """`Pipeline` and `load_config` on first use: `import pipeline` itself stays light (the
    CLI's --version and config commands do not load TensorFlow)."""
    if name == "Pipeline":
        from pipeline.api import Pipeline

        return Pipeline
    if name == "load_config":
        from pipeline.config import load_config

        return load_config
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
