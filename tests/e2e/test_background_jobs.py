"""The background jobs as deployed: the monthly schedule, the stream filters that route each record to
its function, the report worker, and the dead-letter queue that keeps a job that keeps failing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.support.deployed import eventually, invocations, queue_messages, quiet
from tests.support.signed_http import ApiClient
from tests.support.table import load_yaml_template

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

STREAM_FUNCTIONS = ["HistoryStreamFunction", "CleanupMembersFunction", "ReportWorkerFunction"]
DEAD_LETTER_WAIT_S = 150  # the emulator dead-letters a failing record once it is a minute old


def template_patterns(function: str) -> list[dict[str, Any]]:
    (event,) = load_yaml_template()["Resources"][function]["Properties"]["Events"].values()
    return [json.loads(item["Pattern"]) for item in event["Properties"]["FilterCriteria"]["Filters"]]


def previous_month(now: datetime) -> str:
    first = now.replace(day=1)
    return (
        first.replace(year=first.year - 1, month=12)
        if first.month == 1
        else first.replace(month=first.month - 1)
    ).strftime("%Y-%m")


def object_tags(stack: DeployedStack, key: str) -> dict[str, str]:
    s3 = stack.client("s3")
    try:
        tags = s3.get_object_tagging(Bucket=stack.outputs["ReportsBucketName"], Key=key)["TagSet"]
    except s3.exceptions.ClientError:
        return {}
    return {tag["Key"]: tag["Value"] for tag in tags}


@pytest.mark.parametrize("function", STREAM_FUNCTIONS)
def test_each_stream_mapping_is_deployed_with_the_templates_filters(
    deployed_stack: DeployedStack, function: str
) -> None:
    mappings = deployed_stack.client("lambda").list_event_source_mappings(
        FunctionName=deployed_stack.function_name(function)
    )["EventSourceMappings"]
    (mapping,) = mappings
    deployed = [json.loads(item["Pattern"]) for item in mapping["FilterCriteria"]["Filters"]]
    assert deployed == template_patterns(function)
    assert mapping["EventSourceArn"].startswith(
        f"arn:aws:dynamodb:us-east-1:000000000000:table/{deployed_stack.outputs['TableName']}/stream/"
    )


def test_the_filters_route_each_record_to_its_function_only(
    api: ApiClient, deployed_stack: DeployedStack
) -> None:
    # Given a quiet stack
    before = quiet(deployed_stack, STREAM_FUNCTIONS)
    # When a membership changes
    assert api.post("/segments", json={"slug": "E2E_ROUTED"}).status_code == 201
    assert api.post("/users/4100/segments", json={"add": ["E2E_ROUTED"]}).status_code == 200
    # Then only the history function is started
    after_add = quiet(deployed_stack, STREAM_FUNCTIONS)
    assert after_add["HistoryStreamFunction"] > before["HistoryStreamFunction"]
    assert after_add["CleanupMembersFunction"] == before["CleanupMembersFunction"]
    assert after_add["ReportWorkerFunction"] == before["ReportWorkerFunction"]
    # When the segment is deleted, Then the clean-up runs too (and the tombstone reaches the history)
    assert api.delete("/segments/E2E_ROUTED").status_code == 204
    after_delete = quiet(deployed_stack, STREAM_FUNCTIONS)
    assert after_delete["CleanupMembersFunction"] > after_add["CleanupMembersFunction"]
    assert after_delete["HistoryStreamFunction"] > after_add["HistoryStreamFunction"]
    assert after_delete["ReportWorkerFunction"] == before["ReportWorkerFunction"]


def test_a_pending_report_request_is_finished_by_the_worker(deployed_stack: DeployedStack) -> None:
    # Given a report request, as the API writes one when a report misses its 20 s deadline
    month = datetime.now(UTC).strftime("%Y-%m")
    key = f"reports/users/4200/{month}.csv"
    table = deployed_stack.outputs["TableName"]
    dynamodb = deployed_stack.client("dynamodb")
    dynamodb.put_item(
        TableName=table,
        Item={
            "pk": {"S": f"REPORT#{key}"}, "sk": {"S": "REQUEST"}, "entity": {"S": "REPORT_REQUEST"},
            "key": {"S": key}, "period": {"S": month}, "user_id": {"N": "4200"}, "status": {"S": "pending"},
            "requested_at": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")},
            "ttl": {"N": str(int(time.time()) + 3600)},
        },
    )  # fmt: skip
    # Then its stream record starts the worker, which writes the report and marks the request done
    assert eventually(lambda: object_tags(deployed_stack, key).get("rows") == "0", timeout_s=60)

    def status() -> str:
        item = dynamodb.get_item(TableName=table, Key={"pk": {"S": f"REPORT#{key}"}, "sk": {"S": "REQUEST"}})
        return str(item["Item"]["status"]["S"])

    assert eventually(lambda: status() == "done", timeout_s=30)


def test_the_monthly_schedule_fires_the_report_function_which_writes_last_months_report(
    deployed_stack: DeployedStack,
) -> None:
    # Given the deployed rule: the 1st of each month at 01:00 UTC, targeting the report function
    events = deployed_stack.client("events")
    rule = events.describe_rule(Name=deployed_stack.resources["MonthlyReportFunctionMonthly"])
    assert (rule["ScheduleExpression"], rule["State"]) == ("cron(0 1 1 * ? *)", "ENABLED")
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    function = deployed_stack.client("lambda").get_function(
        FunctionName=deployed_stack.function_name("MonthlyReportFunction")
    )["Configuration"]
    assert target["Arn"] == function["FunctionArn"]
    # When the rule fires: the emulator fires cron rules on the wall clock only, so its target is
    # invoked as EventBridge invokes it, asynchronously, with the scheduled event of this rule now
    now = datetime.now(UTC)
    event = {
        "version": "0", "id": "e2e-scheduled", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": [rule["Arn"]], "detail": {},
    }  # fmt: skip
    answer = deployed_stack.client("lambda").invoke(
        FunctionName=target["Arn"], InvocationType="Event", Payload=json.dumps(event).encode()
    )
    assert answer["StatusCode"] == 202
    # Then last month's report for everyone is written, complete
    key = f"reports/monthly/{previous_month(now)}.csv"
    assert eventually(lambda: object_tags(deployed_stack, key).get("complete") == "true", timeout_s=60), key


def test_a_record_that_keeps_failing_waits_in_the_dead_letter_queue(
    deployed_stack: DeployedStack, poisoned_report_request: str
) -> None:
    # Given the report request written at the start, which no worker can finish (its period is not a month)
    table = deployed_stack.outputs["TableName"]
    # Then, after its retries, its stream coordinates wait in the worker's dead-letter queue
    messages = eventually(
        lambda: [
            m for m in queue_messages(deployed_stack, "HistoryDeadLetterQueue") if "DDBStreamBatchInfo" in m
        ],
        timeout_s=DEAD_LETTER_WAIT_S,
        interval_s=2,
    )
    assert messages, "no dead-letter message"
    info = messages[0]["DDBStreamBatchInfo"]
    assert info["streamArn"].startswith(f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/")
    assert info["batchSize"] == 1
    assert messages[0]["requestContext"]["functionArn"].endswith(
        deployed_stack.function_name("ReportWorkerFunction")
    )
    # And the worker was tried more than its MaximumRetryAttempts (2) before giving up
    assert invocations(deployed_stack, "ReportWorkerFunction") > 3
