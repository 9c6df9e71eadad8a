"""Shared device-test fixtures: a tiny real bundle (int8 + fp32 TFLite, ONNX, inputs, manifest).

The model is trained for a few epochs on a synthetic 3-class problem so that top-1 is a
real number (well above chance) that the runners must reproduce.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.fsutil import sha256_file
from tests.system_tools import require

IMAGE_SHAPE = (8, 8, 1)
CLASSES = 3
SAMPLES = 96


def synthetic_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k = a bright 4x4 patch at one of three places, plus noise."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, CLASSES, size=count)
    images = generator.normal(0.0, 1.0, size=(count, *IMAGE_SHAPE)).astype(np.float32)
    corners = [(0, 0), (2, 2), (4, 4)]
    for index, label in enumerate(labels):
        row, column = corners[label]
        images[index, row:row + 4, column:column + 4, 0] += 0.6
    return images, labels.astype(np.int64)


def litert_outputs(model_path: Path, images: np.ndarray) -> np.ndarray:
    """Raw outputs of every sample, computed in-process (the reference for the runners)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    if detail["dtype"] == np.int8:
        scale, zero_point = detail["quantization"]
        images = np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)
    rows = []
    for index in range(len(images)):
        interpreter.set_tensor(detail["index"], images[index:index + 1])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(output["index"]).reshape(-1).copy())
    return np.stack(rows)


