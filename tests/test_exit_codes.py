"""Every exit code in the README's table, through the CLI (`python -m pipeline`), and the
named errors that exceptions from outside the pipeline become."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devices.errors import INTERNAL_ERROR_EXIT, StorageError, as_pipeline_error
from tests.devices.test_budget import make_report

ROOT = Path(__file__).resolve().parent.parent


def _cli(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *arguments], cwd=cwd,
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "HOME": str(cwd)})


@pytest.mark.parametrize(("latency_limit", "code"), [(25.0, 0), (1.0, 1)])
def test_0_within_the_budget_1_a_broken_budget(tmp_path: Path, latency_limit: float,
                                              code: int) -> None:
    report = tmp_path / "latency_report.json"
    report.write_text(json.dumps(make_report(median=10.0)))
    result = _cli("check", "--target", "rpi", "--report", str(report),
                  "--set", f"target.budget.latency_ms={latency_limit}", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert ("PASSED" if code == 0 else "BROKEN") in result.stdout


def test_2_a_usage_config_or_input_error(tmp_path: Path) -> None:
    result = _cli("check", "--target", "rpi", "--report", str(tmp_path / "none.json"),
                  cwd=tmp_path)
    assert result.returncode == 2 and "no latency report at" in result.stderr
    result = _cli("config", "show", "--set", "validate.max_accuracy_drop=nan", cwd=tmp_path)
    assert result.returncode == 2
    assert "validate.max_accuracy_drop = nan is not a finite number" in result.stderr


@pytest.mark.slow
@pytest.mark.needs("ssh")  # without the client the device is never tried
def test_3_a_device_that_cannot_be_reached(tiny_build: dict, tmp_path: Path) -> None:
    from pipeline.deploy import build_artifacts

    dist = tmp_path / "dist"
    build_artifacts(tiny_build["config"], ["rpi"], build_dir=tiny_build["build_dir"],
                    dist_dir=dist, echo=lambda _: None)
    sets = [item for value in ("target.connection.host=127.0.0.1", "target.connection.port=1",
                               "target.connection.connect_timeout_s=2")
            for item in ("--set", value)]
    result = _cli("profile", "--target", "rpi", "--dist-dir", str(dist),
                  *[item for override in tiny_build["overrides"] for item in ("--set", override)],
                  *sets, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "127.0.0.1" in result.stderr and "Traceback" not in result.stderr


def test_4_an_internal_error_with_its_traceback_in_a_log(tmp_path: Path) -> None:
    # A bug planted in one command (the only way to have one on purpose): main() must still
    # keep the contract, one line on stderr and the traceback in a file.
    code = ("import pipeline.cli as cli\n"
            "def broken(args):\n    return {}['missing']\n"
            "cli.command_models = broken\n"
            "raise SystemExit(cli.main(['models']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, check=False, env={"PATH": "/usr/bin:/bin",
                                                         "PYTHONPATH": str(ROOT)})
    assert result.returncode == INTERNAL_ERROR_EXIT == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: KeyError: 'missing'")
    logs = list((tmp_path / "build" / "logs").glob("internal-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    assert "Traceback" in logs[0].read_text() and "broken" in logs[0].read_text()


def test_a_full_disk_is_a_named_storage_error() -> None:
    with pytest.raises(OSError) as caught:  # the kernel's own ENOSPC
        with open("/dev/full", "w") as handle:
            handle.write("x" * 10_000)
            handle.flush()
    named = as_pipeline_error(caught.value)
    assert isinstance(named, StorageError) and named.exit_code == 2
    assert "no space left on the device" in str(named)
    assert as_pipeline_error(KeyError("x")) is None
