"""Profile a fleet at once: several targets (`deploy --targets "rpi phone mcu"`) and/or a
profile listing several devices (`[connection] hosts = ["pi1", "pi@pi2:2222"]`).

Independent devices run concurrently (at most `profile.parallel` at a time); one failing
device does not lose the others' results: each outcome records its report or its error,
and the summary says which failed and why.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devices.base import TargetProfile
from devices.errors import ConfigError, PipelineError
from devices.fsutil import atomic_directory
from devices.text import format_table
from pipeline.config import PipelineConfig
from pipeline.profile import Echo, profile_bundle


@dataclass(frozen=True)
class DeviceOutcome:
    device: str
    passed: bool
    exit_code: int  # 0 ok, 1 budget broken, 2/3 the error's code
    report: dict[str, Any] | None
    error: str | None
    started: float
    finished: float


def parse_host(text: str) -> dict[str, Any]:
    """`[user@]host[:port]` -> connection fields."""
    user, _, address = text.rpartition("@")
    host, separator, port = address.partition(":")
    if not host or (separator and not port.isdigit()):
        raise ConfigError(f"fleet host {text!r} is not [user@]host[:port] (hint: pi@10.0.0.5:22)")
    fields: dict[str, Any] = {"host": host}
    if user:
        fields["user"] = user
    if port:
        fields["port"] = int(port)
    return fields


def device_profiles(profile: TargetProfile) -> list[TargetProfile]:
    """One profile per device: the profile itself, or one per entry of connection.hosts."""
    hosts = getattr(profile.connection, "hosts", ())  # adapters that reach hosts by name
    return [
        replace(profile, name=f"{profile.name}@{host.replace(':', '_')}",
                connection=replace(profile.connection, **parse_host(host), hosts=()))
        for host in hosts
    ] or [profile]


def copy_bundle(dist_dir: Path, source: str, device: str) -> None:
    """Each device of a multi-host profile gets its own bundle copy for its own report."""
    with atomic_directory(Path(dist_dir) / device) as folder:
        shutil.copytree(Path(dist_dir) / source, folder, dirs_exist_ok=True)


def profile_fleet(
    config: PipelineConfig, profiles: list[TargetProfile], dist_dir: Path, echo: Echo = print,
) -> list[DeviceOutcome]:
    lock = threading.Lock()

    def run(profile: TargetProfile) -> DeviceOutcome:
        def device_echo(line: str) -> None:
            with lock:
                for part in line.splitlines():
                    echo(f"[{profile.name}] {part}")

        started = time.time()
        try:
            outcome = profile_bundle(config, profile, dist_dir, device_echo)
            return DeviceOutcome(profile.name, outcome.passed, 0 if outcome.passed else 1,
                                 outcome.report, None, started, time.time())
        except PipelineError as error:
            device_echo(f"FAILED: {error}")
            return DeviceOutcome(profile.name, False, error.exit_code, None, str(error),
                                 started, time.time())
        except Exception as error:  # noqa: BLE001 - one device must not sink the fleet
            message = f"unexpected {type(error).__name__}: {error}"
            device_echo(f"FAILED: {message}")
            return DeviceOutcome(profile.name, False, 3, None, message, started, time.time())

    workers = max(1, min(config.profile.parallel, len(profiles)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, profiles))


def format_fleet_summary(outcomes: list[DeviceOutcome]) -> str:
    rows = []
    for outcome in outcomes:
        report = outcome.report
        median = report["latency_ms"]["median"] if report else None
        top1 = report["accuracy"]["top1"] if report else None
        status = "ok" if outcome.passed else ("FAILED" if outcome.error else "BUDGET BROKEN")
        detail = outcome.error or "; ".join(report["budget"]["violations"] if report else [])
        rows.append((outcome.device, status, median, top1, detail))
    failed = [o.device for o in outcomes if not o.passed]
    verdict = f"{len(outcomes) - len(failed)} of {len(outcomes)} device(s) passed"
    if failed:
        verdict += f"; failed: {', '.join(failed)}"
    return format_table(("device", "status", "median ms", "top1", "detail"), rows) + "\n" + verdict
