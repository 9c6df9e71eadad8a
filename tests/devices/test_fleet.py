"""Fleet profiling: two real sshd "Raspberry Pis" on 127.0.0.1 profiled concurrently from
one profile with `connection.hosts`; one of them is stopped mid-way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from devices.errors import ConfigError
from devices.profiles import load_profile
from pipeline.config import load_config
from pipeline.fleet import (
    copy_bundle,
    device_profiles,
    format_fleet_summary,
    parse_host,
    profile_fleet,
)
from tests.system_tools import NEEDS_SSHD

pytestmark = NEEDS_SSHD


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_tree(pid: int) -> None:
    """Stop an sshd and every session it forked: the device drops off the network."""
    for child in _children(pid):
        kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_hosts_expand_into_one_profile_per_device() -> None:
    profile = load_profile("rpi", {"connection.hosts": '["pi1", "admin@pi2:2222"]'}, environ={})
    devices = device_profiles(profile)
    assert [d.name for d in devices] == ["rpi@pi1", "rpi@admin@pi2_2222"]
    assert devices[1].connection.host == "pi2" and devices[1].connection.port == 2222
    assert devices[1].connection.user == "admin"
    assert device_profiles(load_profile("rpi", environ={})) == [load_profile("rpi", environ={})]
    with pytest.raises(ConfigError, match="fleet host 'pi:ssh' is not \\[user@\\]host\\[:port\\]"):
        parse_host("pi:ssh")


def test_one_device_stopped_mid_way_does_not_lose_the_other(
    start_sshd, tiny_bundle: Path, tmp_path: Path
) -> None:
    healthy, doomed = start_sshd(), start_sshd()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(healthy.known_hosts.read_text() + doomed.known_hosts.read_text())
    hosts = [f"{server.user}@{server.host}:{server.port}" for server in (healthy, doomed)]
    profile = load_profile("rpi", {
        "connection.hosts": json.dumps(hosts), "connection.key": str(healthy.client_key),
        "connection.known_hosts": str(known_hosts), "connection.transport": "ssh",
        "extra.python": json.dumps([sys.executable]), "budget.latency_ms": "1000",
        "budget.min_accuracy": "0.0", "budget.ram_kb": "10000000",
    }, environ={})
    dist = tmp_path / "dist"
    shutil.copytree(tiny_bundle, dist / "rpi")
    devices = device_profiles(profile)
    for device in devices:
        copy_bundle(dist, "rpi", device.name)

    def stop_doomed_once_it_is_in_use() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "Accepted publickey" in doomed.log.read_text(errors="replace"):
                kill_tree(doomed.process.pid)
                return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_doomed_once_it_is_in_use)
    stopper.start()
    config = load_config(overrides=["profile.runs=400", "profile.warmup=5", "profile.parallel=2"])
    lines: list[str] = []
    outcomes = profile_fleet(config, devices, dist, echo=lines.append)
    stopper.join()

    good, bad = outcomes
    assert good.passed and good.error is None and good.exit_code == 0
    assert json.loads((dist / good.device / "latency_report.json").read_text()) == good.report
    assert good.report["latency_ms"]["median"] > 0
    assert not bad.passed and bad.exit_code == 3
    assert f"{doomed.port}" in bad.error
    assert not (dist / bad.device / "latency_report.json").exists()
    assert good.started < bad.finished and bad.started < good.finished  # ran side by side
    summary = format_fleet_summary(outcomes)
    assert "1 of 2 device(s) passed; failed: " + bad.device in summary
    assert bad.error.splitlines()[0][:40] in summary
    assert any(line.startswith(f"[{bad.device}] FAILED:") for line in lines)


@pytest.mark.parametrize("text", [
    "../../../victim", "pi/../x", "host name", "pi@", "-rf", "a..b", "[::1", "[::1]x",
    "bad user@pi", "pi:99999", "pi:", "$(touch x)", "x" * 254, "[10.0.0.1]:22",
])
def test_a_host_outside_the_grammar_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="is not \\[user@\\]host\\[:port\\] with a valid host"):
        parse_host(text)


def test_hosts_names_and_addresses_in_the_grammar_parse() -> None:
    assert parse_host("pi@10.0.0.5:22") == {"host": "10.0.0.5", "user": "pi", "port": 22}
    assert parse_host("raspberrypi.local") == {"host": "raspberrypi.local"}
    assert parse_host("pi@[fe80::1]:2222") == {"host": "fe80::1", "user": "pi", "port": 2222}
    assert parse_host("::1") == {"host": "::1"}
    profile = load_profile("rpi", {"connection.hosts": '["pi@[fe80::1]:2222"]'}, environ={})
    assert [d.name for d in device_profiles(profile)] == ["rpi@pi@fe80__1_2222"]


def test_a_host_cannot_place_a_bundle_outside_dist(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "rpi").mkdir(parents=True)
    (dist / "rpi" / "model_int8.tflite").write_bytes(b"x")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    profile = load_profile("rpi", {"connection.hosts": '["../../victim", "127.0.0.1:1"]'},
                           environ={})
    with pytest.raises(ConfigError, match="fleet host '../../victim'"):
        device_profiles(profile)
    with pytest.raises(ConfigError, match="bundle name '../victim' would not be a folder"):
        copy_bundle(dist, "rpi", "../victim")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "victim"]


def test_a_one_host_list_is_a_fleet_of_one_not_ignored() -> None:
    from pipeline.cli import is_single_device

    config = load_config()
    assert is_single_device(["rpi"], config)
    one = load_config(overrides=['target.connection.hosts=["127.0.0.1:2222"]'])
    assert not is_single_device(["rpi"], one)  # deploy takes the fleet path: rpi@127.0.0.1_2222
    assert not is_single_device(["host", "mcu"], config)
