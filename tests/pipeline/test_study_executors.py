"""The study's executors without a cluster: which points may start (each entry computed
once), entries received from another machine (verified or refused, never half-written),
the progress line, the missing Ray extra (exit 2) and an unreachable cluster (exit 3).
The real two-node cluster is tests/pipeline/test_study_ray.py."""

from __future__ import annotations

import importlib
import io
import json
import socket
import sys
import tarfile
from pathlib import Path

import pytest

from devices.errors import CacheError, ConfigError
from pipeline.cache import StageCache
from pipeline.cache_transfer import PackedEntry, pack_entry, receive_packed
from pipeline.config import load_config, with_values
from pipeline.study.executors import EXECUTORS, load_executor
from pipeline.study.progress_line import StudyClock, duration
from pipeline.study.schedule import Schedule

TEACHER = ("teacher", "t")


def test_the_first_point_trains_the_teacher_and_the_others_wait_for_it() -> None:
    chains = [(TEACHER, ("student", "a")), (TEACHER, ("student", "b")),
              (TEACHER, ("student", "a"), ("pruned", "p"))]
    present: set = set()
    schedule = Schedule(chains)
    assert schedule.startable(present.__contains__) == [(0, [TEACHER, ("student", "a")])]
    assert schedule.startable(present.__contains__) == []  # all wait for the teacher
    present |= {TEACHER, ("student", "a")}
    schedule.finished(0)
    assert schedule.startable(present.__contains__) == [(1, [("student", "b")]),
                                                        (2, [("pruned", "p")])]
    assert schedule.done


def test_a_point_with_everything_at_the_head_needs_nothing() -> None:
    schedule = Schedule([(TEACHER,)])
    assert schedule.startable(lambda name: True) == [(0, [])]


def _sealed(cache: StageCache, stage: str, key: str, text: str = "weights") -> None:
    with cache.writer(stage, key) as scratch:
        (scratch / "model.bin").write_text(text)
        cache.seal(scratch, stage, key, {"top1": 0.9})


def _packed(tmp_path: Path, stage: str = "student", key: str = "k1") -> PackedEntry:
    worker = StageCache(tmp_path / "worker")
    _sealed(worker, stage, key)
    return pack_entry(worker.lookup(stage, key))


def test_an_entry_sealed_on_a_worker_arrives_whole(tmp_path: Path) -> None:
    head = StageCache(tmp_path / "head")
    entry = receive_packed(head, _packed(tmp_path), origin="worker-1")
    assert entry.record == {"top1": 0.9}
    assert (entry.path / "model.bin").read_text() == "weights"
    assert head.entries() == [("student", "k1")]


def _tampered(packed: PackedEntry, change) -> PackedEntry:
    files = {}
    with tarfile.open(fileobj=io.BytesIO(packed.data)) as archive:
        for member in archive.getmembers():
            files[member.name] = archive.extractfile(member).read()
    change(files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return PackedEntry(packed.stage, packed.key, buffer.getvalue())


def _renamed(files: dict) -> None:
    document = json.loads(files["entry.json"])
    files["entry.json"] = json.dumps(document | {"key": "other"}).encode()


@pytest.mark.parametrize(("change", "problem"), [
    (lambda files: files.update({"model.bin": b"changed"}), "checksum mismatch in model.bin"),
    (lambda files: files.update({"extra.py": b"print()"}), "unlisted file extra.py"),
    (lambda files: files.pop("model.bin"), "missing model.bin"),
    (_renamed, "it is student/other"),
])
def test_an_entry_that_does_not_verify_is_refused_and_nothing_is_written(
    tmp_path: Path, change, problem: str,
) -> None:
    head = StageCache(tmp_path / "head")
    with pytest.raises(CacheError, match=f"from worker-1 does not verify \\({problem}"):
        receive_packed(head, _tampered(_packed(tmp_path), change), origin="worker-1")
    assert head.entries() == []
    assert [path.name for path in (head.root / "student").iterdir()] == []  # no scratch left


def test_an_entry_already_at_the_head_is_kept(tmp_path: Path) -> None:
    head = StageCache(tmp_path / "head")
    _sealed(head, "student", "k1", text="the head's")
    entry = receive_packed(head, _packed(tmp_path), origin="worker-1")
    assert (entry.path / "model.bin").read_text() == "the head's"


def test_a_transfer_cannot_write_outside_the_entry(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(CacheError, match="arrived damaged.*outside the destination"):
        receive_packed(StageCache(tmp_path / "head"), PackedEntry("student", "k1",
                                                                  buffer.getvalue()), "w")
    assert not (tmp_path / "escaped.txt").exists()


def test_the_progress_line_counts_down_and_estimates_from_the_pace() -> None:
    times = iter([0.0, 10.0, 20.0, 40.0])
    clock = StudyClock(4, now=lambda: next(times))
    assert clock.finished() == "1/4 done, 3 to go, about 30s left"
    assert clock.finished() == "2/4 done, 2 to go, about 20s left"
    clock.total = 3
    assert clock.finished() == "3/3 done in 40s"
    assert (duration(185), duration(7800)) == ("3m 05s", "2h 10m")


def test_the_executor_setting_and_its_run_keys_leave_the_fingerprint_alone() -> None:
    config = load_config()
    assert config.study.executor == "serial" and set(EXECUTORS) == {"serial", "ray"}
    clustered = with_values(config, {"study.executor": "ray", "study.point_cpus": 4})
    assert clustered.fingerprint() == config.fingerprint()
    with pytest.raises(ConfigError, match="study.executor"):
        load_config(overrides=["study.executor=dask"])


def test_without_ray_the_ray_executor_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when not installed
    monkeypatch.delitem(sys.modules, "pipeline.study.ray_executor", raising=False)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[cluster\]"') as caught:
        load_executor("ray")
    assert caught.value.exit_code == 2
    monkeypatch.delitem(sys.modules, "pipeline.study.ray_executor", raising=False)


def test_no_cluster_at_the_address_is_exit_3_naming_it(
    capsys: pytest.CaptureFixture, tmp_path: Path,
) -> None:
    pytest.importorskip("ray", reason='needs Ray: pip install -e ".[cluster]"')
    from pipeline.cli import main

    importlib.import_module("pipeline.study.ray_executor")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    code = main(["study", "--cluster", f"127.0.0.1:{port}", "--build-dir", str(tmp_path),
                 "--dist-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 3
    assert f"no Ray cluster reachable at 127.0.0.1:{port}" in error and "ray start" in error
