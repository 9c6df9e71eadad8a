"""The ssh adapter against a real OpenSSH sshd on 127.0.0.1 (session fixture `sshd`).

The "device" is this machine reached over real SSH, so deploy, sha256 verification on the
device, the remote runner and cleanup all run for real. Device pythons lacking a runtime
or crashing are real python processes configured by a sitecustomize.py (see below).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from devices.base import BenchmarkSettings, Bundle, DeviceError
from devices.fsutil import sha256_file
from devices.profiles import load_profile
from devices.profiling import profile_target
from devices.registry import create_adapter
from devices.ssh import SshSettings, SshTransport
from tests.contracts import assert_one_report_shape
from tests.devices.timeouts import (
    SLEEPING_RUNNER,
    assert_stopped_at_its_timeout,
    device_python,
    processes_running_from,
)
from tests.system_tools import NEEDS_SSHD

pytestmark = NEEDS_SSHD

SETTINGS = BenchmarkSettings(warmup=2, runs=8, threads=2)


def rpi_profile(server, **changes: str):
    changes.setdefault("extra.python", json.dumps([sys.executable]))
    return load_profile("rpi", server.overrides(**changes), environ={})


@pytest.fixture
def stranger_key(tmp_path: Path) -> Path:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_profile_rpi_through_sshd(sshd, bundle_copy: Path):
    profile = rpi_profile(sshd)
    document = profile_target(profile, bundle_copy, SETTINGS)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    assert document["accuracy"]["top1"] == manifest["metrics"]["artifacts"][
        "model_int8.tflite"]["top1"]
    assert document["target"]["name"] == "rpi"
    assert document["target"]["adapter"] == "ssh"
    assert document["target"]["emulated"] is False
    assert document["target"]["device"]["transport"] == "ssh"
    # a stable hash, not the address: CI uploads reports
    assert document["target"]["device"]["host"] == "sha256:" + hashlib.sha256(
        b"127.0.0.1").hexdigest()[:12]
    assert "127.0.0.1" not in (bundle_copy / "latency_report.json").read_text()
    assert document["runtime"]["threads"] == 2
    assert document["runs"] == {"warmup": 2, "measured": 8}
    assert json.loads((bundle_copy / "latency_report.json").read_text()) == document
    assert_one_report_shape(document)


def test_deploy_verifies_and_cleanup_removes_the_remote_folder(sshd, tiny_bundle: Path):
    adapter = create_adapter(rpi_profile(sshd))
    adapter.check()
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    workdir = Path(adapter.workdir)  # the "device" is this machine: look at it directly
    assert workdir.is_dir() and workdir.name.startswith("edge-bench.")
    assert sha256_file(workdir / "model_int8.tflite") == sha256_file(
        tiny_bundle / "model_int8.tflite")
    assert sorted(path.name for path in workdir.iterdir()) == [
        "bench_runner.py", "inputs.npz", "model_int8.tflite"]
    adapter.cleanup()
    assert not workdir.exists()
    adapter.cleanup()  # safe to call twice


def test_ssh_command_checks_host_keys_and_quotes_arguments(sshd):
    adapter = create_adapter(rpi_profile(sshd))
    command = adapter.transport.command(["echo", "a b", "$(reboot)"])
    assert "StrictHostKeyChecking=yes" in command
    assert "BatchMode=yes" in command
    assert f"UserKnownHostsFile={sshd.known_hosts}" in command
    assert command[-1].endswith(" echo 'a b' '$(reboot)'")
    result = adapter.transport.run(["echo", "a b", "$(reboot)"])
    assert result.stdout == "a b $(reboot)\n"


def test_wrong_host_key_is_refused(sshd, stranger_key: Path, tmp_path: Path):
    other = tmp_path / "known_hosts"
    kind, key = stranger_key.with_suffix(".pub").read_text().split()[:2]
    other.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")  # not the server's key
    adapter = create_adapter(rpi_profile(sshd, **{"connection.known_hosts": str(other)}))
    with pytest.raises(DeviceError, match=r"host key of .* does not match the one in") as info:
        adapter.check()
    assert info.value.exit_code == 3


def test_unknown_host_is_refused_unless_accept_new_is_set(sshd, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    refused = create_adapter(rpi_profile(sshd, **{"connection.known_hosts": str(empty)}))
    with pytest.raises(DeviceError, match=r"is not in .*known_hosts; refusing an unknown host"):
        refused.check()
    accepting = create_adapter(rpi_profile(sshd, **{"connection.known_hosts": str(empty),
                                                     "connection.accept_new_host_key": "true"}))
    assert "StrictHostKeyChecking=accept-new" in accepting.transport.command(["true"])
    accepting.check()
    host_public_key = sshd.host_key.with_suffix(".pub").read_text().split()[1]
    assert host_public_key in empty.read_text()  # trusted on first use, recorded


def test_wrong_client_key_is_refused(sshd, stranger_key: Path):
    adapter = create_adapter(rpi_profile(sshd, **{"connection.key": str(stranger_key)}))
    with pytest.raises(DeviceError, match=r"authentication refused by .*ssh-copy-id"):
        adapter.check()


def test_stopped_server_is_unreachable(start_sshd):
    server = start_sshd()
    adapter = create_adapter(rpi_profile(server))
    adapter.check()  # reachable while it runs
    server.stop()
    with pytest.raises(DeviceError, match=r"port \d+ is unreachable: connection refused"):
        adapter.check()


def test_missing_host_is_a_device_error():
    with pytest.raises(DeviceError, match="no device host configured.*RPI_HOST"):
        create_adapter(load_profile("rpi", environ={}))


def test_no_python_on_the_device(sshd):
    adapter = create_adapter(rpi_profile(sshd, **{"extra.python": '["python3-not-here"]'}))
    with pytest.raises(DeviceError, match=r"no working python3 on the device.*exited 127"):
        adapter.check()


def test_no_numpy_on_the_device(sshd, tmp_path: Path):
    python = device_python(tmp_path, "import sys\nsys.modules['numpy'] = None\n")
    adapter = create_adapter(rpi_profile(sshd, **{"extra.python": python}))
    with pytest.raises(DeviceError, match=r"numpy is not installed.*pip install numpy"):
        adapter.check()


def test_no_runtime_on_the_device(sshd, tmp_path: Path):
    hide = "import sys\nsys.modules['ai_edge_litert'] = None\nsys.modules['tflite_runtime'] = None\n"
    adapter = create_adapter(rpi_profile(sshd, **{"extra.python": device_python(tmp_path, hide)}))
    with pytest.raises(DeviceError, match=r"no runtime for tflite.*pip install ai-edge-litert"):
        adapter.check()


def test_runtime_missing_at_run_time_is_reported_from_the_runner(sshd, tmp_path: Path,
                                                                  tiny_bundle: Path):
    hide = ("import sys\nif sys.argv and sys.argv[0].endswith('bench_runner.py'):\n"
            "    sys.modules['ai_edge_litert'] = None\n    sys.modules['tflite_runtime'] = None\n")
    adapter = create_adapter(rpi_profile(sshd, **{"extra.python": device_python(tmp_path, hide)}))
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"no inference runtime.*hint: pip install "
                                              r"ai-edge-litert numpy"):
            adapter.benchmark(SETTINGS)
    finally:
        adapter.cleanup()


def test_runner_crash_shows_its_stderr(sshd, tmp_path: Path, tiny_bundle: Path):
    crash = ("import sys\nif sys.argv and sys.argv[0].endswith('bench_runner.py'):\n"
             "    import faulthandler, ctypes\n    faulthandler.enable()\n"
             "    ctypes.string_at(0)\n")
    adapter = create_adapter(rpi_profile(sshd, **{"extra.python": device_python(tmp_path, crash)}))
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"(?s)crashed with exit code 139; its stderr:\n"
                                              r".*Segmentation fault"):
            adapter.benchmark(SETTINGS)
    finally:
        adapter.cleanup()


@pytest.mark.parametrize("stderr", [
    "Connection to 127.0.0.1 closed by remote host.", "Connection closed by 127.0.0.1 port 22",
    "Connection reset by 127.0.0.1 port 22", "client_loop: send disconnect: Broken pipe"])
def test_a_connection_that_dies_mid_command_is_one_message(stderr: str):
    """OpenSSH words a device that went away by how its socket died (the fault test of a
    killed sshd met both "closed by" and "reset by"): the user reads one message."""
    profile = load_profile("rpi", environ={"RPI_HOST": "127.0.0.1", "RPI_USER": "pi"})
    transport = SshTransport(SshSettings.from_profile(profile), "rpi (pi@127.0.0.1:22)")
    message = str(transport.failure(stderr))
    assert "the connection to pi@127.0.0.1 dropped mid-command" in message, message


def test_transport_registry_has_ssh_and_local():
    from devices.ssh import TRANSPORTS

    assert TRANSPORTS["ssh"] is SshTransport
    assert set(TRANSPORTS) == {"ssh", "local"}


def test_a_runner_past_its_timeout_is_stopped_on_the_device(sshd, tmp_path: Path,
                                                             tiny_bundle: Path):
    profile = rpi_profile(sshd, **{"extra.python": device_python(tmp_path, SLEEPING_RUNNER),
                                   "connection.command_timeout_s": "3"})
    assert_stopped_at_its_timeout(create_adapter(profile), tiny_bundle, SETTINGS, 3)


def test_sigterm_stops_the_runner_and_removes_the_device_folder(sshd, tmp_path: Path,
                                                               bundle_copy: Path):
    import glob
    import signal
    import subprocess
    import time

    root = Path(__file__).resolve().parent.parent.parent
    dist = bundle_copy.parent
    bundle_copy.rename(dist / "rpi")
    before = set(glob.glob("/tmp/edge-bench.*"))
    overrides = sshd.overrides(**{"extra.python": device_python(tmp_path, SLEEPING_RUNNER)})
    sets = [item for key, value in overrides.items() for item in ("--set", f"target.{key}={value}")]
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "profile", "--target", "rpi",
         "--dist-dir", str(dist), *sets],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(tmp_path)})
    deadline = time.time() + 60
    created: set[str] = set()
    while time.time() < deadline and not created:  # wait until the runner sleeps there
        created = {path for path in set(glob.glob("/tmp/edge-bench.*")) - before
                   if processes_running_from(path)}
        time.sleep(0.2)
    assert created, cli.communicate(timeout=30)
    cli.send_signal(signal.SIGTERM)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr
    for folder in created:
        assert not Path(folder).exists()
        assert processes_running_from(folder) == []


def test_the_address_is_recorded_when_asked(sshd, bundle_copy: Path):
    settings = BenchmarkSettings(warmup=1, runs=2, threads=1, record_device_address=True)
    document = profile_target(rpi_profile(sshd), bundle_copy, settings)
    assert document["target"]["device"]["host"] == "127.0.0.1"
