"""The adb adapter through the REAL `adb` client and the REAL adb server, against a DEVICE DOUBLE.

No phone is reachable here. What is real: the `adb` client the adapter runs, the adb server
it talks to (started per test with `adb -P PORT start-server`, its keys in a temp HOME) and
the adb transport protocol between that server and the device (`adb connect 127.0.0.1:PORT`).
What is a double:

* the phone: tests/devices/data/fake_adbd.py speaks the device side of the adb protocol
  (CNXN/AUTH handshake, streams, shell v2 with exit codes or legacy raw shell, sync push) and
  runs shell commands in a real /bin/sh, with the device folder /data/local/tmp mapped onto a
  temp folder (`FakeAdbd.sandbox`) — so mktemp, sha256sum, taskset, chmod and rm are real;
* benchmark_model on the phone: a shell script (pushed like the real binary) that logs how
  it was called and prints a recorded benchmark_model output (data/benchmark_model/); for
  the accuracy pass it writes the output LiteRT computes for the input file it is given
  (data/litert_output.py), so the phone's top-1 is a real model's on the real samples;
* only for the USB-only "no permissions" state: a stand-in adb SERVER
  (tests/devices/data/fake_adb_server.py), because no TCP device can produce that state.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devices.adb import PHONE_MISSING
from devices.base import BenchmarkSettings, Bundle, DeviceError
from devices.bench_runner import parse_cpuinfo
from devices.profiles import load_profile
from devices.profiling import profile_target
from devices.registry import create_adapter
from tests.contracts import assert_one_report_shape
from tests.devices.conftest import SAMPLES
from tests.devices.timeouts import assert_stopped_at_its_timeout
from tests.system_tools import NEEDS_ADB

pytestmark = NEEDS_ADB

DATA = Path(__file__).resolve().parent / "data"
SETTINGS = BenchmarkSettings(warmup=3, runs=20, threads=2)
LEGACY_ADBD = ""  # no features: no shell_v2, so the adapter's exit-code marker is used


def phone_profile(binary: Path, serial: str = "", **changes: str):
    """The shipped `phone` profile (device_dir /data/local/tmp) with CPU 0 pinning."""
    overrides = {"connection.taskset_mask": "1", **changes}
    environ = {"BENCHMARK_MODEL": str(binary), "ADB_SERIAL": serial}
    return load_profile("phone", overrides, environ=environ)


def test_profile_phone_through_real_adb_server(fake_phone, fake_benchmark_model,
                                               bundle_copy: Path):
    binary, calls = fake_benchmark_model
    phone = fake_phone()
    document = profile_target(phone_profile(binary, serial=phone.serial), bundle_copy, SETTINGS)
    # numbers of the recorded output, in ms
    assert document["latency_ms"]["median"] == pytest.approx(0.209)
    assert document["latency_ms"]["mean"] == pytest.approx(0.214675)
    assert document["latency_ms"]["init"] == pytest.approx(12.734)
    assert document["latency_ms"]["first"] == pytest.approx(1.021)
    assert document["latency_ms"]["warmup_mean"] == pytest.approx(0.228204)
    assert document["latency_ms"]["p95"] == pytest.approx(0.251)
    assert document["memory"]["init_rss_mb"] == pytest.approx(6.86719)
    assert document["memory"]["peak_rss_mb"] == pytest.approx(9.05859)
    assert document["runs"] == {"warmup": 3, "measured": 4650}
    assert document["runtime"]["name"] == "benchmark_model"
    assert document["runtime"]["delegate"] == "XNNPACK"  # from benchmark_model's log
    # p90 and p99, which benchmark_model does not print, come from the accuracy pass: one
    # warm run per bundled sample, 300 + N microseconds for sample N in the double
    per_sample = (300 + np.arange(SAMPLES)) / 1000.0
    assert document["runs_ms"] == pytest.approx(per_sample.tolist())
    assert document["latency_ms"]["p90"] == pytest.approx(np.percentile(per_sample, 90))
    assert document["latency_ms"]["p99"] == pytest.approx(np.percentile(per_sample, 99))
    assert document["extra"]["latency_sources"]["p90"].startswith("runs_ms")
    assert document["extra"]["latency_sources"]["median"] == "benchmark_model"
    # the phone's top-1 is measured on every bundled sample and equals the validated one
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    validated = manifest["metrics"]["artifacts"]["model_int8.tflite"]["top1"]
    assert document["accuracy"] == {"top1": validated, "samples": SAMPLES,
                                    "reference_top1": validated}
    assert 0.5 < validated < 1.0  # a real, imperfect model: the equality is not trivial
    assert document["missing"]["ops"].startswith("not asked for")
    assert_one_report_shape(document)
    device = document["target"]["device"]
    assert {key: device.pop(key) for key in ("serial", "taskset_mask")} == {
        "serial": SETTINGS.device_address(phone.serial), "taskset_mask": "1"}
    assert phone.serial not in (bundle_copy / "latency_report.json").read_text()
    # the rest is the "phone's" own /proc/cpuinfo (the double runs commands on this machine)
    assert device == parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert document["budget"]["passed"] is True
    # how the command ran on the "phone": in the mktemp folder under /data/local/tmp (the
    # sandbox), with the configured arguments, pinned to CPU 0 by the real taskset
    arguments, affinity = calls.read_text().strip().split(" | ")
    graph, *rest = arguments.split()
    assert rest == ["--num_threads=2", "--num_runs=20", "--warmup_runs=3"]
    graph_path = Path(graph.removeprefix("--graph="))
    assert graph_path.name == "model_int8.tflite"
    assert graph_path.parent.parent == phone.sandbox
    assert graph_path.parent.name.startswith("edge-bench.")
    assert affinity.split() == ["Cpus_allowed_list:", "0"]
    # the accuracy pass: one run per sample file, pinned like the timing run
    sample_calls = Path(f"{calls}.samples").read_text().splitlines()
    assert len(sample_calls) == SAMPLES
    arguments, affinity = sample_calls[17].removeprefix("sample ").split(" | ")
    assert arguments.split()[1:] == [
        "--num_threads=2", "--input_layer=input", "--input_layer_shape=1,8,8,1", "--num_runs=1",
        "--warmup_runs=1", "--min_secs=0", "--warmup_min_secs=0",
        "--input_layer_value_files=input:samples/s00017.bin", "--output_filepath=out.bin"]
    assert affinity.split() == ["Cpus_allowed_list:", "0"]
    # the working folder was removed from the device
    assert list(phone.sandbox.iterdir()) == []


@pytest.mark.parametrize(("limit_ms", "passed"), [(15.0, True), (0.3, False)])
def test_a_p90_budget_on_the_phone_is_judged(fake_phone, fake_benchmark_model,
                                             bundle_copy: Path, limit_ms: float, passed: bool):
    """benchmark_model prints no p90; the per-sample runs give it (0.3855 ms in the double)."""
    phone = fake_phone()
    profile = phone_profile(fake_benchmark_model[0], serial=phone.serial,
                            **{"budget.latency_stat": "p90", "budget.latency_ms": str(limit_ms)})
    document = profile_target(profile, bundle_copy, SETTINGS)
    p90 = document["latency_ms"]["p90"]
    assert p90 == pytest.approx(np.percentile((300 + np.arange(SAMPLES)) / 1000.0, 90))
    assert document["budget"]["passed"] is passed
    assert document["budget"]["violations"] == ([] if passed else [
        f"latency p90 (ms): {p90:.3f} breaks <= {limit_ms:g}"])


def test_pushed_files_are_byte_identical_on_the_device(fake_phone, fake_benchmark_model,
                                                       tiny_bundle: Path):
    phone = fake_phone()
    adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
    adapter.check()
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        assert adapter.workdir.startswith("/data/local/tmp/edge-bench.")  # device paths only
        on_device = phone.sandbox / adapter.workdir.rsplit("/", 1)[1]
        assert (on_device / "model_int8.tflite").read_bytes() == (
            tiny_bundle / "model_int8.tflite").read_bytes()
        assert (on_device / "benchmark_model").stat().st_mode & 0o777 == 0o755
    finally:
        adapter.cleanup()
    assert not on_device.exists()


def test_upload_corrupted_on_the_way_is_refused(fake_phone, fake_benchmark_model,
                                                tiny_bundle: Path):
    """The double flips a bit in every pushed file; the real sha256sum on the device sees it."""
    phone = fake_phone(corrupt_pushes=True)
    adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
    adapter.check()
    try:
        with pytest.raises(DeviceError, match=r"arrived corrupted \(sha256 on the device "
                                              r"differs\)"):
            adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    finally:
        adapter.cleanup()
    assert list(phone.sandbox.iterdir()) == []


def test_op_profiling_table_reaches_the_report(fake_phone, fake_benchmark_model,
                                               tiny_bundle: Path):
    phone = fake_phone()
    adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
    adapter.check()
    assert adapter.serial == phone.serial  # the only device, picked automatically
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        report = adapter.benchmark(BenchmarkSettings(warmup=1, runs=5, threads=1,
                                                     op_profiling=True))
    finally:
        adapter.cleanup()
    assert [row["type"] for row in report.ops] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert report.ops[0]["ms"] > 0 and report.ops[0]["instructions"] is None
    assert sum(row["share"] for row in report.ops) == pytest.approx(1.0, abs=0.01)
    assert report.latency_ms["mean"] == pytest.approx(0.0453)
    # this release printed no percentiles: all four come from the per-sample runs
    assert report.latency_ms["median"] == pytest.approx(np.median(report.runs_ms))
    assert report.extra["latency_sources"]["median"].startswith("runs_ms")
    assert report.to_dict()["missing"] == {key: PHONE_MISSING[key] for key in (
        "memory.arena_bytes", "memory.flash_bytes", "instructions", "runtime.version")}


@pytest.mark.parametrize("features", ["shell_v2,cmd", LEGACY_ADBD], ids=["shell_v2", "legacy"])
def test_exit_codes_and_output_of_device_commands(fake_phone, fake_benchmark_model,
                                                  tiny_bundle: Path, features: str):
    """shell v2 carries the exit code in the protocol; a legacy adbd drops it, and the
    adapter's echoed exit marker must recover it."""
    fake_phone(features=features)
    adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
    adapter.check()
    status, stdout, stderr = adapter.shell(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert status == 7
    assert "out" in stdout
    assert "err" in (stderr if features else stdout)  # legacy shell merges the streams
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"(?s)failed with exit code 1; its output:\n"
                                              r".*failed to create 13 threads"):
            adapter.benchmark(BenchmarkSettings(warmup=1, runs=5, threads=13))
    finally:
        adapter.cleanup()


