"""Invoke a function of the stack `make run` serves, as `aws lambda invoke` would: by its logical id in
template.yaml, with an events/ file (its own one by default) or a file of yours.

python -m local.invoke MonthlyReportFunction              # events/scheduled_monthly_report.json
python -m local.invoke CleanupMembersFunction --event my-event.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3
import yaml

from local.emulator import CREDENTIALS, ENDPOINT_URL, REGION
from local.stack import STACK_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
CERTIFICATE = REPO_ROOT / ".local-emulator" / "tls" / "server.crt"


class _TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml's structure; its intrinsic functions (!Ref, !Sub, ...) are not needed here."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def default_event(logical_id: str) -> Path:
    """events/{handler module}.json of the function (template.yaml's Handler names the module)."""
    template = yaml.load((REPO_ROOT / "template.yaml").read_text(), Loader=_TemplateLoader)
    resource = template["Resources"].get(logical_id)
    if resource is None or resource["Type"] != "AWS::Serverless::Function":
        raise SystemExit(f"{logical_id} is not a function of template.yaml")
    return REPO_ROOT / "events" / f"{resource['Properties']['Handler'].split('.')[1]}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.invoke", description=__doc__.split("\n")[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. MonthlyReportFunction")
    parser.add_argument("--event", type=Path, help="the event (default: the function's events/ file)")
    arguments = parser.parse_args(argv)
    event_path = arguments.event or default_event(arguments.function)
    session = boto3.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    options = {"endpoint_url": ENDPOINT_URL, "verify": str(CERTIFICATE)}
    resource = session.client("cloudformation", **options).describe_stack_resource(
        StackName=STACK_NAME, LogicalResourceId=arguments.function
    )["StackResourceDetail"]
    answer = session.client("lambda", **options).invoke(
        FunctionName=resource["PhysicalResourceId"], Payload=event_path.read_bytes()
    )
    payload = answer["Payload"].read().decode() or "null"
    print(json.dumps(json.loads(payload), indent=2))
    return 1 if "FunctionError" in answer else 0


if __name__ == "__main__":
    sys.exit(main())
