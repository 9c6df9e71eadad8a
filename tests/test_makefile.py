"""The Makefile passes user values to the CLI as text: never expanded by make, never
re-parsed by a shell. Run against a copy of the real Makefile whose virtual environment's
`python` is a stand-in script that records its arguments and environment (a test double:
the real CLI is not what is under test here, make's handling of the values is)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "$(shell touch pwned)"
RECORDER = """#!/bin/sh
python3 - "$@" <<'PY'
import json, os, sys
record = {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("EDGE_")}}
with open("calls.jsonl", "a") as handle:
    handle.write(json.dumps(record) + "\\n")
PY
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()  # newer than pyproject.toml: no install
    return tmp_path


def _make(checkout: Path, *arguments: str, exit_code: int = 0) -> tuple[int, list[dict]]:
    result = subprocess.run(["make", "--no-print-directory", *arguments], cwd=checkout,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                                 "FAKE_EXIT": str(exit_code)})
    calls = checkout / "calls.jsonl"
    lines = calls.read_text().splitlines() if calls.is_file() else []
    return result.returncode, [json.loads(line) for line in lines]


@pytest.mark.parametrize(("variable", "goal", "received"), [
    ("SET", "deploy", "EDGE_SET"),
    ("CONFIG", "deploy", "EDGE_CONFIG"),
    ("TARGET", "deploy", "EDGE_DEPLOY_TARGETS"),
    ("TARGETS", "deploy", "EDGE_DEPLOY_TARGETS"),
    ("BASELINE", "check", "EDGE_BASELINE"),
    ("MODEL", "profile", "EDGE_MODEL"),
])
def test_a_make_function_in_a_user_value_stays_text(
    checkout: Path, variable: str, goal: str, received: str,
) -> None:
    code, calls = _make(checkout, goal, f"{variable}={PROBE}")
    assert not (checkout / "pwned").exists()  # make did not run it
    assert code == 0 and len(calls) == 1
    assert calls[0]["env"][received] == PROBE  # the CLI gets the text as typed
    assert len(_make(checkout, "-n", "targets", f"{variable}={PROBE}")[1]) == 1  # no new call
    assert not (checkout / "pwned").exists()


def test_quotes_and_spaces_reach_the_cli_unparsed(checkout: Path) -> None:
    value = 'target.connection.hosts=["pi 1","$HOME"] data.name=npz:a;b.npz'
    code, calls = _make(checkout, "deploy", f"SET={value}")
    assert code == 0 and calls[0]["env"]["EDGE_SET"] == value
    assert calls[0]["argv"][:3] == ["-m", "pipeline", "deploy"]


@pytest.mark.parametrize("goal", ["profile", "artifacts"])
def test_model_reaches_the_cli_as_one_argument(checkout: Path, goal: str) -> None:
    """`make profile MODEL=…`: the file is one --model argument, spaces and `$` kept; without
    MODEL no --model at all (the bundle in dist/ is profiled, as before)."""
    value = "my models/$HOME net.tflite"
    code, calls = _make(checkout, goal, f"MODEL={value}")
    assert code == 0 and calls[0]["argv"][-2:] == ["--model", value]
    assert "--model" not in _make(checkout, goal)[1][-1]["argv"]


@pytest.mark.parametrize("cli_code", [1, 2, 3])
def test_make_reports_any_failing_command_as_2(checkout: Path, cli_code: int) -> None:
    """GNU make's own status: why the README points CI at `python -m pipeline` for the
    documented codes (README, "Exit codes")."""
    assert _make(checkout, "check", exit_code=cli_code)[0] == 2