@pytest.mark.parametrize(
    ("modes", "serial", "message"),
    [
        ((), "", r"no Android device attached"),
        (("unauthorized",), "", r"the device is unauthorized.*Allow USB debugging"),
        (("offline",), "", r"the device is offline.*adb kill-server"),
        (("recovery",), "", r"the device is in recovery mode.*reboot it into Android"),
        (("device", "device"), "", r"several devices attached \(127\.0\.0\.1:\d+, "
                                   r"127\.0\.0\.1:\d+\).*ADB_SERIAL"),
        (("device",), "emulator-5554", r"device emulator-5554 is not attached; attached: "
                                       r"127\.0\.0\.1:\d+"),
    ],
)
def test_device_state_errors(fake_phone, fake_benchmark_model, modes, serial, message):
    """The states come from the real adb server: the double answers CNXN with another banner
    state, demands AUTH and rejects the server's key (unauthorized), or never answers
    (offline)."""
    for mode in modes:
        fake_phone(mode=mode)
    adapter = create_adapter(phone_profile(fake_benchmark_model[0], serial=serial))
    with pytest.raises(DeviceError, match=message) as info:
        adapter.check()
    assert info.value.exit_code == 3


def test_no_permissions_usb_state(fake_benchmark_model, monkeypatch: pytest.MonkeyPatch,
                                  adb_home: Path):
    """USB-only state: the adb SERVER here is the stand-in fake_adb_server.py (a TCP device
    cannot be "no permissions"); it lists the device with the real server's text."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(DATA / "fake_adb_server.py"), "--port",
                               str(port), "--device", "R58M1=no-permissions"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "READY"
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
        adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
        with pytest.raises(DeviceError, match=r"R58M1\): the device cannot be opened: no "
                                              r"permissions.*udev rule"):
            adapter.check()
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


def test_device_that_disappears_after_the_check(adb_server, fake_phone, fake_benchmark_model,
                                                tiny_bundle: Path):
    """The real server keeps a vanished TCP device as `offline` (it retries the connection);
    the adapter's `adb shell` must then fail with the offline explanation."""
    phone = fake_phone()
    adapter = create_adapter(phone_profile(fake_benchmark_model[0]))
    adapter.check()
    phone.stop()  # the phone goes away
    deadline = time.monotonic() + 20
    while adb_server.devices().get(phone.serial) != "offline" and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(DeviceError, match=r"\(127\.0\.0\.1:\d+\): the device is offline"):
        adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))


