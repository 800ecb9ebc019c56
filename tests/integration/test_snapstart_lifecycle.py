"""Each SnapStart function goes through Lambda's SnapStart lifecycle in a process of its own: init
(the handler's import), the before-snapshot hooks, the after-restore hooks, then its events/ event.

The hooks run as Lambda's Python runtime runs them, through snapshot_restore_py's registries:
before-snapshot ones in reverse order of registration, after-restore ones in order.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import TABLE
from tests.support.api import Api
from tests.support.table import ROOT, load_yaml_template

SNAPSTART_FUNCTIONS = {
    name: resource["Properties"]["Handler"].rsplit(".", 1)[0]
    for name, resource in load_yaml_template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function" and "SnapStart" in resource["Properties"]
}
LIFECYCLE = """
import json, sys
from tests.support.calls import counting_calls  # its hooks reach every botocore session made after it
import boto3
from moto import mock_aws
from tests.support.api import FakeContext
from tests.support.table import create_table

items, event = (json.load(open(path, encoding="utf-8")) for path in sys.argv[1:3])
with mock_aws():
    dynamodb = boto3.client("dynamodb")
    create_table(dynamodb, "{table}")
    boto3.client("s3").create_bucket(Bucket="{bucket}")
    for item in items:
        dynamodb.put_item(TableName="{table}", Item=item)

    from {module} import lambda_handler  # init: Lambda runs it when the version is published
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    registered = [hook.__qualname__ for hook, _, _ in [*get_before_snapshot(), *get_after_restore()]]
    with counting_calls() as calls:
        before = get_before_snapshot()
        while before:
            hook, args, kwargs = before.pop()
            hook(*args, **kwargs)
    for hook, args, kwargs in get_after_restore():
        hook(*args, **kwargs)
    response = lambda_handler(event, FakeContext())  # the first request of a restored instance
print(json.dumps({{"registered": registered, "calls_before_snapshot": dict(calls),
                   "status": response.get("statusCode")}}))
"""


def run_lifecycle(module: str, items: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "items.json").write_text(json.dumps(items), encoding="utf-8")
    event = ROOT / "events" / f"{module.rsplit('.', 1)[-1]}.json"
    script = LIFECYCLE.format(module=module, table=TABLE, bucket=os.environ["REPORTS_BUCKET"])
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "items.json"), str(event)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def event_import(api: Api) -> None:
    """The import events/api_get_import.json names, of the segment it names."""
    from dal.factory import get_import_store
    from models.domain import Import, ImportMode, ImportStatus
    from tests.support.events import load_event

    path = load_event("api_get_import")["pathParameters"]
    generation = 1
    assert api.get_segment(path["slug"]).status == 200
    now = datetime.now(UTC)
    job = Import(
        path["import_id"], path["slug"], generation, ImportMode.ADD, ImportStatus.AWAITING_UPLOAD, now, now
    )
    get_import_store().create_import(job, due_at=now)


@pytest.mark.parametrize("function", sorted(SNAPSTART_FUNCTIONS))
def test_a_restored_instance_answers_its_first_request_and_the_snapshot_holds_no_connection(
    function: str, seeded: Api, tmp_path: Path
) -> None:
    module = SNAPSTART_FUNCTIONS[function]
    if module.endswith("api_get_import"):  # its event reads an import of a seeded segment
        event_import(seeded)
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    if module.endswith("api_create_segment"):  # its event creates a seeded segment: 201, not 409
        items = [item for item in items if item["pk"]["S"] != "SEGMENT#AVITO_VOICE_MESSAGES"]

    outcome = run_lifecycle(module, items, tmp_path)

    assert outcome["registered"] == ["before_snapshot", "after_restore"]
    assert outcome["calls_before_snapshot"] == {}  # no AWS call, so no connection in the snapshot
    assert outcome["status"] in (200, 201, 204), outcome
