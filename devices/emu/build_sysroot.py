"""Build the aarch64 sysroot that lets the `rpi-emu` target run the Pi's runtime under qemu.

    python3 devices/emu/build_sysroot.py [--root build/emu]

What it makes (cached under build/emu/, idempotent: a second run only checks a stamp):
- sysroot/      Debian arm64 `python3.11` and the shared libraries it needs
                (`dpkg --add-architecture arm64`, `apt-get download`, `dpkg -x`),
- sysroot/opt/site-packages/   aarch64 wheels of numpy and ai-edge-litert (with their
                dependencies), fetched with `pip download --platform ... --only-binary`,
- sysroot/proc/cpuinfo         an ARM Cortex-A72 cpuinfo, because qemu-user would show the
                host's x86 one and the runtime's CPU detection reads it,
- bin/python3-aarch64          a wrapper: QEMU_CPU=cortex-a72 qemu-aarch64-static -L sysroot.

Only the standard library is used so the script runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = PROJECT_ROOT / "build" / "emu"

# The Pi's runtime: what `pip install ai-edge-litert numpy` gives on Raspberry Pi OS (bookworm).
PYTHON_VERSION = "3.11"
DEBIAN_PACKAGES = (f"python{PYTHON_VERSION}-minimal", f"libpython{PYTHON_VERSION}-stdlib",
                   "libstdc++6", "libgcc-s1")
WHEELS = ("ai-edge-litert==2.3.0", "numpy>=2,<3")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64",
                   "manylinux_2_31_aarch64", "manylinux_2_34_aarch64")
# Packages that only run maintainer scripts (never needed to start python) and are large.
SKIPPED_PACKAGES = {"debconf", "perl-base", "perl", "perl-modules-5.36", "libperl5.36", "mailcap",
                    "mime-support", "dpkg", "tar", "install-info", "debianutils"}
QEMU = "qemu-aarch64-static"
QEMU_CPU = "cortex-a72"

CPUINFO_CORE = """processor\t: {index}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""
CPUINFO_TAIL = "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B (emulated by qemu-user)\n"


class SysrootError(RuntimeError):
    pass


def fingerprint() -> str:
    recipe = {"python": PYTHON_VERSION, "debs": DEBIAN_PACKAGES, "wheels": WHEELS,
              "skipped": sorted(SKIPPED_PACKAGES), "cpu": QEMU_CPU, "cpuinfo": CPUINFO_CORE,
              "version": 3}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def wrapper_path(root: Path = DEFAULT_ROOT) -> Path:
    return root / "bin" / "python3-aarch64"


def is_built(root: Path = DEFAULT_ROOT) -> bool:
    stamp = root / "sysroot" / ".complete"
    return stamp.is_file() and stamp.read_text().strip() == fingerprint()


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), file=sys.stderr, flush=True)
    result = subprocess.run(command, text=True, capture_output=True, **kwargs)
    if result.returncode != 0:
        raise SysrootError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stderr[-2000:]}")
    return result