def _tiny_onnx(path: Path, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(seed)
    weights = generator.normal(size=(int(np.prod(IMAGE_SHAPE)), CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _train_and_convert(root: Path) -> None:
    from devices.tf_env import keras
    from pipeline.conversion.tflite_converter import convert_tflite

    keras.utils.set_random_seed(0)
    train_x, train_y = synthetic_images(600, seed=1)
    model = keras.Sequential([
        keras.layers.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(CLASSES),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train_x, train_y, epochs=4, batch_size=32, verbose=0)

    for precision, file in (("fp32", "model.tflite"), ("int8", "model_int8.tflite")):
        (root / file).write_bytes(convert_tflite(model, precision, train_x[:64]))


def make_bundle(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _train_and_convert(root)
    _tiny_onnx(root / "model.onnx", seed=2)
    images, labels = synthetic_images(SAMPLES, seed=3)
    np.savez(root / "inputs.npz", x=images, y=labels)
    (root / "labels.txt").write_text("top-left\ncentre\nbottom-right\n")
    artifacts = {}
    for name in ("model.tflite", "model_int8.tflite"):
        outputs = litert_outputs(root / name, images)
        artifacts[name] = {"top1": float((outputs.argmax(axis=1) == labels).mean()),
                           "bytes": (root / name).stat().st_size, "format": "tflite",
                           "precision": "int8" if "int8" in name else "fp32"}
    files = [{"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
             for path in sorted(root.iterdir()) if path.is_file()]
    manifest = {"schema": "edge-bundle-manifest/1", "pipeline_version": "test",
                "config_fingerprint": "test", "dataset": {"name": "synthetic"},
                "target": "target", "labels": ["top-left", "centre", "bottom-right"],
                "artifacts": ["model.tflite", "model_int8.tflite", "model.onnx"],
                "input": {"shape": list(IMAGE_SHAPE), "dtype": "float32", "layout": "NHWC",
                          "quantization": {}},
                "output": {"classes": CLASSES, "dtype": "float32", "quantization": {}},
                "files": files, "metrics": {"artifacts": artifacts}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only bundle folder; tests that write into a bundle copy it first."""
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "dist" / "target"
    shutil.copytree(tiny_bundle, target)
    return target


@pytest.fixture(scope="session")
def reference_outputs():
    """`reference_outputs(model_path, images)`: raw outputs computed in-process."""
    return litert_outputs


# --- a real OpenSSH server on 127.0.0.1 -------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def generate_key(path: Path) -> Path:
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


class SshServer:
    """An sshd started with its own config, host key and authorized_keys in a temp folder."""

    def __init__(self, root: Path, client_key: Path) -> None:
        import getpass

        self.root = root
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = getpass.getuser()
        self.client_key = client_key
        self.host_key = generate_key(root / f"host_key_{self.port}")
        self.known_hosts = root / f"known_hosts_{self.port}"
        public = (self.host_key.with_suffix(".pub")).read_text().split()
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {public[0]} {public[1]}\n")
        self.log = root / f"sshd_{self.port}.log"
        self.process = None

    def start(self) -> SshServer:
        import shutil
        import subprocess
        import time

        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        config = self.root / f"sshd_config_{self.port}"
        config.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {self.host}", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            f"PidFile {self.root / f'sshd_{self.port}.pid'}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", f"AllowUsers {self.user}",
            "MaxStartups 50", "LogLevel VERBOSE", "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)],
                                        stdout=subprocess.DEVNULL,
                                        stderr=open(self.log, "ab"))  # noqa: SIM115
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            if self._listening():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()}")

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def overrides(self, **changes: str) -> dict[str, str]:
        """--set style overrides that point an ssh profile at this server."""
        values = {"connection.host": self.host, "connection.port": str(self.port),
                  "connection.user": self.user, "connection.key": str(self.client_key),
                  "connection.known_hosts": str(self.known_hosts),
                  "connection.transport": "ssh"}
        values.update(changes)
        return values


@pytest.fixture(scope="session")
def ssh_root(tmp_path_factory: pytest.TempPathFactory) -> Path:

    require("sshd", "ssh", "ssh-keygen")
    root = tmp_path_factory.mktemp("sshd")
    client_key = generate_key(root / "client_key")
    (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    return root


@pytest.fixture
def start_sshd(ssh_root: Path):
    """`start_sshd()` starts one more sshd (stopped at the end of the test)."""
    servers = []

    def start() -> SshServer:
        servers.append(SshServer(ssh_root, ssh_root / "client_key").start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def sshd(ssh_root: Path):
    """A real OpenSSH sshd on 127.0.0.1 for the whole session."""
    server = SshServer(ssh_root, ssh_root / "client_key").start()
    yield server
    server.stop()


# --- a real adb server with device doubles (tests/devices/data/fake_adbd.py) -------------

FAKE_ADBD = Path(__file__).resolve().parent / "data" / "fake_adbd.py"
DEVICE_DIR = "/data/local/tmp"


class FakeAdbd:
    """TEST DOUBLE of a phone: fake_adbd.py on 127.0.0.1, its /data/local/tmp = `sandbox`."""

    def __init__(self, root: Path, mode: str = "device", features: str = "shell_v2,cmd",
                 corrupt_pushes: bool = False) -> None:
        import subprocess
        import sys
        import tempfile

        self.mode = mode
        self.sandbox = Path(tempfile.mkdtemp(prefix="data_local_tmp.", dir=root))
        self.process = subprocess.Popen(
            [sys.executable, str(FAKE_ADBD), "--mode", mode, "--features", features,
             "--map", f"{DEVICE_DIR}={self.sandbox}",
             *(["--corrupt-pushes"] if corrupt_pushes else [])],
            stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline().split()
        if ready[:1] != ["READY"]:
            self.stop()
            raise RuntimeError(f"fake_adbd.py did not start (said {ready!r})")
        self.serial = f"127.0.0.1:{ready[1]}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process.stdout.close()


class AdbServer:
    """A REAL adb server (`adb -P PORT start-server`) with its keys under `home`."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.environment = {**os.environ, "HOME": str(home),
                            "ANDROID_ADB_SERVER_PORT": str(self.port)}
        self.pending = []  # `adb connect` clients still waiting for an offline device

    def run(self, *arguments: str, timeout: float = 30):
        import subprocess

        return subprocess.run(["adb", "-P", str(self.port), *arguments], capture_output=True,
                              text=True, env=self.environment, stdin=subprocess.DEVNULL,
                              timeout=timeout)

    def start(self) -> AdbServer:
        result = self.run("start-server")
        if result.returncode != 0:
            raise RuntimeError(f"adb start-server failed: {result.stderr}")
        return self

    def devices(self) -> dict[str, str]:
        lines = self.run("devices").stdout.splitlines()[1:]
        return dict(line.split("\t", 1) for line in lines if "\t" in line)

    def connect(self, device: FakeAdbd) -> str:
        """`adb connect` the double and wait until the server lists it in its state."""
        import subprocess
        import time

        if device.mode == "offline":  # connect waits ~10 s for a CNXN that never comes
            self.pending.append(subprocess.Popen(
                ["adb", "-P", str(self.port), "connect", device.serial], env=self.environment,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        else:
            self.run("connect", device.serial)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.devices().get(device.serial) == device.mode:
                return device.serial
            time.sleep(0.1)
        raise RuntimeError(f"{device.serial} never became {device.mode!r}: {self.devices()}")

    def stop(self) -> None:
        self.run("kill-server")
        for client in self.pending:
            try:
                client.wait(timeout=15)
            except Exception:  # noqa: BLE001 - the server is gone; don't leave the client
                client.terminate()
                client.wait(timeout=10)


@pytest.fixture(scope="session")
def adb_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME of the test adb servers: the adb key pair is generated here once."""
    require("adb")
    return tmp_path_factory.mktemp("adb_home")


@pytest.fixture
def adb_server(adb_home: Path, monkeypatch: pytest.MonkeyPatch):
    """A real adb server of this test; the adapter's `adb` calls reach it through
    ANDROID_ADB_SERVER_PORT. Killed (`adb kill-server`) at the end of the test."""
    server = AdbServer(adb_home).start()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    yield server
    server.stop()


@pytest.fixture
def fake_phone(adb_server: AdbServer, tmp_path: Path):
    """`fake_phone(mode="device", features="shell_v2,cmd", corrupt_pushes=False)`: start a
    device double, connect it to the real adb server, return it (serial 127.0.0.1:PORT)."""
    devices = []

    def start(mode: str = "device", features: str = "shell_v2,cmd",
              corrupt_pushes: bool = False) -> FakeAdbd:
        devices.append(FakeAdbd(tmp_path, mode, features, corrupt_pushes))
        adb_server.connect(devices[-1])
        return devices[-1]

    yield start
    for device in devices:
        device.stop()


# --- a benchmark_model stand-in for the phone tests ------------------------------------
DATA = Path(__file__).resolve().parent / "data"
BENCHMARK_MODEL_DATA = DATA / "benchmark_model"


@pytest.fixture(scope="session")
def benchmark_model_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the benchmark_model double keeps the outputs it computed, by sha256 of model
    and input, so each sample costs one LiteRT run per test session."""
    return tmp_path_factory.mktemp("benchmark_model_outputs")


@pytest.fixture
def fake_benchmark_model(tmp_path: Path, benchmark_model_outputs: Path) -> tuple[Path, Path]:
    """(binary, call log): TEST DOUBLE of benchmark_model, a script run on the fake phone.

    A timing run prints a recorded benchmark_model output (data/benchmark_model/). A run
    with `--input_layer_value_files` and `--output_filepath` (the accuracy pass) writes the
    output LiteRT computes for that input (data/litert_output.py) and prints the
    `count=1 curr=...` lines of one warm-up and one timed run; the timed run takes
    300 + N microseconds for sample file sNNNNN.bin, so tests know every per-sample time.
    """
    log = tmp_path / "benchmark_model_calls.log"
    binary = tmp_path / "benchmark_model"
    binary.write_text(f"""#!/bin/sh
recorded={BENCHMARK_MODEL_DATA / "modern_percentiles.txt"}
input=""; output=""
for argument in "$@"; do
  case "$argument" in
    --graph=*) graph="${{argument#--graph=}}" ;;
    --num_threads=13) echo "ERROR: failed to create 13 threads" >&2; exit 1 ;;
    --enable_op_profiling=true) recorded={BENCHMARK_MODEL_DATA / "op_profiling.txt"} ;;
    --input_layer_value_files=*) input="${{argument#*:}}" ;;
    --output_filepath=*) output="${{argument#--output_filepath=}}" ;;
  esac
done
[ -f "$graph" ] || {{ echo "ERROR: Could not open '$graph'." >&2; exit 1; }}
if [ -n "$output" ]; then
  echo "sample $* | $(grep Cpus_allowed_list /proc/self/status)" >> {log}.samples
  key=$(cat "$graph" "$input" | sha256sum | cut -c1-64)
  cached={benchmark_model_outputs}/$key
  [ -f "$cached" ] || {sys.executable} {DATA / "litert_output.py"} "$graph" "$input" "$cached" \
    || exit 1
  cp "$cached" "$output"
  index=$(basename "$input" .bin | sed 's/^s0*//'); index=${{index:-0}}
  printf 'count=1 curr=%d\n\ncount=1 curr=%d\n' 900 $((300 + index))
  exit 0
fi
echo "$* | $(grep Cpus_allowed_list /proc/self/status)" >> {log}
cat "$recorded"
""")
    binary.chmod(0o755)
    return binary, log
