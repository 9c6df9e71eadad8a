"""TEST DOUBLE: a fake adb server + device on 127.0.0.1 for the real `adb` client.

The real `adb` client talks to its server over the adb "smart socket" protocol on
ANDROID_ADB_SERVER_PORT. No phone can be reached here, so this process plays the server
and the devices behind it: it answers host:version / host:devices / features / transport
requests, runs `shell` (shell protocol v2, with exit codes) commands in a local `sh`, and
stores `push` (sync protocol) uploads on the local disk. Devices and their states come from
--device SERIAL=STATE (device, unauthorized, offline).

    python3 fake_adb_server.py --port 5099 --device emulator-5554=device
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading

ADB_SERVER_VERSION = 41  # adb 1.0.41: the client restarts servers of another version
FEATURES = "shell_v2,cmd"

STATE_ERRORS = {
    "unauthorized": ("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                     "Try 'adb kill-server' if that seems wrong.\n"
                     "Otherwise check for a confirmation dialog on your device."),
    "offline": "device offline",
}


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def read_request(connection: socket.socket) -> str:
    length = int(receive_exactly(connection, 4), 16)
    return receive_exactly(connection, length).decode()


def send_okay(connection: socket.socket, payload: str | None = None) -> None:
    message = b"OKAY"
    if payload is not None:
        encoded = payload.encode()
        message += f"{len(encoded):04x}".encode() + encoded
    connection.sendall(message)


def send_fail(connection: socket.socket, text: str) -> None:
    encoded = text.encode()
    connection.sendall(b"FAIL" + f"{len(encoded):04x}".encode() + encoded)


class FakeAdb:
    def __init__(self, devices: dict[str, str]) -> None:
        self.devices = devices

    # --- host services ---------------------------------------------------------------

    def handle(self, connection: socket.socket) -> None:
        with connection:
            try:
                self._serve(connection)
            except (ConnectionError, ValueError, OSError):
                pass

    def _serve(self, connection: socket.socket) -> None:
        while True:
            request = read_request(connection)
            if request == "host:version":
                return send_okay(connection, f"{ADB_SERVER_VERSION:04x}")
            if request in ("host:devices", "host:devices-l"):
                listing = "".join(f"{serial}\t{state}\n" for serial, state in self.devices.items())
                return send_okay(connection, listing)
            if request.endswith(":features") or request == "host:host-features":
                return send_okay(connection, FEATURES)
            if request == "host:kill":
                send_okay(connection)
                os._exit(0)
            if request.startswith(("host:transport", "host:tport", "host-serial:")):
                if not self._switch_transport(connection, request):
                    return None
                continue
            if request.startswith("shell"):
                return self._shell(connection, request)
            if request == "sync:":
                send_okay(connection)
                return self._sync(connection)
            return send_fail(connection, f"unsupported request {request!r}")

    def _pick(self, request: str) -> tuple[str | None, str | None]:
        """(serial, error) for a transport request."""
        serial = None
        for prefix in ("host:transport:", "host:tport:serial:"):
            if request.startswith(prefix):
                serial = request[len(prefix):]
        if serial is None:  # transport-any / tport:any
            if not self.devices:
                return None, "no devices/emulators found"
            if len(self.devices) > 1:
                return None, "more than one device/emulator"
            serial = next(iter(self.devices))
        if serial not in self.devices:
            return None, f"device '{serial}' not found"
        state = self.devices[serial]
        if state != "device":
            return None, STATE_ERRORS.get(state, f"device {state}")
        return serial, None

    def _switch_transport(self, connection: socket.socket, request: str) -> bool:
        serial, error = self._pick(request)
        if error:
            send_fail(connection, error)
            return False
        connection.sendall(b"OKAY")
        if request.startswith("host:tport"):
            connection.sendall(struct.pack("<Q", 1))  # transport id
        return True

    # --- device services -------------------------------------------------------------

    def _shell(self, connection: socket.socket, request: str) -> None:
        header, _, command = request.partition(":")
        version_two = "v2" in header.split(",")
        send_okay(connection)
        result = subprocess.run(["sh", "-c", command], capture_output=True,
                                stdin=subprocess.DEVNULL)
        if not version_two:  # raw shell: output only, no exit code (like old adbd)
            connection.sendall(result.stdout + result.stderr)
            return
        for stream_id, data in ((1, result.stdout), (2, result.stderr)):
            if data:
                connection.sendall(struct.pack("<BI", stream_id, len(data)) + data)
        connection.sendall(struct.pack("<BIB", 3, 1, result.returncode & 0xFF))
        connection.shutdown(socket.SHUT_WR)
        try:  # let the client read everything before the socket closes
            while connection.recv(4096):
                pass
        except OSError:
            pass

    def _sync(self, connection: socket.socket) -> None:
        while True:
            command, length = struct.unpack("<4sI", receive_exactly(connection, 8))
            if command == b"QUIT":
                return
            payload = receive_exactly(connection, length).decode()
            if command == b"STAT":
                try:
                    info = os.stat(payload)
                    reply = (info.st_mode, info.st_size, int(info.st_mtime))
                except OSError:
                    reply = (0, 0, 0)
                connection.sendall(b"STAT" + struct.pack("<III", *reply))
            elif command == b"SEND":
                self._receive_file(connection, payload)
            else:
                message = f"unsupported sync command {command!r}".encode()
                connection.sendall(b"FAIL" + struct.pack("<I", len(message)) + message)
                return

    def _receive_file(self, connection: socket.socket, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        chunks = []
        while True:
            command, value = struct.unpack("<4sI", receive_exactly(connection, 8))
            if command == b"DATA":
                chunks.append(receive_exactly(connection, value))
            elif command == b"DONE":
                break
            else:
                raise ValueError(f"unexpected {command!r} during SEND")
        try:
            with open(path, "wb") as handle:
                handle.write(b"".join(chunks))
            os.chmod(path, int(mode) & 0o777)
        except OSError as exc:
            message = f"couldn't create file: {exc.strerror}".encode()
            connection.sendall(b"FAIL" + struct.pack("<I", len(message)) + message)
            return
        connection.sendall(b"OKAY" + struct.pack("<I", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", action="append", default=[], help="SERIAL=STATE")
    args = parser.parse_args()
    devices = dict(item.split("=", 1) for item in args.device)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(16)
    fake = FakeAdb(devices)
    print("READY", flush=True)
    while True:
        connection, _ = server.accept()
        threading.Thread(target=fake.handle, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
