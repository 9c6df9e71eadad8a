"""Which system programs the tests find, and the suite's rules around them.

One source: tests/system-packages.txt lists each Debian package with the programs that show
it is installed. A test that needs one says so, `@pytest.mark.needs("qemu-system-arm")`, or
a fixture calls `require("sshd")`; when the program is missing the test skips with one line
naming the package. Under CI=true a skip is a failure instead (.ci/run installs every
package, so a skip there is a broken install step). After the run, one line says how many
tests were skipped for missing programs and the command that installs them.

tests/conftest.py takes these hooks; tests/test_system_tools.py runs them in a pytest of
their own to show both outcomes.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

import pytest

PACKAGE_LIST = Path(__file__).resolve().with_name("system-packages.txt")
INSTALL_COMMAND = "make test-deps"
# sshd lives in /usr/sbin, which a non-root user's PATH often leaves out
EXTRA_FOLDERS = ("/usr/sbin", "/sbin")


@cache
def package_lines() -> tuple[tuple[str, ...], ...]:
    """(package, program, ...) for each line of the list, comments dropped."""
    lines = PACKAGE_LIST.read_text(encoding="utf-8").splitlines()
    return tuple(tuple(words) for line in lines if (words := line.split("#", 1)[0].split()))


def packages_by_program() -> dict[str, str]:
    """Program (or absolute file) -> the Debian package that installs it."""
    return {program: package for package, *programs in package_lines() for program in programs}


def all_packages() -> list[str]:
    return [package for package, *_ in package_lines()]


def package_of(program: str) -> str:
    package = packages_by_program().get(program)
    if package is None:
        raise KeyError(f"{program!r} is not in {PACKAGE_LIST.name} (hint: add the line "
                       "'<debian-package> <program>' there)")
    return package


def installed(program: str) -> bool:
    if program.startswith("/"):
        return Path(program).exists()
    if shutil.which(program):
        return True
    return any(os.access(Path(folder) / program, os.X_OK) for folder in EXTRA_FOLDERS)


def missing(*programs: str) -> list[str]:
    return [program for program in programs if not installed(program)]


def skip_reason(programs: list[str]) -> str:
    packages = sorted({package_of(program) for program in programs})
    return (f"needs {', '.join(programs)} (Debian: {' '.join(packages)}; "
            f"`{INSTALL_COMMAND}` installs it)")


class MissingPrograms(pytest.skip.Exception):
    """The skip of a test whose system programs are missing; carries their names."""

    def __init__(self, programs: list[str]) -> None:
        super().__init__(skip_reason(programs))
        self.programs = programs


def require(*programs: str) -> None:
    """Skip the calling test or fixture when any of `programs` is missing."""
    for program in programs:
        package_of(program)  # a typo fails loudly, even where the program is installed
    absent = missing(*programs)
    if absent:
        raise MissingPrograms(absent)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- hooks (re-exported by tests/conftest.py) -------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*programs): skip (outside CI) when a system program is missing; "
        "tests/system-packages.txt names its Debian package")


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        require(*marker.args)


# the programs each skipped test missed, gathered from the reports: under pytest-xdist they
# reach the controlling process (which prints the last line) as report.user_properties
_MISSING: list[list[str]] = []
_MISSING_PROPERTY = "missing_programs"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    if call.excinfo is not None and isinstance(call.excinfo.value, MissingPrograms):
        report.user_properties.append((_MISSING_PROPERTY, call.excinfo.value.programs))
        reason = call.excinfo.value.msg
    if running_in_ci():
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _MISSING.extend(value for name, value in report.user_properties
                    if name == _MISSING_PROPERTY)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's last line: how many tests a missing program skipped, and the fix."""
    if not _MISSING or hasattr(config, "workerinput"):  # an xdist worker: its controller says it
        return
    skipped = _MISSING
    programs = sorted({program for missed in skipped for program in missed})
    packages = sorted({package_of(program) for program in programs})
    outcome = "failed under CI=true" if running_in_ci() else "skipped"
    print(f"{len(skipped)} tests {outcome}: missing {', '.join(programs)}; "
          f"`{INSTALL_COMMAND}` installs them (apt-get install {' '.join(packages)})")


# The tool sets most device tests share, one name each.
NEEDS_MCU = pytest.mark.needs("arm-none-eabi-gcc", "arm-none-eabi-size",
                              "/usr/lib/arm-none-eabi/newlib", "qemu-system-arm")
NEEDS_SSHD = pytest.mark.needs("sshd", "ssh", "ssh-keygen")
NEEDS_ADB = pytest.mark.needs("adb")
NEEDS_QEMU_AARCH64 = pytest.mark.needs("qemu-aarch64-static")
NEEDS_QEMU_X86 = pytest.mark.needs("qemu-x86_64-static")
