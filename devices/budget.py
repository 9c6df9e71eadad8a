"""Check a latency report against a target's budget and, optionally, a baseline report.

Used twice: profiling fills the report's `budget` section with it, and `pipeline check`
(`make check TARGET=…`) prints `format_check_table(check_report_file(...))` and exits 1
when `passed` is False. A limit whose value the report does not measure counts as a
violation: a budget that cannot be verified must not pass silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.accuracy_estimate import AccuracyEstimate, judged_accuracy
from devices.base import SCHEMA, Budget, LatencyReport, TargetProfile
from devices.bundle import UNLABELLED
from devices.errors import ArtifactError, ConfigError
from devices.text import format_table, optional

DEFAULT_MAX_REGRESSION = 0.10


@dataclass(frozen=True)
class BudgetRow:
    check: str  # e.g. "latency median (ms)"
    limit: str
    measured: str
    passed: bool | None  # None = not applicable (an emulated target's latency) or undecided
    note: str = ""
    undecided: bool = False  # a measurement too noisy to judge the limit either way

    @property
    def status(self) -> str:
        if self.passed is None:
            return "undecided" if self.undecided else "skipped"
        return "ok" if self.passed else "BROKEN"


@dataclass(frozen=True)
class CheckResult:
    target: str
    rows: tuple[BudgetRow, ...]
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> list[str]:
        return [f"{row.check}: {row.measured} breaks {row.limit}"
                + (f" ({row.note})" if row.note else "")
                for row in self.rows if row.passed is False]

    @property
    def passed(self) -> bool:
        return not self.violations

    def budget_section(self) -> dict[str, Any]:
        """The report's `budget` section: {limits, passed, violations}."""
        return {"limits": self.limits, "passed": self.passed, "violations": self.violations}


