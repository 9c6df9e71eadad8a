"""The `ssh` adapter (targets `rpi` and `rpi-emu`): bench_runner.py on a device over OpenSSH.

Security defaults: host keys are always checked against known_hosts (StrictHostKeyChecking=yes);
trusting a first-seen key needs `accept_new_host_key = true` (accept-new, never "no").
Remote commands are argument lists joined with shlex.quote, never concatenated strings.

Transports (a registry): "ssh" runs device commands through the OpenSSH client; "local" runs
the very same commands in a local shell, used by `rpi-emu` when the "device" is an aarch64
python under qemu on this machine and no sshd is wanted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import (
    CLIENT_GRACE_S,
    KILL_GRACE_S,
    STOP_AND_REMOVE,
    TIMEOUT_EXITS,
    BenchmarkSettings,
    Bundle,
    DeviceAdapter,
    DeviceError,
    LatencyReport,
    TargetProfile,
    under_device_timeout,
)
from devices.fsutil import sha256_file
from devices.host import (
    RUNNER_PATH,
    RUNTIME_MODULES,
    RUNTIME_PACKAGES,
    bundle_files,
    parse_runner_output,
    report_from_runner,
    run_runner_locally,
    runner_arguments,
)
from devices.sections import bounded, choice

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SSH_ERROR_EXIT = 255
COMMAND_NOT_FOUND = 127

# Prints what the device's python can import, without importing the (slow) runtimes.
PYTHON_PROBE = (
    "import importlib.util as u, json, sys\n"
    "def has(name):\n"
    "    try:\n"
    "        return u.find_spec(name) is not None\n"
    "    except ModuleNotFoundError:\n"
    "        return False\n"
    "print(json.dumps({'python': sys.version.split()[0], 'machine': __import__('platform')"
    ".machine(), 'modules': {name: has(name) for name in sys.argv[1:]}}))\n"
)


@dataclass(frozen=True)
class SshSettings:
    host: str
    user: str
    port: int
    key: str
    known_hosts: str
    accept_new_host_key: bool
    connect_timeout_s: float
    command_timeout_s: float

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @classmethod
    def from_profile(cls, profile: TargetProfile) -> SshSettings:
        connection: SshConnection = profile.connection
        return cls(
            host=connection.host, user=connection.user, port=connection.port,
            key=os.path.expanduser(connection.key),
            known_hosts=os.path.expanduser(connection.known_hosts or "~/.ssh/known_hosts"),
            accept_new_host_key=connection.accept_new_host_key,
            connect_timeout_s=connection.connect_timeout_s,
            command_timeout_s=connection.command_timeout_s,
        )


# ssh's own failures (exit 255), recognised by its stderr; checked in this order
SSH_FAILURES: tuple[tuple[str, str], ...] = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED",
     "host key of {destination} does not match the one in {known_hosts}; refusing to connect "
     "(hint: if the device was reinstalled, check its new fingerprint and run "
     "`ssh-keygen -R '{host_entry}' -f {known_hosts}`; otherwise someone may be intercepting)"),
    ("host key is known for",
     "host key of {destination} is not in {known_hosts}; refusing an unknown host "
     "(hint: add it after checking the fingerprint: `ssh-keyscan -p {port} {host} >> "
     "{known_hosts}`, or set connection.accept_new_host_key = true to trust it on first use)"),
    ("Host key verification failed",
     "host key verification of {destination} failed against {known_hosts} "
     "(hint: check the device's fingerprint and the known_hosts entry)"),
    ("Permission denied",
     "authentication refused by {destination} (hint: install your public key on the device "
     "with `ssh-copy-id -p {port} {destination}` or point RPI_KEY at the right private key)"),
    ("Connection refused",
     "{destination} port {port} is unreachable: connection refused (hint: is sshd running on "
     "the device and the port right? RPI_PORT sets it)"),
    ("timed out",
     "{destination} port {port} is unreachable: connection timed out after {timeout:g} s "
     "(hint: is the device on and on this network? check RPI_HOST)"),
    ("No route to host",
     "{destination} is unreachable: no route to host (hint: check RPI_HOST and the network)"),
    ("Network is unreachable",
     "{destination} is unreachable: network unreachable (hint: check the network)"),
    ("Could not resolve hostname",
     "{destination} is unreachable: unknown host name (hint: check RPI_HOST)"),
    # the device went away mid-command; OpenSSH words it by how the socket died
    *((marker, "the connection to {destination} dropped mid-command (hint: did the device "
                "reboot, lose power or network? check it and run again)")
      for marker in ("closed by", "Connection reset by", "Broken pipe")),
)


WORKDIR = re.compile(r"/[A-Za-z0-9_./-]*/edge-bench\.[A-Za-z0-9]{6}")  # mktemp -t's output


class SshTransport:
    name = "ssh"

    def __init__(self, settings: SshSettings, where: str) -> None:
        if not settings.host:
            raise DeviceError(f"{where}: no device host configured (hint: set RPI_HOST=<address> "
                              "or --set target.connection.host=<address>)")
        self.settings = settings
        self.where = where

    def options(self) -> list[str]:
        settings = self.settings
        checking = "accept-new" if settings.accept_new_host_key else "yes"
        options = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={checking}",
                   "-o", f"UserKnownHostsFile={settings.known_hosts}",
                   "-o", f"ConnectTimeout={settings.connect_timeout_s:g}",
                   "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                   "-p", str(settings.port)]
        if settings.key:
            options += ["-i", settings.key, "-o", "IdentitiesOnly=yes"]
        return options

    def command(self, remote_argv: list[str]) -> list[str]:
        # The inner `sh` forks the command and exits with its status, so a command killed by
        # a signal reports 128+N instead of making ssh itself exit 255 (= ssh failed).
        wrapped = ["sh", "-c", '"$@"; exit $?', "sh", *remote_argv]
        return ["ssh", *self.options(), "--", self.settings.destination, shlex.join(wrapped)]

    def run(self, remote_argv: list[str], stdin_path: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        result = _run(self.command(remote_argv), stdin_path,
                      timeout or self.settings.command_timeout_s, self.where,
                      "ssh client not found (hint: apt-get install openssh-client)",
                      shown=remote_argv)
        if result.returncode == SSH_ERROR_EXIT:
            raise self.failure(result.stderr)
        return result

    def failure(self, stderr: str) -> DeviceError:
        settings = self.settings
        host_entry = settings.host if settings.port == 22 else f"[{settings.host}]:{settings.port}"
        facts = {"destination": settings.destination, "host": settings.host,
                 "port": settings.port, "known_hosts": settings.known_hosts,
                 "host_entry": host_entry, "timeout": settings.connect_timeout_s}
        for marker, template in SSH_FAILURES:
            if marker in stderr:
                return DeviceError(f"{self.where}: {template.format(**facts)}")
        return DeviceError(f"{self.where}: ssh to {settings.destination} failed: "
                           f"{stderr.strip()[-1000:]} (hint: try `ssh -p {settings.port} "
                           f"{settings.destination}` by hand)")


class LocalTransport:
    """The device commands in a local `sh`: same quoting, same temp folder, same checks."""

    name = "local"

    def __init__(self, settings: SshSettings, where: str) -> None:
        self.settings = settings
        self.where = where

    def run(self, remote_argv: list[str], stdin_path: Path | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        return _run(["sh", "-c", shlex.join(remote_argv)], stdin_path,
                    timeout or self.settings.command_timeout_s, self.where,
                    "sh not found (hint: this machine needs a POSIX shell)")


TRANSPORTS = {"ssh": SshTransport, "local": LocalTransport}


@dataclass(frozen=True)
class SshConnection:
    transport: str = choice("ssh", *TRANSPORTS)  # "local": commands run in a local shell
    host: str = ""
    user: str = ""
    port: int = bounded(22, 1, 65_535)
    key: str = ""  # private key file; empty = ssh's defaults / agent
    known_hosts: str = ""  # empty = ~/.ssh/known_hosts
    accept_new_host_key: bool = False
    connect_timeout_s: float = bounded(10.0, 0.1)
    command_timeout_s: float = bounded(600.0, 1.0)
    hosts: tuple[str, ...] = ()  # a fleet: one device per `[user@]host[:port]`


@dataclass(frozen=True)
class SshExtra:
    python: tuple[str, ...] = ("python3",)  # the command that runs bench_runner.py
    python_hint: str = "sudo apt install python3"
    emulated: bool = False
    compare_with_host: bool = False  # also run on this machine: are outputs bit-identical?
    machine: str = ""  # a description of the device for the report


def _run(command: list[str], stdin_path: Path | None, timeout: float, where: str,
         missing_hint: str, shown: list[str] | None = None) -> subprocess.CompletedProcess:
    """`shown`: the command as messages may print it (the device side, without ssh's
    options: they name key and known_hosts files)."""
    try:
        if stdin_path is None:
            return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        with open(stdin_path, "rb") as handle:
            result = subprocess.run(command, stdin=handle, capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))
    except (FileNotFoundError, PermissionError) as exc:  # absent, or present but not executable
        raise DeviceError(f"{where}: {missing_hint}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"{where}: device command did not finish within {timeout:g} s: "
                          f"{shlex.join(shown or command)[:200]} (hint: raise connection."
                          "command_timeout_s or lower [profile] runs)") from exc


class SshAdapter(DeviceAdapter):
    name = "ssh"
    Connection = SshConnection
    Extra = SshExtra

    def __init__(self, profile: TargetProfile) -> None:
        super().__init__(profile)
        self.settings = SshSettings.from_profile(profile)
        transport_name = profile.connection.transport
        self.where = (f"{profile.name} ({self.settings.destination}:{self.settings.port})"
                      if transport_name == "ssh" else f"{profile.name} (local shell)")
        self.transport = TRANSPORTS[transport_name](self.settings, self.where)
        self.python = _python_command(profile.extra.python)
        self.workdir: str | None = None
        self.bundle: Bundle | None = None
        self.device_facts: dict[str, Any] = {}

    # --- check -----------------------------------------------------------------------

    def check(self) -> None:
        self.transport.run(["true"], timeout=self.settings.connect_timeout_s + 30)
        modules = RUNTIME_MODULES.get(self.profile.runtime)
        if modules is None:
            raise DeviceError(f"{self.where}: the ssh adapter cannot run runtime "
                              f"{self.profile.runtime!r} (hint: use litert or onnxruntime)")
        result = self.transport.run([*self.python, "-c", PYTHON_PROBE, "numpy", *modules])
        if result.returncode != 0 or not result.stdout.strip():
            hint = self.profile.extra.python_hint
            raise DeviceError(f"{self.where}: no working python3 on the device: "
                              f"`{shlex.join(self.python)}` exited {result.returncode}: "
                              f"{result.stderr.strip()[-500:]} (hint: {hint})")
        try:
            probe = json.loads(result.stdout.strip().splitlines()[-1])
        except json.JSONDecodeError as exc:  # e.g. a login banner or shell rc output
            raise DeviceError(f"{self.where}: the python probe printed no JSON line: "
                              f"{result.stdout.strip()[-300:]!r} (hint: keep the device's shell "
                              "start-up files quiet for non-interactive logins)") from exc
        self.device_facts = {"python": probe["python"], "machine": probe["machine"]}
        if not probe["modules"]["numpy"]:
            raise DeviceError(f"{self.where}: numpy is not installed for the device's python "
                              f"(hint: pip install numpy on the device)")
        if not any(probe["modules"][module] for module in modules):
            package = RUNTIME_PACKAGES[self.profile.runtime]
            raise DeviceError(f"{self.where}: no runtime for {self.profile.artifact_format} "
                              f"models on the device (none of {', '.join(modules)} is "
                              f"importable) (hint: pip install {package} on the device)")

    def supports(self, artifact_format: str, precision: str) -> bool:
        return artifact_format in ("tflite", "onnx") and super().supports(artifact_format,
                                                                          precision)

    # --- deploy ----------------------------------------------------------------------

    def deploy(self, bundle: Bundle) -> None:
        files = {"bench_runner.py": RUNNER_PATH, **bundle_files(bundle)}
        result = self.transport.run(["mktemp", "-d", "-t", "edge-bench.XXXXXX"])
        if result.returncode != 0 or not result.stdout.strip():
            raise DeviceError(f"{self.where}: could not create a working folder with mktemp: "
                              f"{result.stderr.strip()} (hint: is /tmp writable on the device?)")
        workdir = result.stdout.strip().splitlines()[-1]
        if not WORKDIR.fullmatch(workdir) or "/.." in workdir:  # cleanup runs `rm -rf` on it
            raise DeviceError(f"{self.where}: mktemp printed {workdir[:200]!r}, not a folder "
                              "named edge-bench.XXXXXX under an absolute temp path (hint: check "
                              "the device's TMPDIR and shell start-up files)")
        self.workdir = workdir
        self.bundle = bundle
        for name, path in files.items():
            self._upload(path, f"{self.workdir}/{name}")
        self._verify(files)

    def _upload(self, local: Path, remote: str) -> None:
        result = self.transport.run(["sh", "-c", 'cat > "$1"', "sh", remote], stdin_path=local)
        if result.returncode != 0:
            raise DeviceError(f"{self.where}: upload of {local.name} to {remote} failed: "
                              f"{result.stderr.strip()} (hint: is the device's disk full?)")

    def _verify(self, files: dict[str, Path]) -> None:
        remote_paths = [f"{self.workdir}/{name}" for name in files]
        result = self.transport.run(["sha256sum", "--", *remote_paths])
        if result.returncode != 0:
            raise DeviceError(f"{self.where}: sha256sum failed on the device: "
                              f"{result.stderr.strip()} (hint: install coreutils)")
        device_hashes = {}
        for line in result.stdout.splitlines():
            digest, _, path = line.partition("  ")
            device_hashes[path.strip()] = digest.strip()
        for name, path in files.items():
            if device_hashes.get(f"{self.workdir}/{name}") != sha256_file(path):
                raise DeviceError(f"{self.where}: {name} arrived corrupted (sha256 on the device "
                                  f"differs from {path}) (hint: retry; check the link and disk)")

    # --- benchmark -------------------------------------------------------------------

    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport:
        if self.workdir is None or self.bundle is None:
            raise DeviceError(f"{self.where}: benchmark() before deploy() "
                              "(hint: call deploy(bundle) first)")
        arguments = runner_arguments(f"{self.workdir}/{self.bundle.artifact}",
                                     f"{self.workdir}/inputs.npz", settings)
        limit = self.settings.command_timeout_s
        result = self.transport.run(
            under_device_timeout(limit, [*self.python, f"{self.workdir}/bench_runner.py",
                                         *arguments]),
            timeout=limit + KILL_GRACE_S + CLIENT_GRACE_S)
        if result.returncode in TIMEOUT_EXITS:
            raise DeviceError(f"{self.where}: bench_runner.py did not finish within {limit:g} s "
                              "and was stopped on the device (hint: raise "
                              "connection.command_timeout_s or lower [profile] runs)")
        document = parse_runner_output(self.where, result.returncode, result.stdout,
                                       result.stderr)
        emulated = self.profile.extra.emulated
        device = {**self.device_facts, **(document.get("cpu") or {}),
                  "transport": self.transport.name}
        if self.settings.host:
            device["host"] = settings.device_address(self.settings.host)
        if self.profile.extra.machine:
            device["description"] = self.profile.extra.machine
        extra: dict[str, Any] = {}
        if emulated:
            extra["note"] = ("emulated with qemu-user: timings measure the emulator, not a "
                             "Raspberry Pi; outputs are the aarch64 runtime's")
        if self.profile.extra.compare_with_host:
            extra.update(self._compare_with_host(document))
        return report_from_runner(self.profile, self.bundle, document, device, emulated, extra)

    def _compare_with_host(self, document: dict) -> dict[str, Any]:
        """Run the artifact on this x86 host too: are the device's outputs bit-identical?"""
        host = run_runner_locally([sys.executable], self.bundle.artifact_path,
                                  self.bundle.inputs_path,
                                  BenchmarkSettings(warmup=0, runs=1, threads=1),
                                  self.settings.command_timeout_s, f"{self.profile.name} (host)")
        host_digest = host["outputs"]["sha256"]
        device_digest = (document.get("outputs") or {}).get("sha256")
        return {"host_outputs_sha256": host_digest,
                "bit_identical_to_host": host_digest == device_digest}

    # --- cleanup ---------------------------------------------------------------------

    def cleanup(self) -> None:
        if self.workdir is None:
            return
        workdir, self.workdir = self.workdir, None
        try:
            result = self.transport.run([*STOP_AND_REMOVE, workdir])
        except DeviceError as exc:  # the device went away: nothing left to clean from here
            log.warning("%s: could not remove %s: %s", self.where, workdir, exc)
            return
        if result.returncode != 0:
            log.warning("%s: could not remove %s: %s", self.where, workdir, result.stderr)


def _python_command(value: Any) -> list[str]:
    """The device's python command; relative paths (build/emu/...) are project files."""
    parts = [value] if isinstance(value, str) else list(value)
    resolved = []
    for part in parts:
        part = str(part)
        if "/" in part and not part.startswith(("/", "~")):
            part = str(PROJECT_ROOT / part)
        resolved.append(part)
    return resolved


ADAPTER = SshAdapter
