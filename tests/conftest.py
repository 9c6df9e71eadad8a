"""Suite-wide rules: a test that needs a system program skips naming its Debian package,
and under CI=true a skip is a failure (tests/system_tools.py, from tests/system-packages.txt).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.system_tools import (  # noqa: F401 - pytest finds the hooks by name here
    pytest_configure,
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_unconfigure,
)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# A tiny configuration of the whole flow, trained once per test session and shared by the
# end-to-end tests (pipeline deploy, device targets): seconds instead of minutes. Its
# under-trained half-width model (about 0.70 top-1) has many test images near a decision
# boundary: int8 costs it up to 9 of 1000 images (measured), close to the default 10, and
# trained weights differ by CPU. A 3-point gate keeps the flow's tests about the flow; the
# gate itself is tested at its boundary in tests/pipeline/test_validate.py.
TINY_OVERRIDES = (
    "teacher.epochs=2", "student.epochs=2", "teacher.width=0.5", "student.width=0.5",
    "prune.finetune_epochs=1", "data.bundle_samples=40", "profile.runs=5", "profile.warmup=1",
    "validate.max_accuracy_drop=3.0",
)


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every pytest-xdist worker of this run shares (one of their own otherwise):
    the stage cache's locks let one worker train while the others wait, then hit."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return tmp_path_factory.mktemp(name)
    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{"config", "overrides", "build_dir", "run"}: every stage of the tiny flow, once."""
    from pipeline.config import load_config
    from pipeline.runner import Runner

    config = load_config(overrides=list(TINY_OVERRIDES))
    build_dir = shared_folder(tmp_path_factory, "tiny-build")
    run = Runner(config, build_dir, echo=lambda _: None).run()
    return {"config": config, "overrides": list(TINY_OVERRIDES), "build_dir": build_dir,
            "run": run}
