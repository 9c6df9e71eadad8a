import subprocess
import sys
from pathlib import Path

import pytest

from devices.errors import ConfigError
from pipeline.config import CONFIG_DIR, DEFAULT_CONFIG, PipelineConfig, load_config


def test_default_file_loads_into_frozen_typed_sections() -> None:
    config = load_config()
    assert config.data.name == "mnist5k"
    assert config.teacher.model == "seed_teacher" and config.student.model == "seed_student"
    assert config.export.precisions == ("fp32", "fp16", "dynamic", "int8")
    with pytest.raises(AttributeError):
        config.teacher.epochs = 3  # type: ignore[misc]


def test_every_shipped_config_is_valid() -> None:
    for path in CONFIG_DIR.glob("*.toml"):
        assert isinstance(load_config(path), PipelineConfig)


def test_overrides_are_typed_and_applied() -> None:
    config = load_config(overrides=[
        "teacher.epochs=3", "student.temperature=2", "export.formats=tflite",
        "student.baseline=true", "data.name=npz:/tmp/x.npz", "target.connection.host=10.0.0.5",
    ])
    assert config.teacher.epochs == 3
    assert config.student.temperature == 2.0 and isinstance(config.student.temperature, float)
    assert config.export.formats == ("tflite",)
    assert config.student.baseline is True
    assert config.data.name == "npz:/tmp/x.npz"
    assert config.target_overrides == (("connection.host", "10.0.0.5"),)


def test_a_config_file_sets_budgets_per_target(tmp_path: Path) -> None:
    from devices.profiles import load_profile

    path = tmp_path / "budgets.toml"
    path.write_text("[targets.host.budget]\nmin_accuracy = 0.81\n"
                    "[targets.mcu.budget]\nram_kb = 128\n")
    config = load_config(path)
    assert config.overrides_for("host") == {"budget.min_accuracy": "0.81"}
    assert config.overrides_for("rpi") == {}
    assert load_profile("host", overrides=config.overrides_for("host")).budget.min_accuracy == 0.81
    assert load_profile("mcu", overrides=config.overrides_for("mcu")).budget.ram_kb == 128
    # `--set target.…` comes last and wins, for every target
    command_line = load_config(path, overrides=["target.budget.min_accuracy=0.5"])
    assert command_line.overrides_for("host") == {"budget.min_accuracy": "0.5"}


def test_a_malformed_targets_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[targets]\nhost = 0.8\n")
    with pytest.raises(ConfigError, match=r"\[targets.host\] must hold section tables"):
        load_config(path)


def test_fingerprint_changes_with_any_value() -> None:
    assert load_config().fingerprint() == load_config().fingerprint()
    assert load_config().fingerprint() != load_config(overrides=["data.seed=1"]).fingerprint()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("teacher.bogus=1", r"unknown key teacher\.bogus; expected one of augment, augment_shift, batch_norm"),
        ("nosuch.epochs=1", r"unknown config section \[nosuch\]"),
        ("teacher.epochs=abc", r"teacher\.epochs = 'abc' has the wrong type; expected an integer"),
        ("teacher.epochs=2.5", r"teacher\.epochs = 2\.5 has the wrong type; expected an integer"),
        ("teacher.augment=3", r"teacher\.augment = 3 has the wrong type; expected true or false"),
        ("student.alpha=1.5", r"student\.alpha = 1\.5 is out of range; expected a value from 0\.0 to 1\.0"),
        ("teacher.epochs=0", r"teacher\.epochs = 0 is out of range; expected a value from 1"),
        ("prune.method=foo", r"prune\.method = 'foo' is not allowed; expected one of 'channel'"),
        ("prune.round_to=3", r"prune\.round_to = 3 is not allowed; expected one of 1, 2, 4"),
        ("export.formats=tflite,tflight", r"export\.formats = \['tflite', 'tflight'\] is not allowed"),
        ("teacher.epochs", r"override 'teacher\.epochs' is not of the form section\.key=value"),
        ("quantize.method=int4", r"quantize\.method = 'int4' is not allowed; expected one of 'ptq', 'qat'"),
        ("quantize.finetune=retrain", r"quantize\.finetune = 'retrain' is not allowed; expected one of 'finetune', 'kd'"),
        ("quantize.epochs=0", r"quantize\.epochs = 0 is out of range; expected a value from 1"),
        ("quantize.bogus=1", r"unknown key quantize\.bogus; expected one of epochs, finetune"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file .*nope.toml not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[teacher\nepochs = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)


def test_cli_exits_2_with_the_message_on_a_config_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "config", "show", "--set", "student.alpha=7"],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 2
    assert "student.alpha = 7.0 is out of range" in completed.stderr


def test_cli_config_show_prints_the_effective_values() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "config", "show", "--config", str(DEFAULT_CONFIG),
         "--set", "teacher.epochs=7"],
        capture_output=True, text=True, check=True,
    )
    assert '"epochs": 7' in completed.stdout


def test_unset_keys_are_not_hashed_so_an_optional_key_keeps_caches_valid() -> None:
    from pipeline.config import hashed_section

    config = load_config()
    assert "seed" in config.to_dict()["student"]  # shown by `config show`
    assert "seed" not in hashed_section(config.student)  # but not in cache keys
    seeded = load_config(overrides=["student.seed=3"])
    assert hashed_section(seeded.student)["seed"] == 3
    assert seeded.fingerprint() != config.fingerprint()


def test_the_quantize_section_changes_no_fingerprint_or_cache_key_under_ptq() -> None:
    from pipeline.flow import stages
    from pipeline.runner import Runner

    config = load_config()
    assert config.quantize.method == "ptq"
    unused = load_config(overrides=["quantize.epochs=9", "quantize.finetune=finetune"])
    qat = load_config(overrides=["quantize.method=qat"])
    # post-training reads none of [quantize]: the fingerprint of every config stays the
    # one it had before the section existed
    assert unused.fingerprint() == config.fingerprint() != qat.fingerprint()
    assert not any("quantize" in stage.sections for stage in stages(config))
    assert [stage.name for stage in stages(config)] == [
        "teacher", "student", "pruned", "export", "validate"]
    assert [stage.name for stage in stages(qat)][3:] == ["qat", "export", "validate"]

    class Data:
        fingerprint = "data"

    def keys(runner: Runner) -> dict[str, str]:
        found: dict[str, str] = {}
        for stage in runner.stages:
            found[stage.name] = runner.stage_key(stage, Data(), found)  # type: ignore[arg-type]
        return found

    baseline = keys(Runner(config, echo=lambda _: None))
    assert keys(Runner(unused, echo=lambda _: None)) == baseline
    with_qat = keys(Runner(qat, echo=lambda _: None))
    assert {name: with_qat[name] for name in ("teacher", "student", "pruned")} == {
        name: baseline[name] for name in ("teacher", "student", "pruned")}
    assert with_qat["export"] != baseline["export"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["quantize.method=qat", "export.precisions=fp32,int8", "export.formats=onnx"],
     r'quantize\.method = "qat" trains the int8 TFLite file, which \[export\] does not make'),
    (["quantize.method=qat", "export.precisions=fp32"], r"hint: add \"tflite\" and \"int8\""),
    (["quantize.method=qat", "student.loss=labels", "prune.finetune=finetune"],
     r'quantize\.finetune = "kd" distils .* \(hint: set quantize\.finetune = "finetune"\)'),
])
def test_qat_settings_that_cannot_work_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)
    load_config(overrides=[*overrides, "quantize.method=ptq"])  # post-training: fine
