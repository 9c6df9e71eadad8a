"""Profile a fleet at once: several targets (`deploy --targets "rpi phone mcu"`) and/or a
profile listing several devices (`[connection] hosts = ["pi1", "pi@pi2:2222"]`).

Independent devices run concurrently (at most `profile.parallel` at a time); one failing
device does not lose the others' results: each outcome records its report or its error,
and the summary says which failed and why.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devices.base import TargetProfile
from devices.errors import (
    INTERNAL_ERROR_EXIT,
    ConfigError,
    PipelineError,
    as_pipeline_error,
    write_traceback,
)
from devices.fsutil import atomic_directory, child_folder
from devices.text import format_table
from pipeline.config import PipelineConfig
from pipeline.profile import Echo, profile_bundle


@dataclass(frozen=True)
class DeviceOutcome:
    device: str
    passed: bool
    exit_code: int  # 0 ok, 1 budget broken, 2/3 the error's code, 4 an internal error
    report: dict[str, Any] | None
    error: str | None
    started: float
    finished: float


HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")  # POSIX portable user names


def valid_host(host: str) -> bool:
    """A DNS host name (RFC 1123 labels) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and all(HOST_LABEL.fullmatch(label) for label in host.split("."))


def parse_host(text: str) -> dict[str, Any]:
    """`[user@]host[:port]`, an IPv6 host in brackets (`pi@[fe80::1]:22`) -> connection
    fields. Anything else is refused: the text names a device and its bundle folder."""
    hint = "(hint: pi@10.0.0.5:22, raspberrypi.local or pi@[fe80::1]:2222)"
    user, _, address = text.rpartition("@")
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        separator, port = rest[:1], rest[1:]
        well_formed = bool(bracket) and rest in ("", f":{port}") and ":" in host
    elif address.count(":") > 1:  # a bare IPv6 address: no port
        host, separator, port, well_formed = address, "", "", True
    else:
        host, separator, port = address.partition(":")
        well_formed = True
    if (not well_formed or not valid_host(host) or (separator and not port.isdigit())
            or (user and not USER_NAME.fullmatch(user))
            or (port and not 0 < int(port) < 65536)):
        raise ConfigError(f"fleet host {text!r} is not [user@]host[:port] with a valid host "
                          f"name or address, user name and port {hint}")
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
        replace(profile, name=f"{profile.name}@{_folder_safe(host)}",
                connection=replace(profile.connection, **parse_host(host), hosts=()))
        for host in hosts
    ] or [profile]


def _folder_safe(host: str) -> str:
    """`admin@pi2:2222` -> `admin@pi2_2222`; an IPv6 address loses its brackets and colons."""
    return host.replace("[", "").replace("]", "").replace(":", "_")


def copy_bundle(dist_dir: Path, source: str, device: str) -> None:
    """Each device of a multi-host profile gets its own bundle copy for its own report."""
    with atomic_directory(child_folder(Path(dist_dir), device, "bundle")) as folder:
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
            named = as_pipeline_error(error)
            if named is not None:
                device_echo(f"FAILED: {named}")
                return DeviceOutcome(profile.name, False, named.exit_code, None, str(named),
                                     started, time.time())
            log = write_traceback(error, Path(dist_dir) / profile.name)
            message = (f"internal error {type(error).__name__}: {str(error)[:200]} (a bug, not "
                       f"the device; traceback in {log})")
            device_echo(f"FAILED: {message}")
            return DeviceOutcome(profile.name, False, INTERNAL_ERROR_EXIT, None, message,
                                 started, time.time())

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
