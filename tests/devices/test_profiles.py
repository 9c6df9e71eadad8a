"""Target profiles: every shipped TOML loads; env and --set overrides; clear config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.errors import ConfigError
from devices.profiles import list_profiles, load_profile, profile_names
from devices.registry import list_adapters

SHIPPED = ["host", "phone", "rpi", "rpi-emu"]


def test_shipped_profiles_are_listed():
    assert set(SHIPPED) <= set(profile_names())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_with_adapter_from_registry(name):
    profile = load_profile(name, environ={})
    assert profile.name == name
    assert profile.adapter in list_adapters()
    assert profile.needs, "make targets shows what each target needs"
    assert profile.artifact_file == "model_int8.tflite"


def test_list_profiles_returns_every_toml():
    names = [profile.name for profile in list_profiles(environ={})]
    assert names == sorted(names)
    assert set(SHIPPED) <= set(names)


def test_rpi_profile_values():
    profile = load_profile("rpi", environ={})
    assert profile.threads == 4
    assert profile.runtime == "litert"
    assert profile.budget.latency_ms == 25.0
    assert profile.budget.latency_stat == "median"
    assert profile.connection.accept_new_host_key is False


def test_environment_then_overrides_win_over_file():
    environ = {"RPI_HOST": "10.1.2.3", "RPI_PORT": "2200", "RPI_USER": "alice"}
    profile = load_profile("rpi", environ=environ)
    assert profile.connection.host == "10.1.2.3"
    assert profile.connection.port == 2200  # typed like the file's default
    overridden = load_profile("rpi", {"connection.host": "127.0.0.1", "runtime.threads": "2",
                                      "budget.latency_ms": "7.5"}, environ=environ)
    assert overridden.connection.host == "127.0.0.1"
    assert overridden.connection.user == "alice"
    assert overridden.threads == 2
    assert overridden.budget.latency_ms == 7.5


def test_string_override_stays_a_string():
    profile = load_profile("rpi", {"connection.user": "1234"}, environ={})
    assert profile.connection.user == "1234"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown target 'nope'; expected one of .*rpi") as info:
        load_profile("nope")
    assert info.value.exit_code == 2


def test_bad_toml_is_a_config_error(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('adapter = "teleport"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"', r"custom: adapter = 'teleport'; expected one of .*ssh"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int4"\n'
         '[runtime]\nname="litert"', r"artifact\.precision = 'int4' is not allowed; expected one of 'fp32'"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\nthreads="four"', r"custom: runtime\.threads = 'four' has the wrong type; expected an integer"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nlatency_ms="fast"', r"budget.latency_ms"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nspeed=1', r"unknown key custom: budget\.speed; expected one of flash_kb, latency_ms"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nlatency_stat="p50"', r"budget\.latency_stat = 'p50' is not allowed; expected one of 'init', 'first', "
         r"'warmup_mean', 'mean', 'std', 'min', 'max', 'median', 'p90', 'p95', 'p99'"),
        ('adapter = "host"\n[runtime]\nname="litert"', r"missing key custom: artifact\.format"),
        ('adapter = "host"\ncolour = "red"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"', r"unknown key\(s\) colour"),
    ],
)
def test_bad_fields_are_config_errors(tmp_path: Path, body: str, message: str):
    path = tmp_path / "custom.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_bad_override_key_and_bad_environment_value():
    with pytest.raises(ConfigError, match="cannot override 'threads'"):
        load_profile("rpi", {"threads": "2"}, environ={})
    with pytest.raises(ConfigError, match=r"rpi: RPI_PORT \(connection\.port\) = 'twenty-two' "
                       r"has the wrong type; expected an integer"):
        load_profile("rpi", environ={"RPI_PORT": "twenty-two"})


@pytest.mark.parametrize(("section", "key", "adapter"), [
    ("connection", "hots", "ssh"), ("extra", "clock_mhs", "mcu-qemu"), ("connection", "ip", "host"),
])
def test_an_unknown_adapter_key_is_refused_by_name(
    tmp_path: Path, section: str, key: str, adapter: str
) -> None:
    """[connection] and [extra] are typed by the adapter, like the main config's sections."""
    path = tmp_path / "custom.toml"
    path.write_text(f'adapter = "{adapter}"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
                    f'[runtime]\nname="litert"\n[{section}]\n{key} = 1\n')
    with pytest.raises(ConfigError, match=rf"unknown key custom: {section}\.{key}; expected one of") \
            as info:
        load_profile(path, environ={})
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("override", "message"), [
    ("connection.port=0", r"rpi: connection\.port = 0 is out of range; expected a value from 1"),
    ("budget.latency_ms=nan", r"rpi: budget\.latency_ms = nan is not a finite number"),
    ("connection.transport=telnet", r"connection\.transport = 'telnet' is not allowed"),
    ("extra.pyton=python3", r"unknown key rpi: extra\.pyton"),
])
def test_bad_override_values_are_refused(override: str, message: str) -> None:
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=message):
        load_profile("rpi", {key: value}, environ={})


def test_environment_may_only_name_connection_keys(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
                    '[runtime]\nname="litert"\n[connection]\nenv = { hots = "X" }\n')
    with pytest.raises(ConfigError, match=r"connection\.env names 'hots', which is not a "
                       r"connection key; expected one of timeout_s"):
        load_profile(path, environ={})


def test_format_targets_table_shows_what_each_target_needs():
    from devices.profiles import format_targets_table

    table = format_targets_table([load_profile("rpi", environ={}),
                                  load_profile("phone", environ={})])
    lines = table.splitlines()
    assert lines[0].startswith("rpi ") and "Raspberry Pi" in lines[0]
    assert "model_int8.tflite on litert, 4 thread(s), adapter ssh" in lines[1]
    assert "RPI_HOST" in lines[2]
    assert "BENCHMARK_MODEL" in table
