"""The device dies mid-run: the real sshd (with the session and the runner under it), the
real adb server, the real qemu-system-arm are killed (SIGKILL) while `pipeline profile`
measures on them. For each: exit 3 (device failure), a one-line message naming the fault,
the bundle in dist/ still whole and no half-written latency report in it, and nothing left
running from the device's folder on this side."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devices.bundle import read_manifest
from devices.fsutil import sha256_file
from tests.devices.timeouts import SLEEPING_RUNNER, device_python, processes_running_from
from tests.faults import fault_log
from tests.system_tools import NEEDS_ADB, NEEDS_MCU, NEEDS_SSHD

ROOT = Path(__file__).resolve().parent.parent.parent
DEVICE_FAILURE_EXIT = 3
WAIT_S = 90


def _process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue  # exited while we looked
        fields = text[text.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(text.split()[0]))
    tree, pending = [], [pid]
    while pending:
        tree.append(pending.pop())
        pending.extend(children.get(tree[-1], []))
    return tree


def _kill_tree(pid: int) -> None:
    for member in _process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(condition: Callable[[], object], cli: subprocess.Popen) -> object:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and cli.poll() is None:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"the device never got to the point of the fault: "
                         f"{cli.communicate(timeout=30)}")


def _profile(target: str, dist: Path, overrides: dict[str, str], environment: dict[str, str]
             ) -> subprocess.Popen:
    sets = [item for key, value in overrides.items()
            for item in ("--set", f"target.{key}={value}")]
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "profile", "--target", target,
         "--dist-dir", str(dist), *sets],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin:/usr/sbin", "PYTHONPATH": str(ROOT), **environment})


def _bundle(bundle_copy: Path, target: str) -> tuple[Path, str]:
    """The test bundle as dist/<target>, and its manifest's hash."""
    folder = bundle_copy.rename(bundle_copy.parent / target)
    return folder, sha256_file(folder / "manifest.json")


def _judge(case: str, cli: subprocess.Popen, folder: Path, manifest_hash: str,
           message_names: str) -> None:
    _, stderr = cli.communicate(timeout=WAIT_S)
    lines = stderr.strip().splitlines()
    message = lines[-1] if lines else ""
    manifest = read_manifest(folder)
    whole = sha256_file(folder / "manifest.json") == manifest_hash and all(
        sha256_file(folder / entry["path"]) == entry["sha256"] for entry in manifest.files)
    leftovers = [path.name for path in folder.parent.iterdir()
                 if path.name.startswith(".") and path.name != ".locks"]
    lost = 0 if whole and not (folder / "latency_report.json").exists() else 1
    survived = (cli.returncode == DEVICE_FAILURE_EXIT and message_names in message
                and not leftovers)
    fault_log.CASES.append((case, f"exit {cli.returncode}: {message.removeprefix('error: ')}",
                            survived, lost))
    assert survived and lost == 0, (cli.returncode, message, leftovers, stderr[-2000:])


@NEEDS_SSHD
def test_sshd_killed_mid_run(start_sshd, bundle_copy: Path, tmp_path: Path) -> None:
    server = start_sshd()
    folder, manifest_hash = _bundle(bundle_copy, "rpi")
    before = set(glob.glob("/tmp/edge-bench.*"))
    overrides = server.overrides(**{"extra.python": device_python(tmp_path, SLEEPING_RUNNER)})
    cli = _profile("rpi", folder.parent, overrides, {"HOME": str(tmp_path)})

    def runner_sleeping() -> set[str]:
        return {path for path in set(glob.glob("/tmp/edge-bench.*")) - before
                if processes_running_from(path)}

    remote = _wait_for(runner_sleeping, cli)
    _kill_tree(server.process.pid)  # the Pi loses power: daemon, session, runner
    # OpenSSH says "closed by" or "reset by" as the socket happened to die: one message
    _judge("sshd killed mid-run (rpi)", cli, folder, manifest_hash, "dropped mid-command")
    assert all(processes_running_from(path) == [] for path in remote)
    for path in remote:  # what a Pi that lost power keeps in its /tmp until it reboots
        shutil.rmtree(path)


@NEEDS_ADB
def test_adb_server_killed_mid_run(adb_server, fake_phone, bundle_copy: Path,
                                   tmp_path: Path) -> None:
    phone = fake_phone()
    hanging = tmp_path / "benchmark_model"
    hanging.write_text("#!/bin/sh\nsleep 120\n")  # TEST DOUBLE: a benchmark_model still at work
    hanging.chmod(0o755)
    folder, manifest_hash = _bundle(bundle_copy, "phone")
    cli = _profile("phone", folder.parent, {"connection.serial": phone.serial, "connection.taskset_mask": "1"},
                   {**adb_server.environment, "BENCHMARK_MODEL": str(hanging)})
    _wait_for(lambda: processes_running_from(str(phone.sandbox)), cli)
    server = subprocess.run(["pgrep", "-f", f"adb -L tcp:{adb_server.port} fork-server"],
                            capture_output=True, text=True, check=True).stdout.split()
    for pid in server:
        _kill_tree(int(pid))
    _judge("adb server killed mid-run (phone)", cli, folder, manifest_hash,
           "the adb connection was lost")


@NEEDS_MCU
def test_qemu_killed_mid_run(bundle_copy: Path, tmp_path: Path) -> None:
    folder, manifest_hash = _bundle(bundle_copy, "mcu")
    real = shutil.which("qemu-system-arm")
    assert real is not None
    shims = tmp_path / "bin"
    shims.mkdir()
    # The real emulator, started halted (-S) when it runs the model's firmware, so that the
    # kill lands mid-run on any machine: the tiny model's run is too short to aim at.
    (shims / "qemu-system-arm").write_text(
        f'#!/bin/sh\ncase "$*" in *firmware-*) exec {real} -S "$@" ;; esac\nexec {real} "$@"\n')
    (shims / "qemu-system-arm").chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cli = _profile("mcu", folder.parent, {}, {"HOME": str(tmp_path), "TMPDIR": str(scratch),
                                              "PATH": f"{shims}:/usr/bin:/bin"})

    def benchmark_running() -> list[str]:  # the model's firmware, not the calibration's
        found = subprocess.run(["pgrep", "-f", f"{real} -S .*-kernel .*/firmware-"],
                               capture_output=True, text=True, check=False)
        return found.stdout.split()

    for pid in _wait_for(benchmark_running, cli):
        _kill_tree(int(pid))
    _judge("qemu killed mid-run (mcu)", cli, folder, manifest_hash, "killed by SIGKILL")
    assert list(scratch.iterdir()) == []  # the firmware's build folder went with the run
