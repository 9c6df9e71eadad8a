"""Target profiles: devices/targets/<name>.toml -> TargetProfile.

Connection settings come from three places, later ones winning: the TOML file, the
environment (each profile's `[connection] env = { host = "RPI_HOST", ... }` names the
variable of each key), and `--set section.key=value` overrides.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from devices.base import Budget, TargetProfile
from devices.errors import ConfigError
from devices.literals import parse_value
from devices.registry import list_adapters

PROFILE_DIR = Path(__file__).resolve().parent / "targets"

ARTIFACT_FORMATS = ("tflite", "onnx", "c")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
RUNTIMES = ("litert", "onnxruntime", "benchmark_model", "c")
LATENCY_STATS = ("median", "p90")
SECTIONS = ("name", "description", "adapter", "needs", "artifact", "runtime", "connection",
            "budget", "extra")
BUDGET_FIELDS = {item.name for item in fields(Budget)}


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
    _apply_environment(document, environ, label)
    for key, value in (overrides or {}).items():
        _apply_override(document, key, value, label)
    return _build_profile(document, label)


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


def _apply_environment(document: dict, environ: Mapping[str, str], label: str) -> None:
    connection = document.setdefault("connection", {})
    variables = connection.get("env", {})
    if not isinstance(variables, dict):
        raise ConfigError(f"{label}: connection.env must be a table of key = \"VARIABLE\" "
                          "(hint: env = { host = \"RPI_HOST\" })")
    for key, variable in variables.items():
        value = environ.get(str(variable), "")
        if value != "":
            connection[key] = _coerce_like(connection.get(key), value, f"{variable}", label)


def _apply_override(document: dict, key: str, value: str, label: str) -> None:
    section, _, field_name = key.partition(".")
    if not field_name or section not in ("artifact", "runtime", "connection", "budget", "extra"):
        raise ConfigError(f"{label}: cannot override {key!r}; expected section.key with "
                          "section one of artifact, runtime, connection, budget, extra "
                          "(hint: --set target.connection.host=10.0.0.5)")
    table = document.setdefault(section, {})
    table[field_name] = parse_value(value) if not isinstance(table.get(field_name), str) \
        else value


def _coerce_like(current: Any, text: str, source: str, label: str) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
    elif isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            pass
    else:
        return text
    raise ConfigError(f"{label}: {source}={text!r} is not a {type(current).__name__} "
                      "(hint: fix the environment variable)")


def _require(table: dict, key: str, kind: type, label: str, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{label}: missing `{key}` in {where} (hint: see devices/targets/)")
    return _check_type(table[key], kind, label, f"{where}.{key}")


def _check_type(value: Any, kind: type | tuple, label: str, where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        ok = False
    elif kind is float:
        ok = isinstance(value, int | float)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{label}: {where} = {value!r} should be a {expected} "
                          "(hint: see devices/targets/host.toml)")
    return float(value) if kind is float else value


def _choice(value: str, choices: tuple[str, ...], label: str, where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{label}: {where} = {value!r}; expected one of {', '.join(choices)}")
    return value


def _build_budget(table: dict, label: str) -> Budget:
    unknown = set(table) - BUDGET_FIELDS
    if unknown:
        raise ConfigError(f"{label}: unknown budget key(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(sorted(BUDGET_FIELDS))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "latency_stat":
            values[key] = _choice(_check_type(value, str, label, "budget.latency_stat"),
                                  LATENCY_STATS, label, "budget.latency_stat")
        else:
            values[key] = _check_type(value, float, label, f"budget.{key}")
            if values[key] < 0:
                raise ConfigError(f"{label}: budget.{key} = {value} must be >= 0")
    return Budget(**values)


def _build_profile(document: dict, label: str) -> TargetProfile:
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}; expected "
                          f"{', '.join(SECTIONS)}")
    artifact = _check_type(document.get("artifact", {}), dict, label, "[artifact]")
    runtime = _check_type(document.get("runtime", {}), dict, label, "[runtime]")
    adapter = _choice(_require(document, "adapter", str, label, "profile"), tuple(
        list_adapters()), label, "adapter")
    threads = _check_type(runtime.get("threads", 1), int, label, "runtime.threads")
    if threads < 1:
        raise ConfigError(f"{label}: runtime.threads = {threads} must be >= 1")
    return TargetProfile(
        name=_check_type(document.get("name", label), str, label, "name"),
        adapter=adapter,
        description=_check_type(document.get("description", ""), str, label, "description"),
        artifact_format=_choice(_require(artifact, "format", str, label, "artifact"),
                                ARTIFACT_FORMATS, label, "artifact.format"),
        artifact_precision=_choice(_require(artifact, "precision", str, label, "artifact"),
                                   PRECISIONS, label, "artifact.precision"),
        runtime=_choice(_require(runtime, "name", str, label, "runtime"), RUNTIMES, label,
                        "runtime.name"),
        threads=threads,
        connection=dict(_check_type(document.get("connection", {}), dict, label,
                                    "[connection]")),
        budget=_build_budget(_check_type(document.get("budget", {}), dict, label, "[budget]"),
                             label),
        extra=dict(_check_type(document.get("extra", {}), dict, label, "[extra]")),
        needs=_check_type(document.get("needs", ""), str, label, "needs"),
    )
