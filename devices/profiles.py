"""Target profiles: devices/targets/<name>.toml -> TargetProfile.

Connection settings come from three places, later ones winning: the TOML file, the
environment (each profile's `[connection] env = { host = "RPI_HOST", ... }` names the
variable of each key), and `--set section.key=value` overrides. Every section is typed
(devices/sections.py): [artifact], [runtime] and [budget] here, [connection] and [extra]
by the adapter (`DeviceAdapter.Connection`, `.Extra`), so an unknown key is refused by
name, as in the pipeline config.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.artifact_kinds import FORMATS, PRECISIONS
from devices.base import Budget, DeviceAdapter, TargetProfile
from devices.errors import ConfigError
from devices.literals import parse_value
from devices.registry import adapter_class, list_adapters
from devices.sections import bounded, build_section, check_field, field_names, required_choice

PROFILE_DIR = Path(__file__).resolve().parent / "targets"

ARTIFACT_FORMATS = (*FORMATS, "c")  # "c": generated C sources from the TFLite model
RUNTIMES = ("litert", "onnxruntime", "benchmark_model", "c")
SECTIONS = ("name", "description", "adapter", "needs", "artifact", "runtime", "connection",
            "budget", "extra")


@dataclass(frozen=True)
class ArtifactSection:
    format: str = required_choice(*ARTIFACT_FORMATS)
    precision: str = required_choice(*PRECISIONS)


@dataclass(frozen=True)
class RuntimeSection:
    name: str = required_choice(*RUNTIMES)
    threads: int = bounded(1, 1, 1024)


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def list_profiles(environ: Mapping[str, str] = os.environ) -> list[TargetProfile]:
    return [load_profile(name, environ=environ) for name in profile_names()]


def format_targets_table(profiles: list[TargetProfile]) -> str:
    """`make targets`: one block per target with what it runs and what it needs."""
    blocks = []
    for profile in profiles:
        runs = (f"{profile.artifact_file} on {profile.runtime}, {profile.threads} thread(s), "
                f"adapter {profile.adapter}")
        blocks.append(f"{profile.name:<10} {profile.description}\n{'':<10} runs:  {runs}\n"
                      f"{'':<10} needs: {profile.needs or '-'}")
    return "\n".join(blocks)


def load_profile(
    name_or_path: str | Path,
    overrides: dict[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TargetProfile:
    path = _profile_path(name_or_path)
    document = _read_toml(path)
    label = path.stem
    adapter = document.get("adapter")
    if adapter not in list_adapters():
        raise ConfigError(f"{label}: adapter = {adapter!r}; expected one of "
                          f"{', '.join(list_adapters())} (hint: see devices/targets/)")
    sections = _section_classes(adapter_class(adapter))
    _apply_environment(document, sections["connection"], environ, label)
    for key, value in (overrides or {}).items():
        _apply_override(document, sections, key, value, label)
    return _build_profile(document, adapter, sections, label)


def _profile_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"target profile file {text!r} not found "
                              "(hint: pass a target name such as `host` or an existing .toml)")
        return path
    path = PROFILE_DIR / f"{text}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown target {text!r}; expected one of "
                          f"{', '.join(profile_names())} (hint: `make targets` lists them)")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"target profile {path} is not valid TOML: {exc} "
                          "(hint: compare with devices/targets/host.toml)") from exc


def _section_classes(adapter: type[DeviceAdapter]) -> dict[str, type]:
    return {"artifact": ArtifactSection, "runtime": RuntimeSection, "budget": Budget,
            "connection": adapter.Connection, "extra": adapter.Extra}


def _from_text(cls: type, key: str, text: str) -> Any:
    """A value given as text (environment, --set) typed as the section field wants it."""
    hints = typing.get_type_hints(cls)
    return text if hints.get(key) is str else parse_value(text)


def _apply_environment(document: dict, connection_cls: type, environ: Mapping[str, str],
                       label: str) -> None:
    connection = document.setdefault("connection", {})
    variables = connection.pop("env", {})
    if not isinstance(variables, dict):
        raise ConfigError(f"{label}: connection.env must be a table of key = \"VARIABLE\" "
                          "(hint: env = { host = \"RPI_HOST\" })")
    for key, variable in variables.items():
        if key not in field_names(connection_cls):
            raise ConfigError(f"{label}: connection.env names {key!r}, which is not a "
                              f"connection key; expected one of "
                              f"{', '.join(field_names(connection_cls))}")
        value = environ.get(str(variable), "")
        if value != "":
            connection[key] = _from_text(connection_cls, key, value)
            check_field(connection_cls, key, connection[key],
                        f"{label}: {variable} (connection.{key})")


def _apply_override(document: dict, sections: dict[str, type], key: str, value: str,
                    label: str) -> None:
    section, _, field_name = key.partition(".")
    if not field_name or section not in sections:
        raise ConfigError(f"{label}: cannot override {key!r}; expected section.key with "
                          f"section one of {', '.join(sections)} "
                          "(hint: --set target.connection.host=10.0.0.5)")
    table = document.setdefault(section, {})
    table[field_name] = _from_text(sections[section], field_name, value)


def _text(document: dict, key: str, label: str) -> str:
    value = document.get(key, label if key == "name" else "")
    if not isinstance(value, str):
        raise ConfigError(f"{label}: {key} = {value!r} has the wrong type; expected str")
    return value


def _build_profile(document: dict, adapter: str, section_classes: dict[str, type],
                   label: str) -> TargetProfile:
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}; expected "
                          f"{', '.join(SECTIONS)}")
    sections = {
        name: build_section(f"{label}: {name}", cls, document.get(name, {}))
        for name, cls in section_classes.items()
    }
    return TargetProfile(
        name=_text(document, "name", label), adapter=adapter,
        description=_text(document, "description", label),
        artifact_format=sections["artifact"].format,
        artifact_precision=sections["artifact"].precision,
        runtime=sections["runtime"].name, threads=sections["runtime"].threads,
        connection=sections["connection"], budget=sections["budget"],
        extra=sections["extra"], needs=_text(document, "needs", label),
    )
