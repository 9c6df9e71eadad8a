"""Adapter registry: profile `adapter = "<name>"` -> DeviceAdapter subclass.

Modules are imported lazily so a host-only user never imports the SSH or MCU code. Each
adapter module exposes its class as the module attribute `ADAPTER`.
"""

from __future__ import annotations

import importlib

from devices.base import DeviceAdapter, DeviceError, TargetProfile

ADAPTER_MODULES: dict[str, str] = {
    "host": "devices.host",
    "ssh": "devices.ssh",
    "adb": "devices.adb",
    "mcu-qemu": "devices.mcu.adapter",
    "mcu-serial": "devices.mcu.serial_adapter",
    "x86-emu": "devices.x86_emu",
}


def list_adapters() -> list[str]:
    return sorted(ADAPTER_MODULES)


def adapter_class(name: str) -> type[DeviceAdapter]:
    if name not in ADAPTER_MODULES:
        raise DeviceError(
            f"unknown adapter {name!r}; expected one of {', '.join(list_adapters())} "
            "(hint: fix `adapter = ...` in the target profile)"
        )
    module = importlib.import_module(ADAPTER_MODULES[name])
    return module.ADAPTER


def create_adapter(profile: TargetProfile) -> DeviceAdapter:
    return adapter_class(profile.adapter)(profile)
