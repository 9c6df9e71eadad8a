"""JUnit XML from budget checks, for `pipeline check --format junit`.

CI systems (GitHub Actions test reporters, GitLab, Jenkins) show a JUnit failure as a
failed test, so a broken latency or accuracy limit shows up where developers already look.
One <testsuite> per target, one <testcase> per budget row: a broken row is a <failure>, a
row that does not apply (e.g. latency of an emulated target) is <skipped>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from typing import Any

SUITES_NAME = "edge-pipeline budget"


def _testcase(target: str, row: Any) -> ElementTree.Element:
    case = ElementTree.Element(
        "testcase", {"classname": f"budget.{target}", "name": row.check, "time": "0"}
    )
    details = f"limit {row.limit}, measured {row.measured}" + (
        f" ({row.note})" if row.note else ""
    )
    if row.passed is False:
        failure = ElementTree.SubElement(
            case, "failure", {"message": f"{row.check}: {row.measured} breaks {row.limit}",
                              "type": "BudgetViolation"}
        )
        failure.text = details
    elif row.passed is None:
        ElementTree.SubElement(case, "skipped", {"message": row.note or "not applicable"})
    else:
        output = ElementTree.SubElement(case, "system-out")
        output.text = details
    return case


def _testsuite(result: Any) -> ElementTree.Element:
    rows: Sequence[Any] = tuple(result.rows)
    failures = sum(1 for row in rows if row.passed is False)
    skipped = sum(1 for row in rows if row.passed is None)
    suite = ElementTree.Element("testsuite", {
        "name": f"budget {result.target}", "tests": str(len(rows)),
        "failures": str(failures), "errors": "0", "skipped": str(skipped), "time": "0",
    })
    for row in rows:
        suite.append(_testcase(result.target, row))
    return suite


def to_junit(results: Any | Iterable[Any], name: str = SUITES_NAME) -> str:
    """JUnit XML for one or more devices.budget.CheckResult (anything with `target` and
    `rows` of BudgetRow: check, limit, measured, passed True/False/None, note)."""
    results = [results] if hasattr(results, "rows") else list(results)
    suites = ElementTree.Element("testsuites", {"name": name})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for result in results:
        suite = _testsuite(result)
        suites.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        suites.set(key, str(value))
    ElementTree.indent(suites)
    body = ElementTree.tostring(suites, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'
