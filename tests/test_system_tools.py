"""A test whose system program is missing skips outside CI, naming its Debian package, and
fails under CI=true; the run's last line counts the skips and names the install command.

Each case runs a pytest of its own (tests/system_tools.py's hooks, as tests/conftest.py
takes them) with a PATH that holds no system programs at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system_tools import all_packages, package_of, packages_by_program, skip_reason

ROOT = Path(__file__).resolve().parents[1]

INNER_CONFTEST = "from tests.system_tools import *  # noqa: F403 - the suite's own hooks\n"
INNER_TESTS = '''
import pytest

from tests.system_tools import require


@pytest.mark.needs("qemu-system-arm")
def test_on_the_board():
    raise AssertionError("must not run without qemu-system-arm")


@pytest.fixture
def server():
    require("adb", "ssh")


def test_through_the_server(server):
    raise AssertionError("must not run without adb")


def test_without_programs():
    assert True
'''


def _inner_run(tmp_path: Path, ci: str | None, workers: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir(exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if key != "CI"}
    environment.update(PATH=str(empty_bin), PYTHONPATH=str(ROOT))
    if ci is not None:
        environment["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *workers,
         str(tmp_path)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)


# make test runs two pytest-xdist workers: the last line comes from the controlling process
WORKERS = pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])


@WORKERS
def test_a_missing_program_skips_outside_ci_naming_its_package(tmp_path: Path,
                                                               workers: tuple[str, ...]) -> None:
    result = _inner_run(tmp_path, ci=None, workers=workers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout
    assert "needs qemu-system-arm (Debian: qemu-system-arm; `make test-deps` installs it)" \
        in result.stdout
    assert "needs adb, ssh (Debian: adb openssh-client;" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last == ("2 tests skipped: missing adb, qemu-system-arm, ssh; `make test-deps` "
                    "installs them (apt-get install adb openssh-client qemu-system-arm)")


@WORKERS
def test_a_missing_program_fails_under_ci(tmp_path: Path, workers: tuple[str, ...]) -> None:
    result = _inner_run(tmp_path, ci="true", workers=workers)
    assert result.returncode == 1, result.stdout + result.stderr
    # the skip is raised while setting the test up, so pytest counts the failure as an error
    assert "1 passed, 2 errors" in result.stdout
    assert "skipped under CI=true, which must run every test: needs qemu-system-arm" \
        in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith(
        "2 tests failed under CI=true: missing adb, qemu-system-arm, ssh;")


def test_every_program_has_one_package_and_the_list_has_no_repeats() -> None:
    packages = all_packages()
    assert len(packages) == len(set(packages))
    assert set(packages_by_program().values()) <= set(packages)
    assert package_of("arm-none-eabi-gcc") == "gcc-arm-none-eabi"
    assert "`make test-deps` installs it" in skip_reason(["adb"])
    with pytest.raises(KeyError, match="not in system-packages.txt"):
        package_of("no-such-program")
