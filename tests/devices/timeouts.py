"""Shared by the ssh and adb timeout tests: a runner past its timeout is stopped on the
device, and nothing keeps running from the device's working folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.base import BenchmarkSettings, Bundle, DeviceError


def processes_running_from(folder: str) -> list[str]:
    """Processes whose command line names a file in `folder` (the device is this machine)."""
    found = subprocess.run(["pgrep", "-f", "-a", "--", f"{folder}/"], capture_output=True,
                           text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def assert_stopped_at_its_timeout(adapter: Any, bundle: Path, settings: BenchmarkSettings,
                                  limit_s: int) -> None:
    adapter.check()
    adapter.deploy(Bundle(root=bundle, artifact="model_int8.tflite"))
    workdir = adapter.workdir
    try:
        with pytest.raises(DeviceError, match=f"did not finish within {limit_s} s and was "
                                              "stopped on the device"):
            adapter.benchmark(settings)
        assert processes_running_from(workdir) == []  # not running on, skewing the next run
    finally:
        adapter.cleanup()
    assert processes_running_from(workdir) == []


SLEEPING_RUNNER = ("import sys, time\n"
                   "if sys.argv and sys.argv[0].endswith('bench_runner.py'):\n"
                   "    time.sleep(120)\n")


def device_python(tmp_path: Path, sitecustomize: str) -> str:
    """A python command for the device whose sitecustomize.py changes what it can do."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(sitecustomize)
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return json.dumps([str(wrapper)])
