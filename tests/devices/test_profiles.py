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
    assert profile.connection["accept_new_host_key"] is False


def test_environment_then_overrides_win_over_file():
    environ = {"RPI_HOST": "10.1.2.3", "RPI_PORT": "2200", "RPI_USER": "alice"}
    profile = load_profile("rpi", environ=environ)
    assert profile.connection["host"] == "10.1.2.3"
    assert profile.connection["port"] == 2200  # typed like the file's default
    overridden = load_profile("rpi", {"connection.host": "127.0.0.1", "runtime.threads": "2",
                                      "budget.latency_ms": "7.5"}, environ=environ)
    assert overridden.connection["host"] == "127.0.0.1"
    assert overridden.connection["user"] == "alice"
    assert overridden.threads == 2
    assert overridden.budget.latency_ms == 7.5


def test_string_override_stays_a_string():
    profile = load_profile("rpi", {"connection.user": "1234"}, environ={})
    assert profile.connection["user"] == "1234"


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
         '[runtime]\nname="litert"', r"adapter = 'teleport'; expected one of"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int4"\n'
         '[runtime]\nname="litert"', r"artifact.precision = 'int4'"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\nthreads="four"', r"runtime.threads = 'four' should be a int"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nlatency_ms="fast"', r"budget.latency_ms"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nspeed=1', r"unknown budget key\(s\) speed"),
        ('adapter = "host"\n[artifact]\nformat="tflite"\nprecision="int8"\n'
         '[runtime]\nname="litert"\n[budget]\nlatency_stat="p50"', r"latency_stat = 'p50'"),
        ('adapter = "host"\n[runtime]\nname="litert"', r"missing `format` in artifact"),
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
    with pytest.raises(ConfigError, match=r"RPI_PORT='twenty-two' is not a int"):
        load_profile("rpi", environ={"RPI_PORT": "twenty-two"})


def test_format_targets_table_shows_what_each_target_needs():
    from devices.profiles import format_targets_table

    table = format_targets_table([load_profile("rpi", environ={}),
                                  load_profile("phone", environ={})])
    lines = table.splitlines()
    assert lines[0].startswith("rpi ") and "Raspberry Pi" in lines[0]
    assert "model_int8.tflite on litert, 4 thread(s), adapter ssh" in lines[1]
    assert "RPI_HOST" in lines[2]
    assert "BENCHMARK_MODEL" in table
