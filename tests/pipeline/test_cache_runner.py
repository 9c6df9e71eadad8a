"""Cache hit/miss/corruption/resume/force, on counting stages (no training) and on the
real teacher and student stages with a tiny config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devices.errors import ConfigError
from pipeline.cache import StageCache, cache_key
from pipeline.config import load_config
from pipeline.runner import Runner
from pipeline.stage import Stage, StageContext, load_model
from pipeline.training import top1

TINY = ["teacher.epochs=1", "student.epochs=1", "teacher.width=0.25", "student.width=0.25",
        "data.name=digits", "teacher.model=ds_student", "student.model=ds_student"]


class Counting:
    """Stages that write a file, count their runs, and can crash on demand."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.crash_in: str | None = None

    def stage(self, name: str, upstream: tuple[str, ...], section: str) -> Stage:
        def run(context: StageContext) -> dict[str, Any]:
            self.calls.append(name)
            (context.out_dir / "out.txt").write_text(f"{name} from {sorted(context.upstream)}")
            if self.crash_in == name:
                raise RuntimeError("killed mid-stage")
            return {"value": len(self.calls)}

        return Stage(name, 1, (section,), upstream, run, lambda r: f"value={r['value']}")

    def graph(self) -> list[Stage]:
        return [self.stage("a", (), "teacher"), self.stage("b", ("a",), "student"),
                self.stage("c", ("b",), "prune")]


@pytest.fixture
def counting() -> Counting:
    return Counting()


def _run(tmp_path: Path, counting: Counting, overrides: list[str] = (), **kwargs: Any) -> Any:
    config = load_config(overrides=["data.name=digits", *overrides])
    lines: list[str] = []
    result = Runner(config, tmp_path, echo=lines.append, stages=counting.graph(), **kwargs).run()
    return result, lines


def test_miss_then_hit(tmp_path: Path, counting: Counting) -> None:
    first, lines = _run(tmp_path, counting)
    assert counting.calls == ["a", "b", "c"]
    assert [o.cache_hit for o in first.outcomes.values()] == [False, False, False]
    second, lines = _run(tmp_path, counting)
    assert counting.calls == ["a", "b", "c"]  # nothing recomputed
    assert all(o.cache_hit for o in second.outcomes.values())
    assert second.record("c") == first.record("c")
    assert any(line.startswith("b ") and "cache hit" in line for line in lines)


def test_a_changed_section_recomputes_that_stage_and_what_follows(
    tmp_path: Path, counting: Counting
) -> None:
    _run(tmp_path, counting)
    _run(tmp_path, counting, ["student.epochs=2"])
    assert counting.calls == ["a", "b", "c", "b", "c"]


def test_corrupt_entry_is_reported_deleted_and_recomputed(tmp_path: Path, counting: Counting) -> None:
    first, _ = _run(tmp_path, counting)
    (first.outcomes["b"].entry.path / "out.txt").write_text("tampered")
    second, lines = _run(tmp_path, counting)
    assert counting.calls == ["a", "b", "c", "b"]
    assert any("cache entry b/" in line and "checksum mismatch in out.txt" in line for line in lines)
    assert (second.outcomes["b"].entry.path / "out.txt").read_text() == "b from ['a']"


def test_unreadable_entry_json_is_corrupt_too(tmp_path: Path, counting: Counting) -> None:
    first, _ = _run(tmp_path, counting)
    (first.outcomes["a"].entry.path / "entry.json").write_text("{half")
    _, lines = _run(tmp_path, counting)
    assert counting.calls[3:] == ["a"]
    assert any("unreadable entry.json" in line for line in lines)


def test_killed_run_leaves_no_entry_and_resumes_after_the_last_finished_stage(
    tmp_path: Path, counting: Counting
) -> None:
    counting.crash_in = "b"
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        _run(tmp_path, counting)
    assert not list((tmp_path / "cache" / "b").iterdir())  # no half-written entry, no temp
    counting.crash_in = None
    result, _ = _run(tmp_path, counting)
    assert counting.calls == ["a", "b", "b", "c"]  # a came from the cache
    assert result.outcomes["a"].cache_hit and not result.outcomes["b"].cache_hit


def test_force_recomputes_the_stage_and_everything_after(tmp_path: Path, counting: Counting) -> None:
    _run(tmp_path, counting)
    _run(tmp_path, counting, force=["b"])
    assert counting.calls == ["a", "b", "c", "b", "c"]
    with pytest.raises(ConfigError, match="unknown stage 'z'; expected one of a, b, c"):
        _run(tmp_path, counting, force=["z"])


