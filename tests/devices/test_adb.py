"""The adb adapter with the REAL `adb` client against a TEST DOUBLE of the device side.

No phone is reachable here, so tests/devices/data/fake_adb_server.py plays the adb server
and the devices behind it on 127.0.0.1 (ANDROID_ADB_SERVER_PORT): it speaks the adb
smart-socket, shell-v2 and sync protocols, so the adapter's `adb devices` / `adb push` /
`adb shell` calls, exit codes and error messages are the real client's. On that "device"
a second double stands in for benchmark_model: a script that logs how it was called and
prints a recorded benchmark_model output (tests/devices/data/benchmark_model/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devices.base import BenchmarkSettings, Bundle, DeviceError
from devices.profiles import load_profile
from devices.profiling import profile_target
from devices.registry import create_adapter

pytestmark = pytest.mark.adb

DATA = Path(__file__).resolve().parent / "data"
SETTINGS = BenchmarkSettings(warmup=3, runs=20, threads=2)


@pytest.fixture(autouse=True)
def _needs_adb():
    if shutil.which("adb") is None:
        pytest.skip("adb not installed (apt-get install adb)")


@pytest.fixture
def fake_adb(monkeypatch: pytest.MonkeyPatch):
    """`fake_adb("serial=state", ...)` starts the double and points adb at it."""
    processes = []

    def start_server(*devices: str) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        arguments = [sys.executable, str(DATA / "fake_adb_server.py"), "--port", str(port)]
        for device in devices:
            arguments += ["--device", device]
        process = subprocess.Popen(arguments, stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "READY"
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
        return port

    yield start_server
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def fake_benchmark_model(tmp_path: Path) -> tuple[Path, Path]:
    """(binary, call log): a script standing in for benchmark_model on the fake device."""
    log = tmp_path / "benchmark_model_calls.log"
    binary = tmp_path / "benchmark_model"
    binary.write_text(f"""#!/bin/sh
recorded={DATA / "benchmark_model" / "modern_percentiles.txt"}
for argument in "$@"; do
  case "$argument" in
    --graph=*) graph="${{argument#--graph=}}" ;;
    --num_threads=13) echo "ERROR: failed to create 13 threads" >&2; exit 1 ;;
    --enable_op_profiling=true) recorded={DATA / "benchmark_model" / "op_profiling.txt"} ;;
  esac
