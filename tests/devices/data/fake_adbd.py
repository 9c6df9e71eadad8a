"""TEST DOUBLE: a fake Android device (`adbd`) on 127.0.0.1 for the REAL adb server.

No phone is reachable here, so this process plays the device end of the adb transport a real
`adb` server uses for TCP devices (`adb connect 127.0.0.1:PORT`). Everything on the host side
is real: the `adb` client, the `adb` server and the adb wire protocol between them and us.

What it speaks (AOSP adb protocol.txt, SYNC.TXT, shell_protocol.h):

* transport messages: a 24-byte little-endian header (command, arg0, arg1, data length, data
  checksum, magic = command ^ 0xffffffff) followed by the data;
* CNXN handshake: answered with a CNXN carrying a "device::" banner (--mode recovery,
  bootloader or sideload put that state in the banner instead); with --mode unauthorized
  the double asks for AUTH instead and rejects every signature, so the server reports the
  device as `unauthorized` (as a phone that never got its "Allow USB debugging" prompt
  accepted); with --mode offline it never answers, so the device stays `offline`;
* streams: OPEN / OKAY / WRTE / CLSE, one WRTE in flight per stream (the peer's OKAY is the
  flow-control ack);
* services: `shell:CMD` (raw, output only, like adbd before Android 7) and `shell,v2,...:CMD`
  (shell protocol v2: 1-byte id + 4-byte length packets, with the exit code), advertised only
  with the `shell_v2` feature (--features); `sync:` with STAT, LIST, SEND/DATA/DONE, RECV, QUIT
  (--corrupt-pushes flips a bit in every pushed file, as a bad cable would).

The device filesystem: commands run in a real `/bin/sh` on this machine (so `mktemp`,
`sha256sum`, `taskset`, `chmod`, `rm` are the real tools), and every --map DEVICE=HOST pair
(e.g. /data/local/tmp=/tmp/x/device) maps a device folder onto a host folder: the device path
is rewritten to the host path in shell command lines and sync paths, and back in shell output,
so the client only ever sees device paths. The mapping is textual: a command that assembles
a device path from pieces (`cd /data/local; ls tmp`) escapes it, and commands run with this
machine's user and tools, not Android's toybox.

    python3 fake_adbd.py --map /data/local/tmp=/tmp/sandbox   # prints "READY <port>"
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import stat
import struct
import subprocess
import sys
import threading

A_SYNC, A_CNXN, A_AUTH = 0x434E5953, 0x4E584E43, 0x48545541
A_OPEN, A_OKAY, A_CLSE, A_WRTE = 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257
A_VERSION = 0x01000001  # >= this version: the data checksum is not checked
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
HEADER = struct.Struct("<6I")
BANNER_STATES = ("device", "bootloader", "recovery", "sideload")  # banner prefix = state

SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 1, 2, 3  # shell protocol v2 packet ids
SYNC_CHUNK = 64 * 1024
ACK_TIMEOUT_S = 60.0


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the adb server closed the connection")
        data += chunk
    return bytes(data)


class PathMap:
    """Device folder <-> host folder rewriting (longest device prefix first)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = sorted(((device.rstrip("/"), host.rstrip("/")) for device, host in pairs),
                            key=lambda pair: -len(pair[0]))

    def to_host(self, text: str) -> str:
        for device, host in self.pairs:
            text = text.replace(device, host)
        return text

    def to_device(self, data: bytes) -> bytes:
        for device, host in self.pairs:
            data = data.replace(host.encode(), device.encode())
        return data


