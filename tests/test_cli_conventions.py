"""The CLI and the Makefile keep their users' conventions: the program names itself as it
was run, contradictory options are refused, only make's own variables reach the config,
`config show --format toml` loads back, `make help` lists every target and `make clean`
keeps the trained stages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "edge-pipeline"


def _cli(*arguments: str, env: dict[str, str] | None = None,
         program: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("EDGE_")}
    return subprocess.run([*(program or [sys.executable, "-m", "pipeline"]), *arguments],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**environment, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the package is not installed")
def test_version_names_the_program_as_it_was_run() -> None:
    assert _cli("--version").stdout.startswith("python -m pipeline ")
    assert _cli("--version", program=[str(CONSOLE_SCRIPT)]).stdout.startswith("edge-pipeline ")


@pytest.mark.parametrize("command", ["deploy", "study"])
def test_target_and_targets_together_are_refused(command: str) -> None:
    result = _cli(command, "--target", "host", "--targets", "mcu")
    assert result.returncode == 2
    assert "--target host and --targets 'mcu' both given" in result.stderr


def test_edge_set_counts_only_when_make_set_it() -> None:
    leftover = {"EDGE_SET": "student.epochs=1"}
    assert '"epochs": 12' in _cli("config", "show", env=leftover).stdout.split('"student"')[1]
    from_make = _cli("config", "show", env={**leftover, "EDGE_FROM_MAKE": "1"})
    assert '"epochs": 1,' in from_make.stdout.split('"student"')[1]


@pytest.mark.parametrize(("config", "overrides"), [
    (None, []),
    (None, ["student.epochs=3", "study.levels=[\"1/2\",\"1/8\"]", "teacher.seed=7"]),
    (ROOT / "configs" / "cifar10.toml", []),
])
def test_config_show_as_toml_loads_back_to_the_same_config(
        tmp_path: Path, config: Path | None, overrides: list[str]) -> None:
    arguments = ["config", "show", "--format", "toml"]
    arguments += ["--config", str(config)] if config else []
    arguments += [item for override in overrides for item in ("--set", override)]
    shown = _cli(*arguments)
    assert shown.returncode == 0, shown.stderr
    written = tmp_path / "shown.toml"
    written.write_text(shown.stdout)
    original = load_config(config, overrides)
    reloaded = load_config(written)
    assert reloaded.fingerprint() == original.fingerprint()
    assert reloaded.to_dict() == original.to_dict()
    assert reloaded.target_settings == original.target_settings


def _makefile_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return tmp_path


def test_make_help_lists_every_target_with_a_line() -> None:
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    targets = phony.split(":", 1)[1].split()
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0]: line for line in shown.splitlines() if line.strip()}
    assert set(listed) == set(targets)
    assert all(len(line.split()) > 2 for line in listed.values())  # a description each


def test_make_clean_keeps_the_stage_cache_and_distclean_removes_it(tmp_path: Path) -> None:
    checkout = _makefile_copy(tmp_path)
    for folder in ("build/cache/teacher/abc", "build/scratch", "dist/host", ".venv/bin"):
        (checkout / folder).mkdir(parents=True)
    clean = subprocess.run(["make", "--no-print-directory", "clean"], cwd=checkout,
                           capture_output=True, text=True, check=True)
    assert (checkout / "build/cache/teacher/abc").is_dir()
    assert not (checkout / "build/scratch").exists() and not (checkout / "dist").exists()
    assert "make distclean removes it" in clean.stdout
    subprocess.run(["make", "--no-print-directory", "distclean"], cwd=checkout,
                   capture_output=True, text=True, check=True)
    assert not (checkout / "build").exists() and not (checkout / ".venv").exists()


@pytest.mark.parametrize("target", ["host", "rpi"])
def test_op_profiling_where_no_op_profile_exists_is_refused(target: str, tmp_path: Path) -> None:
    result = _cli("profile", "--target", target, "--dist-dir", str(tmp_path),
                  "--set", "profile.op_profiling=true")
    assert result.returncode == 2, result.stderr
    assert f"but target {target!r}" in result.stderr and "has no per-op profile" in result.stderr