def test_key_is_content_addressed() -> None:
    base = cache_key("teacher", 1, {"teacher": {"epochs": 1}}, {"data": "x"})
    assert base == cache_key("teacher", 1, {"teacher": {"epochs": 1}}, {"data": "x"})
    assert base != cache_key("teacher", 2, {"teacher": {"epochs": 1}}, {"data": "x"})
    assert base != cache_key("teacher", 1, {"teacher": {"epochs": 2}}, {"data": "x"})
    assert base != cache_key("teacher", 1, {"teacher": {"epochs": 1}}, {"data": "y"})


def test_cache_clear(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    with cache.writer("s", "k") as scratch:
        (scratch / "f").write_text("x")
        cache.seal(scratch, "s", "k", {"ok": True})
    assert cache.lookup("s", "k").record == {"ok": True}
    assert json.loads((tmp_path / "s" / "k" / "entry.json").read_text())["files"]["f"]
    cache.clear("s")
    assert cache.lookup("s", "k") is None


@pytest.mark.slow
def test_real_teacher_and_student_stages_cache_their_models(tmp_path: Path) -> None:
    config = load_config(overrides=TINY + ["student.baseline=true"])
    lines: list[str] = []
    first = Runner(config, tmp_path, echo=lines.append).run(until="student")
    teacher, student = first.record("teacher"), first.record("student")
    assert teacher["epochs_run"] == 1
    saved_teacher = load_model(first.outcomes["teacher"].entry.path)
    assert top1(saved_teacher, first.dataset.x_test, first.dataset.y_test) == teacher["top1"]
    assert student["params"] == teacher["params"]  # the same zoo model at the same width
    assert student["scratch"]["epochs_run"] == 1 and student["temperature"] == 4.0
    assert (first.outcomes["student"].entry.path / "model.keras").stat().st_size == student["bytes"]
    second = Runner(config, tmp_path, echo=lines.append).run(until="student")
    assert all(o.cache_hit for o in second.outcomes.values())
    assert second.record("student") == student


def test_unknown_model_and_stage_names_stop_before_any_training(tmp_path: Path) -> None:
    config = load_config(overrides=["data.name=digits", "student.model=mobilenet"])
    with pytest.raises(ConfigError, match="student.model = 'mobilenet' is not in the model zoo"):
        Runner(config, tmp_path, echo=lambda _: None).run()
    with pytest.raises(ConfigError, match="unknown stage 'studnet'"):
        Runner(load_config(overrides=["data.name=digits"]), tmp_path,
               echo=lambda _: None).run(until="studnet")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_after_its_last_finished_stage(tmp_path: Path) -> None:
    """A real `python -m pipeline run`, killed (SIGKILL: no cleanup code runs) while the
    student trains; the next run serves the teacher from the cache and removes the dead
    run's half-written student folder."""
    import signal
    import subprocess
    import sys
    import time

    arguments = [sys.executable, "-m", "pipeline", "run", "--build-dir", str(tmp_path),
                 "--until", "student"]
    # No early stopping and many epochs: the student cannot finish before the kill.
    endless = ["student.epochs=1000", "student.early_stopping_patience=0"]
    arguments += [part for item in TINY + endless for part in ("--set", item)]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("student    running"):
            time.sleep(3)  # into the student's training
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    student_dir = tmp_path / "cache" / "student"
    assert [p.name for p in student_dir.iterdir()][0].startswith(".")  # only the dead scratch
    assert len(list((tmp_path / "cache" / "teacher").iterdir())) == 1  # the sealed teacher

    lines: list[str] = []
    config = load_config(overrides=TINY + ["student.epochs=1"])
    result = Runner(config, tmp_path, echo=lines.append).run(until="student")
    assert result.outcomes["teacher"].cache_hit and not result.outcomes["student"].cache_hit
    assert any("half-written student entry of a killed run" in line for line in lines)
    assert all(not p.name.startswith(".") for p in student_dir.iterdir())


@pytest.mark.slow
def test_same_config_same_model_run_after_run(tmp_path: Path) -> None:
    """Fixed seeds plus TensorFlow's op determinism: two cold runs train identical models."""
    config = load_config(overrides=TINY)
    first = Runner(config, tmp_path / "a", echo=lambda _: None).run(until="teacher")
    second = Runner(config, tmp_path / "b", echo=lambda _: None).run(until="teacher")
    one, two = first.record("teacher"), second.record("teacher")
    assert one["history"] == two["history"] and one["top1"] == two["top1"]
    weights_one = load_model(first.outcomes["teacher"].entry.path).get_weights()
    weights_two = load_model(second.outcomes["teacher"].entry.path).get_weights()
    assert all((a == b).all() for a, b in zip(weights_one, weights_two))
