"""The GitHub Actions workflows: valid against GitHub's schema, documented, and safe to run.

The README-dependent test needs README.md's "## CI secrets" table; the CI-command test needs .ci/run.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
CONTEXT_REFERENCE = re.compile(r"\b(secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
KIND_OF_CONTEXT = {"secrets": "secret", "vars": "variable"}


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS_DIR / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    value = workflow.get("on", workflow.get(True))
    return value if isinstance(value, dict) else {value: None}


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def run_scripts() -> list[tuple[str, str]]:
    return [
        (path.name, step["run"])
        for path in WORKFLOWS
        for step in steps(yaml.safe_load(path.read_text()))
        if "run" in step
    ]


def documented_ci_names() -> dict[str, str]:
    """Name -> kind ("secret" or "variable") from the table under README.md's "## CI secrets"."""
    readme = REPO / "README.md"
    assert readme.exists(), "README.md is missing; it must carry the '## CI secrets' table"
    section = re.search(r"^## CI secrets[ \t]*\n(.*?)(?=^#{1,2} |\Z)", readme.read_text(), re.M | re.S)
    assert section, "README.md has no '## CI secrets' section"
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.group(1).splitlines()
        if line.strip().startswith("|")
    ]
    assert len(rows) > 2, "the '## CI secrets' section has no table rows"
    header = [cell.lower() for cell in rows[0]]
    name_column, kind_column = header.index("name"), header.index("kind")
    return {row[name_column].strip("`"): row[kind_column].lower() for row in rows[2:]}


def test_there_are_workflows_to_check():
    assert {path.name for path in WORKFLOWS} >= {"test.yml", "preview.yml", "deploy.yml", "destroy.yml"}


def test_workflows_match_githubs_workflow_schema():
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = load("test.yml")
    del broken["jobs"]["test"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", path], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "runs-on" in result.stdout


def test_every_secret_and_variable_the_workflows_read_is_documented():
    documented = documented_ci_names()
    used = {
        (name, KIND_OF_CONTEXT[context])
        for path in WORKFLOWS
        for context, name in CONTEXT_REFERENCE.findall(path.read_text())
    }
    missing = sorted(f"{name} ({kind})" for name, kind in used if documented.get(name) != kind)
    assert not missing, f"README.md's CI secrets table lacks, or gives the wrong kind for: {missing}"
    stale = sorted(set(documented) - {name for name, _ in used})
    assert not stale, f"README.md documents CI secrets no workflow reads: {stale}"


def test_the_test_workflow_runs_the_ci_entry_point_and_so_make_test():
    ci_run = REPO / ".ci" / "run"
    assert ci_run.exists(), ".ci/run is missing"
    commands = [line.strip() for line in ci_run.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert "make test" in commands, ".ci/run no longer runs the README's test command `make test`"
    test = load("test.yml")
    assert [step.get("run", "").strip() for step in steps(test) if "run" in step] == [".ci/run"]
    # .ci/run provisions a fresh Debian bookworm machine; the workflow gives it one.
    assert test["jobs"]["test"]["container"]["image"] == "debian:bookworm"
    assert {"push", "pull_request"} <= set(triggers(test))


def test_run_scripts_take_secrets_and_inputs_from_env_not_inline_expressions():
    # An expression inside `run:` is pasted into the script before bash sees it: a secret would
    # land in the script file and a crafted input would become code.
    inline = [(name, EXPRESSION.findall(script)) for name, script in run_scripts() if EXPRESSION.search(script)]
    assert not inline


def test_run_scripts_pass_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("shellcheck is required in CI")
        pytest.skip("shellcheck is not installed")
    scripts = []
    for index, (name, script) in enumerate(run_scripts()):
        path = tmp_path / f"{Path(name).stem}-{index}.sh"
        path.write_text("#!/usr/bin/env bash\n" + script)
        scripts.append(path)
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_previews_and_updates_of_one_stack_never_overlap_or_get_cancelled():
    groups = {}
    for name in ("deploy.yml", "destroy.yml", "preview.yml"):
        concurrency = load(name)["concurrency"]
        assert concurrency["cancel-in-progress"] is False
        groups[name] = EXPRESSION.sub("STACK", concurrency["group"])
    assert len(set(groups.values())) == 1, groups


def test_deploy_waits_for_the_tests():
    jobs = load("deploy.yml")["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/test.yml"
    assert "workflow_call" in triggers(load("test.yml"))
    assert jobs["up"]["needs"] == "test"
    assert jobs["up"]["with"]["command"] == "up"


def test_destroy_runs_only_by_hand_after_the_stack_name_is_repeated():
    destroy = load("destroy.yml")
    assert set(triggers(destroy)) == {"workflow_dispatch"}
    assert set(triggers(destroy)["workflow_dispatch"]["inputs"]) == {"stack", "confirm"}
    assert destroy["jobs"]["destroy"]["needs"] == "confirm"
    gate = destroy["jobs"]["confirm"]["steps"][0]
    assert gate["env"] == {"STACK": "${{ inputs.stack }}", "CONFIRM": "${{ inputs.confirm }}"}
    assert '"$CONFIRM" != "$STACK"' in gate["run"]


def test_pull_requests_get_a_preview_comment_checked_by_the_policy_pack():
    preview = load("preview.yml")
    assert set(triggers(preview)) == {"pull_request"}
    assert preview["permissions"]["pull-requests"] == "write"
    assert preview["jobs"]["preview"]["with"]["command"] == "preview"

    pulumi_steps = steps(load("pulumi.yml"))
    action_index = next(i for i, step in enumerate(pulumi_steps) if step.get("uses", "").startswith("pulumi/actions@"))
    action = pulumi_steps[action_index]
    assert action["uses"] == "pulumi/actions@v6"
    assert action["with"]["comment-on-pr"] is True
    assert "'policy'" in action["with"]["policyPacks"]
    assert (REPO / "policy" / "PulumiPolicy.yaml").exists()
    # pulumi/actions installs only the CLI: the program's virtualenv and the SSH key come first.
    earlier_runs = [step.get("run", "") for step in pulumi_steps[:action_index]]
    assert any("scripts/dev/ensure-venv.sh" in run for run in earlier_runs)
    assert any("ssh-add" in run for run in earlier_runs)
