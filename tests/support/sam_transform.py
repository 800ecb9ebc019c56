"""template.yaml as CloudFormation deploys it: expanded by the SAM translator of .venv-sam (the one
`sam` uses), with the code locations `sam package` would put in, for chosen parameter values."""

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.table import ROOT, TEMPLATE

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
SCRIPT = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:  # the template names no managed policy by name
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1], encoding="utf-8").read())
template["Globals"]["Function"]["CodeUri"] = "s3://packaged/functions.zip"
template["Resources"]["DependenciesLayer"]["Properties"]["ContentUri"] = "s3://packaged/layer.zip"
print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())))
"""


def available() -> bool:
    return Path(SAM_PYTHON).exists()


@cache
def _transformed(parameters: str) -> str:
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", SCRIPT, str(TEMPLATE), parameters],
        env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def transformed(**parameters: str) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would create the stack from."""
    return dict(json.loads(_transformed(json.dumps(parameters, sort_keys=True))))


def resolve_conditions(value: Any, conditions: dict[str, bool]) -> Any:
    """`Fn::If` resolved as CloudFormation would with the given conditions; other intrinsics kept."""
    if isinstance(value, list):
        return [resolve_conditions(item, conditions) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        return resolve_conditions(when_true if conditions[name] else when_false, conditions)
    return {key: resolve_conditions(item, conditions) for key, item in value.items()}