def parse_max_regression(value: float | str | None) -> float | None:
    """`10%` -> 0.10, `0.1` -> 0.1; used for --max-regression."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    text = value.strip()
    try:
        fraction = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise ConfigError(f"--max-regression {value!r} is not a number "
                          "(hint: write 10% or 0.1)") from exc
    if fraction < 0:
        raise ConfigError(f"--max-regression {value!r} must not be negative")
    return fraction


def _format(value: float | None, unit: str = "") -> str:
    spec = ".3f" if value is None or abs(value) < 10 else ".1f"
    return optional(value, spec, unit, missing="not measured")


def _row(check: str, limit: float, measured: float | None, within: Callable[[float], bool],
         limit_text: str, unit: str = "") -> BudgetRow:
    if measured is None:
        return BudgetRow(check, limit_text, "not measured", False,
                         "the report has no value for this limit")
    return BudgetRow(check, limit_text, _format(measured, unit), bool(within(measured)))


def _latency_row(report: dict, budget: Budget) -> BudgetRow:
    stat = budget.latency_stat
    check = f"latency {stat} (ms)"
    limit_text = f"<= {budget.latency_ms:g}"
    measured = report["latency_ms"][stat]
    if report["target"]["emulated"]:
        return BudgetRow(check, limit_text, _format(measured), None,
                         "emulated target: timings are not device latency")
    return _row(check, budget.latency_ms, measured, lambda value: value <= budget.latency_ms,
                limit_text)


def _accuracy_row(report: dict, budget: Budget) -> BudgetRow:
    """Judged on the top-1 with the most samples, by its 95% interval: broken only when
    the whole interval is below the line, undecided (not broken) when it holds the line."""
    line, limit_text = budget.min_accuracy, f">= {budget.min_accuracy:g}"
    estimate = judged_accuracy(report)
    if estimate is None and UNLABELLED in _accuracy_reasons(report):
        return BudgetRow("top-1 accuracy", limit_text, "not measured", None,
                         f"not judged: {UNLABELLED} (hint: --set data.name=… bundles "
                         "labelled samples)")
    if estimate is None:
        return _row("top-1 accuracy", line, None, lambda value: True, limit_text)
    verdict = estimate.verdict(line)
    note = "" if verdict is not None else _undecided_note(estimate, line)
    return BudgetRow("top-1 accuracy", limit_text, estimate.describe(), verdict, note,
                     undecided=verdict is None)


def _accuracy_reasons(report: dict) -> set[str]:
    missing = report.get("missing") or {}
    return {missing.get("accuracy.top1"), missing.get("accuracy")} - {None}


def _undecided_note(estimate: AccuracyEstimate, line: float) -> str:
    needed = estimate.samples_to_decide(line)
    decide = (f"about {needed:,} samples would decide it" if needed is not None
              else "the top-1 is the line itself")
    return f"the 95% interval holds the line; {decide}"


def _ram_row(report: dict, budget: Budget) -> BudgetRow:
    memory = report["memory"]
    if memory["arena_bytes"] is not None:  # microcontroller: the tensor arena is the RAM
        measured, what = memory["arena_bytes"] / 1024.0, "RAM (kB, arena)"
    elif memory["peak_rss_mb"] is not None:
        measured, what = memory["peak_rss_mb"] * 1024.0, "RAM (kB, peak RSS)"
    else:
        measured, what = None, "RAM (kB)"
    return _row(what, budget.ram_kb, measured, lambda value: value <= budget.ram_kb,
                f"<= {budget.ram_kb:g}")


def _flash_row(report: dict, budget: Budget) -> BudgetRow:
    flash_bytes = report["memory"]["flash_bytes"]
    if flash_bytes is None:
        flash_bytes = report["artifact"]["bytes"]
    measured = None if flash_bytes is None else flash_bytes / 1024.0
    return _row("flash (kB)", budget.flash_kb, measured, lambda value: value <= budget.flash_kb,
                f"<= {budget.flash_kb:g}")


# budget field -> row builder; a field left out of the profile (None) adds no row
LIMIT_ROWS: dict[str, Callable[[dict, Budget], BudgetRow]] = {
    "latency_ms": _latency_row,
    "min_accuracy": _accuracy_row,
    "ram_kb": _ram_row,
    "flash_kb": _flash_row,
}


def _bit_identity_row(report: dict) -> BudgetRow | None:
    identical = report.get("extra", {}).get("bit_identical_to_host")
    if identical is None:
        return None
    return BudgetRow("outputs bit-identical to x86 host", "identical",
                     "identical" if identical else "different", bool(identical))


def _regression_row(report: dict, baseline: dict, stat: str, max_regression: float) -> BudgetRow:
    current = report["latency_ms"][stat]
    before = baseline["latency_ms"][stat]
    check = f"latency {stat} vs baseline"
    limit_text = f"<= +{max_regression:.0%}"
    if current is None or before is None or before <= 0:
        return BudgetRow(check, limit_text, "not measured", False,
                         "report or baseline lacks this latency")
    change = current / before - 1.0
    return BudgetRow(check, limit_text, f"{change:+.1%} ({before:.3f} -> {current:.3f} ms)",
                     change <= max_regression)


def _limits(budget: Budget, max_regression: float | None) -> dict[str, Any]:
    limits = {key: value for key, value in asdict(budget).items()
              if value is not None and key != "latency_stat" and key != "max_regression"}
    if budget.latency_ms is not None:
        limits["latency_stat"] = budget.latency_stat
    if max_regression is not None:
        limits["max_regression"] = max_regression
    return limits


def evaluate_budget(
    report: dict,
    budget: Budget,
    baseline: dict | None = None,
    max_regression: float | None = None,
) -> CheckResult:
    rows = [builder(report, budget) for key, builder in LIMIT_ROWS.items()
            if getattr(budget, key) is not None]
    identity = _bit_identity_row(report)
    if identity is not None:
        rows.append(identity)
    regression = None
    if baseline is not None:
        regression = max_regression if max_regression is not None else (
            budget.max_regression if budget.max_regression is not None
            else DEFAULT_MAX_REGRESSION)
        rows.append(_regression_row(report, baseline, budget.latency_stat, regression))
    target = report["target"]["name"]
    return CheckResult(target=target, rows=tuple(rows), limits=_limits(budget, regression))


def read_report(path: Path, what: str = "latency report") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no {what} at {path} (hint: run `make deploy TARGET=...` or "
                            "`pipeline profile` first)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{what} {path} is not valid JSON: {exc} "
                            "(hint: profile the target again)") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ArtifactError(f"{what} {path} has schema {found!r}, expected {SCHEMA!r} "
                            "(hint: profile the target again)")
    return LatencyReport.from_dict(document, f"{what} {path}").to_dict()


def check_report_file(
    report_path: Path,
    profile: TargetProfile,
    baseline_path: Path | None = None,
    max_regression: float | str | None = None,
) -> CheckResult:
    fraction = parse_max_regression(max_regression)
    if fraction is not None and baseline_path is None:
        raise ConfigError("--max-regression needs --baseline FILE (hint: pass the report to "
                          "compare against, e.g. a copy of an earlier latency_report.json)")
    report = read_report(report_path)
    baseline = read_report(baseline_path, "baseline report") if baseline_path else None
    return evaluate_budget(report, profile.budget, baseline, fraction)


def format_check_table(result: CheckResult) -> str:
    body = [(row.check, row.limit, row.measured,
             row.status
             + (f" - {row.note}" if row.note else "")) for row in result.rows]
    if not body:
        body = [("(no limits in this target's budget)", "", "", "ok")]
    table = format_table(("check", "limit", "measured", "status"), body)
    undecided = sum(row.undecided for row in result.rows)
    verdict = ("PASSED" + (f" ({undecided} undecided)" if undecided else "") if result.passed
               else f"BROKEN ({len(result.violations)} violation(s))")
    rule = "-" * max(len(line) for line in table.splitlines())
    return "\n".join([f"budget check: {result.target}", table, rule, verdict])
