"""Progress inside the long stages, as a user sees it: a rich bar on a terminal (run under a
real pseudo-terminal), one line per step in CI logs (`CI=true`, output to a pipe), nothing
with -q; and --tf-logs lets TensorFlow's own logs through."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices.tf_logs import STARTUP_NOISE
from tests.conftest import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent.parent
RECOMPUTED = ("export", "validate")  # the stages with steps, recomputed in each run


def _command(build: Path, *options: str, verb: tuple[str, ...] = ("artifacts", "--targets",
                                                                  "host")) -> list[str]:
    sets = [item for override in TINY_OVERRIDES for item in ("--set", override)]
    return [sys.executable, "-m", "pipeline", *options, *verb,
            "--build-dir", str(build), "--dist-dir", str(build.parent / "dist"), *sets]


def _environment(**changes: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("EDGE_") and key != "CI"}
    return {**environment, "PYTHONPATH": str(ROOT), **changes}


@pytest.fixture
def build(tiny_build: dict, tmp_path: Path) -> Path:
    """The shared tiny build's cache without the export and validate entries."""
    build = tmp_path / "build"
    shutil.copytree(tiny_build["build_dir"], build)
    for stage in RECOMPUTED:
        shutil.rmtree(build / "cache" / stage)
    return build


def _in_a_terminal(command: list[str], environment: dict[str, str],
                   exits: tuple[int, ...] = (0,)) -> str:
    pid, descriptor = pty.fork()
    if pid == 0:  # the child: stdout is the terminal
        os.execve(command[0], command, environment)
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # the terminal closed: the child exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) in exits, b"".join(chunks)[-2000:]
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_a_ci_log_gets_one_line_per_step(build: Path) -> None:
    result = subprocess.run(_command(build), cwd=ROOT, env=_environment(CI="true"),
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    for stage, last in (("export", "6/6 model_int8.onnx"), ("validate", "6/6 model_int8.onnx")):
        steps = [line for line in lines if line.startswith(f"{stage:<10} ") and "/6 " in line]
        assert [line.split()[1] for line in steps] == [f"{n}/6" for n in range(1, 7)], lines
        assert steps[-1].endswith(last)
    assert "\x1b[" not in result.stdout  # no terminal control codes in a log


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar(build: Path) -> None:
    output = _in_a_terminal(_command(build), _environment(TERM="xterm"))
    assert "━" in output and "\x1b[" in output  # rich's bar, redrawn in place
    assert "export     1/6 " not in output  # not the log lines


@pytest.mark.slow
def test_a_terminal_sees_profiling_run_with_its_elapsed_time(build: Path) -> None:
    """Profiling is one process on the device (or in the emulator): a spinner and a clock."""
    # exit 1 is allowed: the 2-epoch tiny model misses the host's min_accuracy budget
    output = _in_a_terminal(_command(build, verb=("deploy", "--target", "host")),
                            _environment(TERM="xterm"), exits=(0, 1))
    assert "host running" in output  # the spinner, beside the line that says what runs
    assert "0:00:0" in output  # rich's elapsed-time column, redrawn while it runs
    assert "latency    median" in output  # and the result once it is done


@pytest.mark.slow
def test_quiet_shows_no_progress_and_still_the_results(build: Path) -> None:
    result = subprocess.run(_command(build, "-q"), cwd=ROOT, env=_environment(CI="true"),
                            capture_output=True, text=True, check=True)
    assert "/6 " not in result.stdout
    assert "export     computed" in result.stdout and "validate   computed" in result.stdout


def test_tf_logs_let_tensorflow_speak() -> None:
    probe = ("import os; import devices.tf_env as env; "
             "print(env.TF_LOGS, os.environ['TF_CPP_MIN_LOG_LEVEL'], "
             "env.tf.get_logger().level)")
    run = [sys.executable, "-c", probe]
    inherited = {key: value for key, value in _environment().items()
                 if key != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run(run, env=inherited, capture_output=True, text=True, check=True)
    # --tf-logs wins over a level set in the environment
    loud = subprocess.run(run, env={**inherited, "EDGE_TF_LOGS": "1",
                                    "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, check=True)
    assert quiet.stdout.split() == ["False", "2", "40"]  # logging.ERROR
    assert loud.stdout.split() == ["True", "0", "20"]  # logging.INFO


def test_the_cpu_only_startup_lines_are_dropped_unless_tf_logs() -> None:
    """TensorFlow's CUDA probe prints `cudart_stub`/`cuInit` lines on every start on a CPU
    machine, below any log level; they are dropped, and come back with --tf-logs."""
    probe = ("import sys; import devices.tf_env as env; env.tf.constant(1.0); "
             "print('after the import', file=sys.stderr)")
    run = [sys.executable, "-c", probe]
    inherited = {key: value for key, value in _environment().items()
                 if key != "TF_CPP_MIN_LOG_LEVEL"}
    loud = subprocess.run(run, env={**inherited, "EDGE_TF_LOGS": "1"}, capture_output=True,
                          text=True, check=True, cwd=ROOT)
    quiet = subprocess.run(run, env=inherited, capture_output=True, text=True, check=True,
                           cwd=ROOT)
    noise = [line for line in loud.stderr.splitlines()
             if any(pattern in line for pattern in STARTUP_NOISE)]
    assert noise  # they are printed on this machine: the filter is what removes them
    assert not [line for line in quiet.stderr.splitlines()
                if any(pattern in line for pattern in STARTUP_NOISE)]
    assert "after the import" in quiet.stderr  # the rest of stderr goes through
