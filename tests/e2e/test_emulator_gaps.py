"""Where MiniStack falls short of AWS: each test passes while the gap is there and fails, saying what to
drop, once the emulator no longer has it (docs/local-runtime.md lists them all)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from local.certificate import names_in
from local.emulator import MINISTACK_PYTHON
from local.stack import DeployedStack
from tests.e2e.conftest import TtlProbe
from tests.support.deployed import eventually, queue_messages
from tests.support.signed_http import ApiClient, SigV4
from tests.support.table import http_routes

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]


def test_http_api_routes_are_not_created_from_the_openapi_body(deployed_stack: DeployedStack) -> None:
    gaps = deployed_stack.gaps
    assert gaps.routes_from_body == 0, (
        "MiniStack now creates an HTTP API's routes from its OpenAPI body: "
        "drop create_routes_from_openapi_body from local/emulator_gaps.py"
    )
    assert set(gaps.routes_bridged) == http_routes()


def test_cloudformation_does_not_turn_on_the_tables_ttl(deployed_stack: DeployedStack) -> None:
    """Not bridged: with TTL off nothing expires by deletion, which the service never relies on."""
    assert deployed_stack.gaps.ttl_status_after_deploy == "DISABLED", (
        "MiniStack's CloudFormation now applies TimeToLiveSpecification (stop_ttl_deletions turns it "
        "off again while test_ttl_deletions_leave_no_stream_record passes): update docs/local-runtime.md"
    )


def test_cloudformation_keeps_a_parameters_maximum_concurrency_as_text(deployed_stack: DeployedStack) -> None:
    assert deployed_stack.gaps.concurrency_as_text == {"ReportWorkerFunctionJobs": "2"}, (
        "MiniStack's CloudFormation now makes a mapping's MaximumConcurrency an integer: "
        "drop integer_maximum_concurrency from local/emulator_gaps.py"
    )


def test_ttl_deletions_leave_no_stream_record(deployed_stack: DeployedStack, ttl_probe: TtlProbe) -> None:
    # Given a table of the probe's with TTL on and an item that expired at once
    dynamodb = deployed_stack.client("dynamodb")

    def deleted() -> bool:
        return "Item" not in dynamodb.get_item(
            TableName=ttl_probe.table, Key=ttl_probe.key, ConsistentRead=True
        )

    # When MiniStack's reaper (a sweep a minute) deletes the item
    assert eventually(deleted, timeout_s=ttl_probe.deadline - time.monotonic(), interval_s=2), "not reaped"
    # Then its stream holds the INSERT and no REMOVE
    events = [record["eventName"] for record in ttl_probe.records(deployed_stack)]
    assert events == ["INSERT"], (
        "MiniStack's TTL deletions now leave a stream record: check it carries the DynamoDB service's "
        f"userIdentity, then drop stop_ttl_deletions from local/emulator_gaps.py ({events})"
    )


def test_a_failing_stream_record_is_dead_lettered_by_its_age_not_by_its_retries(
    deployed_stack: DeployedStack,
) -> None:
    # Given membership items missing their fields, one more every two seconds: the emulator drops a
    # record its batch reports failed (gap 6), so only a batch failing whole is retried, and a good
    # record written meanwhile by anything else would join the retried batch and drop the poison. A
    # fresh poisoned record in every retry keeps some batch failing whole until it ages out.
    dynamodb = deployed_stack.client("dynamodb")
    table = deployed_stack.outputs["TableName"]
    poisoned = iter(range(1_000_000))

    def dead_letters() -> list[dict[str, Any]]:
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": "USER#9000000000"},
                "sk": {"S": f"SEG#POISONED_{next(poisoned)}"},
                "entity": {"S": "MEMBERSHIP"},
            },
        )
        return [
            m for m in queue_messages(deployed_stack, "StreamDeadLetterQueue") if "DDBStreamBatchInfo" in m
        ]

    messages = eventually(dead_letters, timeout_s=240, interval_s=2)
    assert messages
    assert {m["requestContext"]["condition"] for m in messages} == {"MaxRecordAgeExceeded"}, (
        "MiniStack now dead-letters a stream record after MaximumRetryAttempts: "
        "drop age_out_failing_records from local/emulator_gaps.py"
    )


def test_ministacks_own_certificate_does_not_name_the_apis_host(tmp_path: Path) -> None:
    # MiniStack's generated certificate, made in a scratch TMPDIR by its own public helper
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run(
        [
            str(MINISTACK_PYTHON),
            "-c",
            "from ministack.core.tls import resolve_tls_material; resolve_tls_material()",
        ],
        env=environment,
        check=True,
        capture_output=True,
    )
    names = names_in(tmp_path / "ministack-tls" / "server.crt")
    assert "localhost" in names
    assert "*.execute-api.localhost" not in names, (
        "MiniStack's own certificate now names the API's host: drop local/certificate.py"
    )


def test_a_signature_made_with_a_wrong_secret_is_accepted(api: ApiClient) -> None:
    """Not bridged: AWS refuses it (403). The tests' own signatures are right, so nothing depends on it."""
    forger = ApiClient(api.base_url, auth=SigV4("test", "not-the-secret", "us-east-1"), verify=api.trust)
    assert forger.get("/segments").status_code == 200, (
        "MiniStack now checks the secret of a signature: move this test to test_service_api.py as a 403"
    )


def test_sqs_has_no_message_move_task(deployed_stack: DeployedStack) -> None:
    """Bridged in the tests (tests/support/deployed.py, redrive): what docs/operations.md's redrive
    command (`aws sqs start-message-move-task`) does, done message by message."""
    sqs = deployed_stack.client("sqs")
    dead_letters = sqs.get_queue_attributes(
        QueueUrl=deployed_stack.resources["CleanupDeadLetterQueue"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    try:
        sqs.start_message_move_task(SourceArn=dead_letters)
    except sqs.exceptions.ClientError:
        return  # the gap is still there
    pytest.fail(
        "MiniStack now moves messages out of a dead-letter queue: drop redrive() from "
        "tests/support/deployed.py and use the documented command in test_background_jobs.py"
    )