class Stream:
    """One adb stream: what the server writes arrives in `inbound`, our writes wait for acks."""

    def __init__(self, transport: Transport, local_id: int, remote_id: int) -> None:
        self.transport = transport
        self.local_id = local_id
        self.remote_id = remote_id
        self.inbound: queue.Queue[bytes | None] = queue.Queue()
        self.buffer = b""
        self.acked = threading.Event()
        self.closed = threading.Event()

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.transport.max_payload):
            if self.closed.is_set():
                raise ConnectionError("stream closed by the adb server")
            self.acked.clear()
            self.transport.send(A_WRTE, self.local_id, self.remote_id,
                                data[start:start + self.transport.max_payload])
            if not self.acked.wait(ACK_TIMEOUT_S) and not self.closed.is_set():
                raise ConnectionError("the adb server did not acknowledge a WRTE")

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.inbound.get()
            if chunk is None:
                raise ConnectionError("stream closed by the adb server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.transport.send(A_CLSE, self.local_id, self.remote_id)
            self.transport.forget(self.local_id)


class Transport:
    """The device end of one TCP connection from the adb server."""

    def __init__(self, connection: socket.socket, device: FakeDevice) -> None:
        self.connection = connection
        self.device = device
        self.max_payload = 4096
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                             command ^ 0xFFFFFFFF)
        with self.send_lock:
            self.connection.sendall(header + data)

    def forget(self, local_id: int) -> None:
        self.streams.pop(local_id, None)

    def run(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _, magic = HEADER.unpack(
                    receive_exactly(self.connection, HEADER.size))
                if magic != command ^ 0xFFFFFFFF:
                    raise ConnectionError(f"bad magic in message {command:#x}")
                self.dispatch(command, arg0, arg1, receive_exactly(self.connection, length))
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.closed.set()
                stream.acked.set()
                stream.inbound.put(None)
            self.connection.close()

    def dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            self.device.on_connect(self)
        elif command == A_AUTH:
            self.device.on_auth(self, arg0)
        elif command == A_OPEN:
            self.open_stream(arg0, data.rstrip(b"\0").decode())
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is not None:
                self.send(A_OKAY, stream.local_id, stream.remote_id)
                stream.inbound.put(data)
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.acked.set()
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.closed.set()
                stream.acked.set()
                stream.inbound.put(None)

    def open_stream(self, remote_id: int, destination: str) -> None:
        service = self.device.service_for(destination)
        if service is None:  # refused: CLSE with local id 0
            self.send(A_CLSE, 0, remote_id)
            return
        local_id, self.next_id = self.next_id, self.next_id + 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id)
        threading.Thread(target=self._serve, args=(service, stream, destination),
                         daemon=True).start()

    @staticmethod
    def _serve(service, stream: Stream, destination: str) -> None:
        try:
            service(stream, destination)
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass


