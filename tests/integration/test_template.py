"""template.yaml is valid SAM, lint-clean, builds, and keeps every function least-privileged."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import sam_transform
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


@pytest.fixture(scope="module")
def sam_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the template, as `sam deploy` would package it (arm64 wheels, bytecode)."""
    if not Path(SAM).exists():
        pytest.skip("make test installs aws-sam-cli in .venv-sam")
    scratch = tmp_path_factory.mktemp("sam")
    result = run(SAM, "build", "--build-dir", str(scratch / "build"), "--cache-dir", str(scratch / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    return scratch / "build"


def template_functions() -> dict[str, str]:
    """{logical id: handler module} of every function."""
    return {
        name: resource["Properties"]["Handler"].rsplit(".", 1)[0]
        for name, resource in load_yaml_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


@pytest.mark.slow
def test_sam_build_packages_every_function_with_its_code_only(sam_built: Path) -> None:
    for name in template_functions():
        assert sorted(path.name for path in (sam_built / name).iterdir()) == [
            "dal", "handlers", "logic", "models", "shared"
        ], name  # fmt: skip
    layer = sam_built / "DependenciesLayer" / "python"
    for package in ("aws_lambda_powertools", "pynamodb", "botocore", "fastjsonschema"):
        assert (layer / package / "__init__.py").exists(), package


@pytest.mark.slow
def test_everything_deployed_ships_as_bytecode_lambda_can_use(sam_built: Path) -> None:
    # Lambda's /var/task and /opt are read-only: a source file without bytecode is compiled at every
    # cold start. The bytecode is for the runtime's Python and is not checked against a source time.
    sources = [
        *(sam_built / "GetUserSegmentsFunction").rglob("*.py"),
        *(sam_built / "DependenciesLayer").rglob("*.py"),
    ]
    assert len(sources) > 500
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        assert compiled.exists(), source
        header = compiled.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(header[4:8], "little") == 0b01, (
            source
        )


@pytest.mark.slow
def test_each_built_function_imports_from_its_package_and_the_layer_alone(sam_built: Path) -> None:
    layer = sam_built / "DependenciesLayer" / "python"
    for name, module in template_functions().items():
        script = (
            "import sys\n"
            f"sys.path[:0] = [{str(sam_built / name)!r}, {str(layer)!r}]\n"  # /var/task, then /opt/python
            f"import {module}\n"
            "files = [getattr(module, '__file__', None) or '' for module in list(sys.modules.values())]\n"
            "outside = sorted(file for file in files if 'site-packages' in file)\n"
            "assert not outside, outside\n"
        )
        environment = {
            **os.environ,
            "TABLE_NAME": "segments",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "BUCKET_NAME": "b",
        }
        environment.pop("PYTHONPATH", None)
        done = subprocess.run(
            [sys.executable, "-S", "-c", script], env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, (name, done.stderr[-2000:])


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
        assert actions <= {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}, (name, actions)


def test_exactly_one_function_reads_the_tables_stream() -> None:
    resources = load_yaml_template()["Resources"]
    readers = [
        name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "DynamoDB"
    ]
    assert readers == ["StreamFunction"]


def test_every_job_queue_has_a_worker_with_partial_batch_responses_and_a_dead_letter_queue() -> None:
    resources = load_yaml_template()["Resources"]
    workers = {
        event["Properties"]["Queue"]["Fn::GetAtt"][0]: (name, event["Properties"])
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "SQS"
    }
    queues = {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in resource["Properties"]
    }
    assert set(workers) == set(queues) == {"CleanupQueue", "ReportQueue", "ImportQueue"}
    for queue, properties in queues.items():
        worker, source = workers[queue]
        assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"], worker
        redrive = properties["RedrivePolicy"]
        dead_letters = resources[redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
        assert redrive["maxReceiveCount"] == 5
        assert dead_letters["MessageRetentionPeriod"] == 1_209_600  # 14 days: a job waits to be redriven
        timeout = resources[worker]["Properties"]["Timeout"]
        assert properties["VisibilityTimeout"] >= 6 * timeout, queue


# --- SnapStart -------------------------------------------------------------------------------------

API_FUNCTIONS = {
    name
    for name, resource in load_yaml_template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
    and any(event["Type"] == "HttpApi" for event in resource["Properties"].get("Events", {}).values())
}
needs_translator = pytest.mark.skipif(not sam_transform.available(), reason="make test installs .venv-sam")


def test_snapstart_is_a_parameter_on_by_default() -> None:
    template = load_yaml_template()
    parameter = template["Parameters"]["SnapStart"]
    assert parameter["Default"] == "true" and parameter["AllowedValues"] == ["true", "false"]
    assert template["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]}


def test_every_api_function_and_only_they_have_snapstart_behind_an_alias() -> None:
    assert len(API_FUNCTIONS) == 11
    for name, resource in load_yaml_template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        if name not in API_FUNCTIONS:  # no one waits on a background function's cold start
            assert not {"SnapStart", "AutoPublishAlias"} & set(properties), name
            continue
        assert properties["AutoPublishAlias"] == "live", name
        apply_on = {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}
        assert properties["SnapStart"] == {"ApplyOn": apply_on}, name
        # a version keeps the setting it was published with: a new one must follow the parameter
        assert "${SnapStart}" in properties["VersionDescription"]["Fn::Sub"], name
        assert properties["VersionDeletionPolicy"] == "Delete", name  # its snapshot is billed while it exists


@needs_translator
@pytest.mark.parametrize("snapstart", ["true", "false"])
def test_deployed_api_functions_are_snapshotted_as_the_parameter_says(snapstart: str) -> None:
    resources = sam_transform.transformed(SnapStart=snapstart)["Resources"]
    expected = "PublishedVersions" if snapstart == "true" else "None"
    for name in API_FUNCTIONS:
        function = sam_transform.resolve_conditions(resources[name], {"SnapStartOn": snapstart == "true"})
        assert function["Properties"]["SnapStart"] == {"ApplyOn": expected}, name
    for name in set(template_functions()) - API_FUNCTIONS:
        assert "SnapStart" not in resources[name]["Properties"], name


@needs_translator
def test_changing_the_parameter_alone_publishes_new_versions() -> None:
    on = sam_transform.transformed(SnapStart="true")["Resources"]
    off = sam_transform.transformed(SnapStart="false")["Resources"]
    versions = {name: resource for name, resource in on.items() if resource["Type"] == "AWS::Lambda::Version"}
    assert len(versions) == len(API_FUNCTIONS) == 11
    for name, version in versions.items():
        assert off[name] == version and version["DeletionPolicy"] == "Delete", name
        # The same logical id, but its Description (create-only) resolves to "SnapStart true" or
        # "SnapStart false": CloudFormation replaces the version, publishing one with the new setting.
        assert version["Properties"]["Description"] == {"Fn::Sub": "SnapStart ${SnapStart}"}, name