def test_device_folder_that_cannot_be_created(fake_phone, fake_benchmark_model,
                                              tiny_bundle: Path):
    fake_phone()
    adapter = create_adapter(phone_profile(fake_benchmark_model[0],
                                           **{"connection.device_dir": "/data/local/tmp/no"}))
    adapter.check()
    with pytest.raises(DeviceError, match=r"could not create a folder in /data/local/tmp/no: "
                                          r".*hint: is /data/local/tmp/no writable"):
        adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))


def test_missing_benchmark_model_binary(fake_phone, tmp_path: Path):
    fake_phone()
    adapter = create_adapter(phone_profile(tmp_path / "nowhere" / "benchmark_model"))
    with pytest.raises(DeviceError, match=r"benchmark_model binary .*nowhere.* does not exist"):
        adapter.check()
    unset = create_adapter(load_profile("phone", environ={}))
    with pytest.raises(DeviceError, match=r"no benchmark_model binary configured.*"
                                          r"BENCHMARK_MODEL="):
        unset.check()


def test_binary_that_cannot_start_on_the_device(fake_phone, tiny_bundle: Path, tmp_path: Path):
    wrong_cpu = tmp_path / "benchmark_model"
    wrong_cpu.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 200)  # not runnable here
    fake_phone()
    adapter = create_adapter(phone_profile(wrong_cpu))
    adapter.check()
    adapter.deploy(Bundle(root=tiny_bundle, artifact="model_int8.tflite"))
    try:
        with pytest.raises(DeviceError, match=r"could not be started on the device"):
            adapter.benchmark(SETTINGS)
    finally:
        adapter.cleanup()


def test_adapter_only_supports_tflite():
    adapter = create_adapter(load_profile("phone", environ={}))
    assert adapter.supports("tflite", "int8")
    assert not adapter.supports("onnx", "int8")


def test_a_benchmark_past_its_timeout_is_stopped_on_the_phone(fake_phone, tmp_path: Path,
                                                              tiny_bundle: Path):
    from devices.registry import create_adapter

    hanging = tmp_path / "benchmark_model"
    hanging.write_text("#!/bin/sh\nsleep 120\n")  # TEST DOUBLE: a benchmark_model that hangs
    hanging.chmod(0o755)
    phone = fake_phone()
    adapter = create_adapter(phone_profile(hanging, serial=phone.serial,
                                           **{"connection.command_timeout_s": "3"}))
    assert_stopped_at_its_timeout(adapter, tiny_bundle, SETTINGS, 3)