class FakeDevice:
    def __init__(self, mode: str, features: str, paths: PathMap, serial_name: str,
                 corrupt_pushes: bool = False) -> None:
        self.mode = mode
        self.corrupt_pushes = corrupt_pushes
        self.features = [feature for feature in features.split(",") if feature]
        self.paths = paths
        state = mode if mode in BANNER_STATES else "device"
        self.banner = (f"{state}::ro.product.name={serial_name};ro.product.model={serial_name};"
                       f"ro.product.device={serial_name};features={','.join(self.features)}")

    # --- handshake ---------------------------------------------------------------------

    def on_connect(self, transport: Transport) -> None:
        if self.mode == "offline":
            return  # never answer: the server keeps the device offline
        if self.mode == "unauthorized":
            transport.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            return
        transport.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.banner.encode())

    def on_auth(self, transport: Transport, auth_type: int) -> None:
        if self.mode != "unauthorized":
            return
        if auth_type == AUTH_SIGNATURE:  # reject every key the server signs with
            transport.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
        # AUTH_RSAPUBLICKEY: a phone now shows "Allow USB debugging?"; nobody taps "allow"

    # --- services ----------------------------------------------------------------------

    def service_for(self, destination: str):
        if destination.startswith("shell"):
            options = destination.partition(":")[0].split(",")[1:]
            if "v2" in options and "shell_v2" not in self.features:
                return None
            return self.shell
        if destination == "sync:":
            return self.sync
        return None

    def shell(self, stream: Stream, destination: str) -> None:
        header, _, command = destination.partition(":")
        if not command:
            stream.write(b"interactive shells are not supported by the fake adbd\n")
            return
        version_two = "v2" in header.split(",")
        # raw shell (no v2): one output stream in write order, no exit code, like old adbd
        result = subprocess.run(["/bin/sh", "-c", self.paths.to_host(command)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if version_two else subprocess.STDOUT)
        stdout = self.paths.to_device(result.stdout)
        if not version_two:
            stream.write(stdout)
            return
        stderr = self.paths.to_device(result.stderr)
        packets = b"".join(struct.pack("<BI", stream_id, len(data)) + data
                           for stream_id, data in ((SHELL_STDOUT, stdout), (SHELL_STDERR, stderr))
                           if data)
        stream.write(packets + struct.pack("<BIB", SHELL_EXIT, 1, result.returncode & 0xFF))

    def sync(self, stream: Stream, destination: str) -> None:
        handlers = {b"STAT": self._stat, b"LIST": self._list, b"SEND": self._send,
                    b"RECV": self._receive}
        while True:
            request, length = struct.unpack("<4sI", stream.read_exactly(8))
            if request == b"QUIT":
                return
            path = stream.read_exactly(length).decode()
            handler = handlers.get(request)
            if handler is None:
                self._fail(stream, f"unsupported sync request {request!r}")
                return
            handler(stream, path)

    @staticmethod
    def _fail(stream: Stream, message: str) -> None:
        encoded = message.encode()
        stream.write(b"FAIL" + struct.pack("<I", len(encoded)) + encoded)

    def _stat(self, stream: Stream, path: str) -> None:
        try:
            info = os.lstat(self.paths.to_host(path))
            values = (info.st_mode, info.st_size & 0xFFFFFFFF, int(info.st_mtime))
        except OSError:
            values = (0, 0, 0)
        stream.write(b"STAT" + struct.pack("<III", *values))

    def _list(self, stream: Stream, path: str) -> None:
        folder = self.paths.to_host(path)
        entries = b""
        for name in (sorted(os.listdir(folder)) if os.path.isdir(folder) else []):
            info = os.lstat(os.path.join(folder, name))
            encoded = name.encode()
            entries += b"DENT" + struct.pack("<IIII", info.st_mode, info.st_size & 0xFFFFFFFF,
                                             int(info.st_mtime), len(encoded)) + encoded
        stream.write(entries + b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))

    def _send(self, stream: Stream, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        chunks = []
        while True:
            request, value = struct.unpack("<4sI", stream.read_exactly(8))
            if request == b"DATA":
                chunks.append(stream.read_exactly(value))
            elif request == b"DONE":
                break
            else:
                raise ConnectionError(f"unexpected sync request {request!r} during SEND")
        host_path = self.paths.to_host(path)
        content = b"".join(chunks)
        if self.corrupt_pushes and content:  # a flipped bit, as a bad cable would cause
            content = bytes([content[0] ^ 1]) + content[1:]
        try:
            os.makedirs(os.path.dirname(host_path) or ".", exist_ok=True)  # as adbd's mkdirs
            with open(host_path, "wb") as handle:
                handle.write(content)
            os.chmod(host_path, stat.S_IMODE(int(mode)))
        except OSError as exc:
            self._fail(stream, f"couldn't create file: {exc.strerror}")
            return
        stream.write(b"OKAY" + struct.pack("<I", 0))

    def _receive(self, stream: Stream, path: str) -> None:
        try:
            with open(self.paths.to_host(path), "rb") as handle:
                data = handle.read()
        except OSError as exc:
            self._fail(stream, exc.strerror or "read failed")
            return
        packets = b"".join(b"DATA" + struct.pack("<I", len(data[start:start + SYNC_CHUNK]))
                           + data[start:start + SYNC_CHUNK]
                           for start in range(0, len(data), SYNC_CHUNK))
        stream.write(packets + b"DONE" + struct.pack("<I", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--mode", choices=(*BANNER_STATES, "unauthorized", "offline"),
                        default="device")
    parser.add_argument("--features", default="shell_v2,cmd",
                        help="comma-separated adb features in the banner ('' = legacy adbd)")
    parser.add_argument("--map", action="append", default=[], metavar="DEVICE=HOST",
                        help="map a device folder onto a host folder")
    parser.add_argument("--name", default="fake", help="ro.product.* values in the banner")
    parser.add_argument("--corrupt-pushes", action="store_true",
                        help="flip a bit in every pushed file (to test upload verification)")
    args = parser.parse_args()
    paths = PathMap([tuple(item.split("=", 1)) for item in args.map])
    device = FakeDevice(args.mode, args.features, paths, args.name, args.corrupt_pushes)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(8)
    print(f"READY {server.getsockname()[1]}", flush=True)
    while True:
        connection, _ = server.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=Transport(connection, device).run, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
