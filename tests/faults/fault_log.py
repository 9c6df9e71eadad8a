"""The fault cases tried in this test session, shown as one table in the test log."""

from __future__ import annotations

CASES: list[tuple[str, str, bool, int]] = []  # case, outcome, survived, data lost


def table() -> list[str]:
    lines = [f"{'fault case':<44}{'outcome':<72}{'survived':<10}data lost"]
    lines += [f"{case:<44}{outcome[:70]:<72}{'yes' if ok else 'NO':<10}{lost}"
              for case, outcome, ok, lost in CASES]
    lines.append(f"{len(CASES)} case(s) tried, {sum(ok for _, _, ok, _ in CASES)} survived, "
                 f"{sum(lost for *_, lost in CASES)} with data lost")
    return lines
