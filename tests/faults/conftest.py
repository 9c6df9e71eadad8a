"""Prints the fault cases' table at the end of the test log; shares the device tests'
real servers and tiny bundle with the fault cases."""

from __future__ import annotations

from typing import Any

from tests.devices.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    adb_home,
    adb_server,
    bundle_copy,
    fake_phone,
    ssh_root,
    start_sshd,
    tiny_bundle,
)
from tests.faults import fault_log


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if fault_log.CASES:
        terminalreporter.section("fault cases")
        for line in fault_log.table():
            terminalreporter.write_line(line)
