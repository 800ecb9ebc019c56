"""Where MiniStack falls short of AWS: each test passes while the gap is there and fails, saying what to
drop, once the emulator no longer has it (docs/local-runtime.md lists them all)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.certificate import names_in
from local.emulator import MINISTACK_PYTHON
from local.stack import DeployedStack
from tests.e2e.conftest import TtlProbe
from tests.support.deployed import (
    TESTS_NAMESPACE,
    evaluate_alarms,
    eventually,
    log_group,
    log_messages,
    queue_messages,
)
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


def test_a_number_parameter_reaches_an_sqs_mappings_scaling_config_as_text(
    deployed_stack: DeployedStack,
) -> None:
    workers = {"CleanupWorkerFunction", "ReportWorkerFunction", "ImportWorkerFunction"}
    assert set(deployed_stack.gaps.scaling_as_text) == workers, (
        "MiniStack's CloudFormation now gives ScalingConfig a Number parameter as a number: "
        "drop cap_sqs_workers_with_numbers from local/emulator_gaps.py"
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


# --- CloudWatch and the API stage (gaps 12 to 15): what the alarms and the dashboard read -----------

LAMBDA_INVOKE_METRICS = {"Invocations", "Errors", "Throttles", "Duration"}


def all_metrics(deployed_stack: DeployedStack) -> list[dict[str, Any]]:
    pages = deployed_stack.client("cloudwatch").get_paginator("list_metrics").paginate()
    return [metric for page in pages for metric in page["Metrics"]]


def alarm_state(deployed_stack: DeployedStack, name: str) -> str:
    (alarm,) = deployed_stack.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return str(alarm["StateValue"])


def test_cloudwatch_gets_metrics_from_lambdas_invoke_api_alone(deployed_stack: DeployedStack) -> None:
    """Not bridged: the alarms on queues, the API, the stream's lag and the service's own metrics stay
    without data on the emulator; template.yaml's tests and the deployed alarms' definitions cover them."""
    # Given a run that called the API, read the stream, dead-lettered a job (test_background_jobs.py)
    # and invoked functions through Lambda's Invoke API
    evaluate_alarms(deployed_stack)
    metrics = all_metrics(deployed_stack)
    namespaces = {metric["Namespace"] for metric in metrics} - {TESTS_NAMESPACE}
    lambda_metrics = {metric["MetricName"] for metric in metrics if metric["Namespace"] == "AWS/Lambda"}
    streamed = deployed_stack.function_name("StreamFunction")
    by_stream_reader = [
        metric for metric in metrics if {"Name": "FunctionName", "Value": streamed} in metric["Dimensions"]
    ]
    # Then CloudWatch holds Lambda's four metrics of invocations through its Invoke API, and nothing else:
    # no AWS/SQS (dead-letter queues), AWS/ApiGateway (5xx), IteratorAge, Segments (embedded in logs),
    # nor any metric of the invocations by the stream's mapping
    gone = (
        f"MiniStack now publishes more metrics ({namespaces}, {lambda_metrics}, {by_stream_reader}): "
        "assert in tests/e2e/test_operations.py that their alarms reach ALARM (the poisoned job's "
        "ReportDeadLetterQueueAlarm first) and update gap 12"
    )
    assert namespaces == {"AWS/Lambda"}, gone
    assert lambda_metrics <= LAMBDA_INVOKE_METRICS, gone
    assert by_stream_reader == [], gone
    for name in ("ReportDeadLetterQueueAlarm", "StreamIteratorAgeAlarm", "Api5xxAlarm", "JobsFailedAlarm"):
        assert alarm_state(deployed_stack, deployed_stack.resources[name]) == "INSUFFICIENT_DATA", name


def test_embedded_metrics_in_a_functions_log_become_no_metric(deployed_stack: DeployedStack) -> None:
    """Not bridged: the service's metrics (powertools' embedded metric format) are proven printed."""
    # Given the poisoned report job's last try, logged with its JobsFailed metric
    group = log_group(deployed_stack, "ReportWorkerFunction")

    def jobs_failed() -> list[str]:
        return [m for m in log_messages(deployed_stack, group) if '"_aws"' in m and '"JobsFailed"' in m]

    assert eventually(jobs_failed, timeout_s=120, interval_s=2), "no JobsFailed in ReportWorkerFunction's log"
    # Then CloudWatch has no metric of the Segments namespace
    segments = deployed_stack.client("cloudwatch").list_metrics(Namespace="Segments")["Metrics"]
    assert segments == [], (
        "MiniStack now extracts embedded metrics from logs: assert in tests/e2e/test_operations.py that the "
        "poisoned job drives JobsFailedAlarm to ALARM, and update gap 12"
    )


@pytest.fixture
def probe_alarms(deployed_stack: DeployedStack) -> Iterator[list[str]]:
    """Names of alarms a test makes for itself; deleted after it."""
    names: list[str] = []
    yield names
    if names:
        deployed_stack.client("cloudwatch").delete_alarms(AlarmNames=names)


def test_alarms_are_evaluated_when_metric_data_is_put_not_every_period(
    deployed_stack: DeployedStack, probe_alarms: list[str]
) -> None:
    """Bridged in the tests (tests/support/deployed.py, evaluate_alarms): one datum of their own is put."""
    # Given an alarm on the monthly report's errors, with nothing to evaluate yet
    cloudwatch = deployed_stack.client("cloudwatch")
    function = deployed_stack.function_name("MonthlyReportFunction")
    probe_alarms.append("segments-tests-evaluation-probe")
    cloudwatch.put_metric_alarm(
        AlarmName=probe_alarms[0], Namespace="AWS/Lambda", MetricName="Errors",
        Dimensions=[{"Name": "FunctionName", "Value": function}], Statistic="Sum", Period=10,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
    )  # fmt: skip
    assert alarm_state(deployed_stack, probe_alarms[0]) == "INSUFFICIENT_DATA", "an error in the last 10 s"
    # When the function fails
    answer = deployed_stack.client("lambda").invoke(FunctionName=function, Payload=b'{"time": "not-a-time"}')
    assert answer.get("FunctionError") == "Unhandled"
    time.sleep(2)
    # Then its error datum alone leaves the alarm as it was; a datum put by anyone has it evaluated
    assert alarm_state(deployed_stack, probe_alarms[0]) == "INSUFFICIENT_DATA", (
        "MiniStack now evaluates alarms as data arrives: drop evaluate_alarms from tests/support/deployed.py"
    )
    evaluate_alarms(deployed_stack)
    assert alarm_state(deployed_stack, probe_alarms[0]) == "ALARM"


def test_an_alarm_is_evaluated_over_every_dimension_of_its_metric(
    deployed_stack: DeployedStack, probe_alarms: list[str]
) -> None:
    """Not bridged: on the emulator one function's errors put every errors alarm in ALARM; the tests
    only assert the failing function's own."""
    # Given two alarms on one metric of the tests' own, one for each value of its dimension
    cloudwatch = deployed_stack.client("cloudwatch")
    for probe in ("a", "b"):
        probe_alarms.append(f"segments-tests-dimension-probe-{probe}")
        cloudwatch.put_metric_alarm(
            AlarmName=probe_alarms[-1], Namespace=TESTS_NAMESPACE, MetricName="Failures",
            Dimensions=[{"Name": "Probe", "Value": probe}], Statistic="Sum", Period=60, EvaluationPeriods=1,
            Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip
    # When only b fails
    cloudwatch.put_metric_data(
        Namespace=TESTS_NAMESPACE,
        MetricData=[{"MetricName": "Failures", "Dimensions": [{"Name": "Probe", "Value": "b"}], "Value": 1}],
    )
    # Then a's alarm is in ALARM too
    assert alarm_state(deployed_stack, probe_alarms[1]) == "ALARM"
    assert alarm_state(deployed_stack, probe_alarms[0]) == "ALARM", (
        "MiniStack now evaluates an alarm on its own dimensions: update gap 14 in docs/local-runtime.md"
    )


def test_a_stages_route_settings_from_cloudformation_read_back_empty(deployed_stack: DeployedStack) -> None:
    """Not bridged, and not enforced: the emulator throttles no route. template.yaml's tests check the
    settings as CloudFormation receives them."""
    stage = deployed_stack.client("apigatewayv2").get_stage(ApiId=deployed_stack.api_id, StageName="$default")
    assert stage.get("DefaultRouteSettings", {}) == {}, (
        "MiniStack now answers a stage's DefaultRouteSettings as deployed: assert them in "
        "tests/e2e/test_operations.py (DetailedMetricsEnabled, the throttling parameters) and update gap 15"
    )
