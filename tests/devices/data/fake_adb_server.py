"""TEST DOUBLE: a stand-in adb SERVER on 127.0.0.1, only for USB-only device states.

Everything the adapter does against a phone runs through a REAL adb server and the device
double tests/devices/data/fake_adbd.py. A few states, though, exist only for USB devices and
cannot be produced over TCP: "no permissions" (the server cannot open the USB device node).
For those, this process plays the adb server for the real `adb` client (reached through
ANDROID_ADB_SERVER_PORT) and answers host:version, host:devices and transport requests with
the texts the real adb 1.0.41 server uses. Devices come from --device SERIAL=STATE; the
special state `no-permissions` stands for the real server's
"no permissions (...); see [URL]" line.

    python3 fake_adb_server.py --port 5099 --device R58M1=no-permissions
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

ADB_SERVER_VERSION = 41  # adb 1.0.41: the client restarts servers of another version
NO_PERMISSIONS = ("no permissions (user in plugdev group; are your udev rules wrong?); "
                  "see [http://developer.android.com/tools/device.html]")
STATE_TEXTS = {"no-permissions": NO_PERMISSIONS}


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def reply(connection: socket.socket, status: bytes, payload: str | None = None) -> None:
    message = status
    if payload is not None:
        encoded = payload.encode()
        message += f"{len(encoded):04x}".encode() + encoded
    connection.sendall(message)


def serve(connection: socket.socket, devices: dict[str, str]) -> None:
    with connection:
        try:
            length = int(receive_exactly(connection, 4), 16)
            request = receive_exactly(connection, length).decode()
        except (ConnectionError, ValueError, OSError):
            return
        if request == "host:version":
            reply(connection, b"OKAY", f"{ADB_SERVER_VERSION:04x}")
        elif request in ("host:devices", "host:devices-l"):
            reply(connection, b"OKAY", "".join(f"{serial}\t{state}\n"
                                               for serial, state in devices.items()))
        elif request == "host:kill":
            reply(connection, b"OKAY")
            os._exit(0)
        else:  # any transport or service: the device cannot be opened
            reply(connection, b"FAIL", "insufficient permissions for device")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", action="append", default=[], help="SERIAL=STATE")
    args = parser.parse_args()
    devices = {serial: STATE_TEXTS.get(state, state)
               for serial, state in (item.split("=", 1) for item in args.device)}
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(16)
    print("READY", flush=True)
    while True:
        connection, _ = server.accept()
        threading.Thread(target=serve, args=(connection, devices), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
