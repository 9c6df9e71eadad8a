"""The README's notebook example, run as written on the tests' tiny config: the Python API
returns what the CLI computes (the shared tiny build's cache, so nothing retrains)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parent.parent.parent
README_CALL = 'load_config("configs/default.toml", overrides=["student.epochs=12"])'


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## From Python (notebooks)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
def test_the_readme_notebook_example_runs(tiny_build: dict, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = readme_example()
    assert README_CALL in code
    shutil.copytree(tiny_build["build_dir"], tmp_path / "build")
    monkeypatch.chdir(tmp_path)  # build/ and dist/ as a notebook in this folder would have
    namespace: dict = {}
    exec(compile(code.replace(README_CALL, f"load_config(overrides={list(TINY_OVERRIDES)!r})"),
                 "README.md", "exec"), namespace)
    run, outcome, report = namespace["run"], namespace["outcome"], namespace["report"]
    assert all(run.cache_hits.values())  # the CLI's cache: the same stages, the same keys
    expected = tiny_build["run"].record("pruned")["top1"]
    assert run.top1("pruned") == expected
    assert outcome.target == "host" and (tmp_path / "dist" / "host" / "manifest.json").is_file()
    assert outcome.report["latency_ms"]["median"] > 0
    assert report.markdown == Path("dist/report.md") and report.tables
    printed = capsys.readouterr().out
    assert f"{run.top1('student')} {expected} " in printed  # the example's first print
    assert "# Edge deployment report" in printed  # show() without IPython prints the tables