done
echo "$* | $(grep Cpus_allowed_list /proc/self/status)" >> {log}
[ -f "$graph" ] || {{ echo "ERROR: Could not open '$graph'." >&2; exit 1; }}
cat "$recorded"
""")
    binary.chmod(0o755)
    return binary, log


def phone_profile(tmp_path: Path, binary: Path, serial: str = "", **changes: str):
    device_dir = tmp_path / "device" / "data" / "local" / "tmp"
    device_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"connection.device_dir": str(device_dir), "connection.taskset_mask": "1",
                 **changes}
    environ = {"BENCHMARK_MODEL": str(binary), "ADB_SERIAL": serial}
    return load_profile("phone", overrides, environ=environ)


def test_profile_phone_through_real_adb(fake_adb, fake_benchmark_model, bundle_copy: Path,
                                        tmp_path: Path):
    binary, calls = fake_benchmark_model
    fake_adb("R58M12345=device")
    profile = phone_profile(tmp_path, binary, serial="R58M12345")
    document = profile_target(profile, bundle_copy, SETTINGS)
    # numbers of the recorded output, in ms
    assert document["latency_ms"]["median"] == pytest.approx(0.209)
    assert document["latency_ms"]["mean"] == pytest.approx(0.214675)
    assert document["latency_ms"]["init"] == pytest.approx(12.734)
    assert document["latency_ms"]["first"] == pytest.approx(1.021)
    assert document["latency_ms"]["p90"] is None  # benchmark_model has no p90
    assert document["memory"]["peak_rss_mb"] == pytest.approx(9.05859)
    assert document["runs"] == {"warmup": 3, "measured": 4650}
    assert document["runtime"]["name"] == "benchmark_model"
    assert document["target"]["device"] == {"serial": "R58M12345", "taskset_mask": "1"}
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    assert document["accuracy"] == {"top1": None, "samples": 0, "reference_top1": manifest[
        "metrics"]["artifacts"]["model_int8.tflite"]["top1"]}
    assert document["budget"]["passed"] is True
    # how the real command ran on the "device": arguments and CPU pinning by taskset
    arguments, affinity = calls.read_text().strip().split(" | ")
    assert arguments.split()[1:] == ["--num_threads=2", "--num_runs=20", "--warmup_runs=3"]
    assert arguments.split()[0].endswith("/model_int8.tflite")
    assert affinity.split() == ["Cpus_allowed_list:", "0"]
    # the device folder was removed
    assert list((tmp_path / "device" / "data" / "local" / "tmp").iterdir()) == []


def test_op_profiling_table_reaches_the_report(fake_adb, fake_benchmark_model,
                                               tiny_bundle: Path, tmp_path: Path):
    binary, _ = fake_benchmark_model
    fake_adb("emulator-5554=device")
    adapter = create_adapter(phone_profile(tmp_path, binary))
    adapter.check()
    assert adapter.serial == "emulator-5554"  # the only device, picked automatically
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        report = adapter.benchmark(BenchmarkSettings(warmup=1, runs=5, threads=1,
                                                     op_profiling=True))
    finally:
        adapter.cleanup()
    operators = report.extra["op_profile"]["operators"]
    assert [row["node_type"] for row in operators] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert report.latency_ms["median"] is None  # this recorded run printed no percentiles
    assert report.latency_ms["mean"] == pytest.approx(0.0453)


@pytest.mark.parametrize(
    ("devices", "serial", "message"),
    [
        ((), "", r"no Android device attached"),
        (("R58M1=unauthorized",), "", r"the device is unauthorized.*Allow USB debugging"),
        (("R58M1=offline",), "R58M1", r"the device is offline.*adb kill-server"),
        (("A1=device", "B2=device"), "", r"several devices attached \(A1, B2\).*ADB_SERIAL"),
        (("A1=device",), "Z9", r"device Z9 is not attached; attached: A1"),
    ],
)
def test_device_state_errors(fake_adb, fake_benchmark_model, tmp_path: Path, devices, serial,
                             message):
    fake_adb(*devices)
    adapter = create_adapter(phone_profile(tmp_path, fake_benchmark_model[0], serial=serial))
    with pytest.raises(DeviceError, match=message) as info:
        adapter.check()
    assert info.value.exit_code == 3


def test_missing_benchmark_model_binary(fake_adb, tmp_path: Path):
    fake_adb("A1=device")
    adapter = create_adapter(phone_profile(tmp_path, tmp_path / "nowhere" / "benchmark_model"))
    with pytest.raises(DeviceError, match=r"benchmark_model binary .*nowhere.* does not exist"):
        adapter.check()
    unset = create_adapter(load_profile("phone", environ={}))
    with pytest.raises(DeviceError, match=r"no benchmark_model binary configured.*"
                                          r"BENCHMARK_MODEL="):
        unset.check()


def test_benchmark_model_failure_shows_its_output(fake_adb, fake_benchmark_model,
                                                  tiny_bundle: Path, tmp_path: Path):
    fake_adb("A1=device")
    adapter = create_adapter(phone_profile(tmp_path, fake_benchmark_model[0]))
    adapter.check()
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"(?s)failed with exit code 1; its output:\n"
                                              r".*failed to create 13 threads"):
            adapter.benchmark(BenchmarkSettings(warmup=1, runs=5, threads=13))
    finally:
        adapter.cleanup()


def test_binary_that_cannot_start_on_the_device(fake_adb, tiny_bundle: Path, tmp_path: Path):
    wrong_cpu = tmp_path / "benchmark_model"
    wrong_cpu.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 200)  # not runnable here
    fake_adb("A1=device")
    adapter = create_adapter(phone_profile(tmp_path, wrong_cpu))
    adapter.check()
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"could not be started on the device"):
            adapter.benchmark(SETTINGS)
    finally:
        adapter.cleanup()


def test_adapter_only_supports_tflite(tmp_path: Path):
    adapter = create_adapter(load_profile("phone", environ={}))
    assert adapter.supports("tflite", "int8")
    assert not adapter.supports("onnx", "int8")
