"""Prints the fault cases' table at the end of the test log."""

from __future__ import annotations

from typing import Any

from tests.faults import fault_log


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if fault_log.CASES:
        terminalreporter.section("fault cases")
        for line in fault_log.table():
            terminalreporter.write_line(line)
