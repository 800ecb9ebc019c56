"""template.yaml is valid SAM, lint-clean, builds, and keeps every function least-privileged."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.table import ROOT, load_yaml_template

SAM = shutil.which("sam") or str(ROOT / ".venv-sam" / "bin" / "sam")
needs_sam = pytest.mark.skipif(not Path(SAM).exists(), reason="make test installs aws-sam-cli in .venv-sam")


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # sam build needs the template's runtime (python3.12) on PATH: the venv's, or pyenv's.
    pythons = [str(path.parent) for path in sorted(Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"))]
    path = ":".join([str(Path(SAM).parent), str(ROOT / ".venv" / "bin"), *pythons, os.environ["PATH"]])
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": path}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@needs_sam
def test_sam_validate_lint_passes() -> None:
    result = run(SAM, "validate", "--lint", "--region", "eu-west-1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = str(ROOT / ".venv" / "bin" / "cfn-lint")  # the pinned one, not whatever is on PATH
    result = run(cfn_lint, "--regions", "eu-west-1", "--", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_sam
@pytest.mark.slow
def test_sam_build_packages_every_function(tmp_path: Path) -> None:
    result = run(SAM, "build", "--build-dir", str(tmp_path / "build"), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    built = {path.name for path in (tmp_path / "build").iterdir() if path.is_dir()}
    functions = {
        name
        for name, resource in load_yaml_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert functions <= built
    assert (tmp_path / "build" / "GetUserSegmentsFunction" / "handlers" / "api_get_user_segments.py").exists()


def test_every_route_has_one_function_and_an_event_file() -> None:
    resources = load_yaml_template()["Resources"]
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        handler = resource["Properties"]["Handler"]
        module = handler.split(".")[1]
        assert (ROOT / "functions" / "handlers" / f"{module}.py").exists(), name
        assert (ROOT / "events" / f"{module}.json").exists(), f"events/{module}.json for {name}"


def test_read_only_functions_cannot_write() -> None:
    resources = load_yaml_template()["Resources"]
    for name in ("ListSegmentsFunction", "GetSegmentFunction", "GetUserSegmentsFunction"):
        actions = {
            action
            for policy in resources[name]["Properties"]["Policies"]
            for statement in policy["Statement"]
            for action in statement["Action"]
        }
        assert actions <= {"dynamodb:GetItem", "dynamodb:Query"}, (name, actions)