def ensure_arm64_architecture() -> None:
    foreign = run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    if "arm64" not in foreign:
        run(["dpkg", "--add-architecture", "arm64"])
        run(["apt-get", "update", "-qq"])
        return
    # The arm64 lists may be missing when the architecture was added but never updated.
    probe = subprocess.run(["apt-cache", "show", f"python{PYTHON_VERSION}-minimal:arm64"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        run(["apt-get", "update", "-qq"])


def resolve_packages() -> list[str]:
    """apt names of what the interpreter needs (Depends/PreDepends, recursively).

    apt-cache prints arm64 packages as `name:arm64` and architecture-independent ones
    without a suffix (unsuffixed names are also host packages pulled in by those); the
    unsuffixed ones are kept only when they really are `Architecture: all`.
    """
    command = ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
               "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
    output = run(command + [f"{name}:arm64" for name in DEBIAN_PACKAGES]).stdout
    arm64: set[str] = set()
    unsuffixed: set[str] = set()
    for line in output.splitlines():
        if line.startswith((" ", "<")):
            continue  # dependency lines and virtual packages; real packages appear unindented
        name, _, arch = line.strip().partition(":")
        if name and name not in SKIPPED_PACKAGES:
            (arm64 if arch == "arm64" else unsuffixed).add(name)
    candidates = sorted(unsuffixed - arm64)
    return sorted(f"{name}:arm64" for name in arm64) + architecture_all(candidates)


def architecture_all(names: list[str]) -> list[str]:
    if not names:
        return []
    shown = run(["apt-cache", "show", "--no-all-versions", *names]).stdout
    found = []
    for paragraph in shown.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines() if ": " in line
                      and not line.startswith(" "))
        if fields.get("Architecture") == "all" and fields.get("Package") in names:
            found.append(fields["Package"])
    return sorted(set(found))


def download_debs(packages: list[str], debs: Path) -> list[Path]:
    if debs.exists():
        shutil.rmtree(debs)  # only this recipe's packages get extracted
    debs.mkdir(parents=True)
    run(["apt-get", "download", *packages], cwd=debs)
    return sorted(debs.glob("*.deb"))


def extract_debs(deb_files: list[Path], sysroot: Path) -> None:
    for deb in deb_files:
        run(["dpkg", "-x", str(deb), str(sysroot)])


def download_wheels(wheels: Path) -> list[Path]:
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:",
               "--python-version", PYTHON_VERSION, "--implementation", "cp",
               "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "-d", str(wheels)]
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    run(command + list(WHEELS))
    return sorted(wheels.glob("*.whl"))


def unpack_wheels(wheel_files: list[Path], site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    for wheel in wheel_files:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
            for info in archive.infolist():  # zip drops the exec bits .so loading may need
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(site / info.filename, mode)


def write_cpuinfo(sysroot: Path, cores: int = 4) -> None:
    proc = sysroot / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    text = "".join(CPUINFO_CORE.format(index=index) for index in range(cores)) + CPUINFO_TAIL
    (proc / "cpuinfo").write_text(text)


def write_wrapper(root: Path) -> Path:
    wrapper = wrapper_path(root)
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# aarch64 python3 under qemu-user: the Pi's runtime on this machine (emulated).\n"
        f'SYSROOT="$(dirname "$(readlink -f "$0")")/../sysroot"\n'
        f"export QEMU_CPU={QEMU_CPU}\n"
        'export PYTHONPATH="/opt/site-packages"\n'
        "export PYTHONNOUSERSITE=1\n"
        f'exec {QEMU} -L "$SYSROOT" "$SYSROOT/usr/bin/python{PYTHON_VERSION}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def smoke_test(root: Path) -> str:
    code = ("import platform, numpy, ai_edge_litert.interpreter as i; "
            "print(platform.machine(), numpy.__version__)")
    return run([str(wrapper_path(root)), "-c", code], timeout=300).stdout.strip()


def build(root: Path = DEFAULT_ROOT, force: bool = False) -> Path:
    root = Path(root)
    if is_built(root) and not force:
        return wrapper_path(root)
    if shutil.which(QEMU) is None:
        raise SysrootError(f"{QEMU} not found (hint: apt-get install qemu-user-static)")
    sysroot = root / "sysroot"
    if sysroot.exists():
        shutil.rmtree(sysroot)
    ensure_arm64_architecture()
    packages = resolve_packages()
    extract_debs(download_debs(packages, root / "debs"), sysroot)
    unpack_wheels(download_wheels(root / "wheels"), sysroot / "opt" / "site-packages")
    write_cpuinfo(sysroot)
    write_wrapper(root)
    print(smoke_test(root), file=sys.stderr)
    (sysroot / ".complete").write_text(fingerprint() + "\n")
    return wrapper_path(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    try:
        print(build(args.root, args.force))
    except SysrootError as exc:
        print(f"build_sysroot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
