"""The background as deployed: one reader of the table's stream with the template's filters, jobs on
SQS queues with their workers, the monthly schedule, and a job that keeps failing waiting whole in its
dead-letter queue until a redrive completes it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.e2e.conftest import POISONED_REPORT_KEY
from tests.support.deployed import eventually, invocations, quiet, redrive
from tests.support.signed_http import ApiClient
from tests.support.table import load_yaml_template

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

BACKGROUND = ["StreamFunction", "CleanupWorkerFunction", "ReportWorkerFunction"]
DEAD_LETTER_WAIT_S = 120  # five tries, a second apart and doubling (JobRetrySeconds=1 here)


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


def request_item(stack: DeployedStack, key: str) -> dict[str, Any]:
    answer = stack.client("dynamodb").get_item(
        TableName=stack.outputs["TableName"], Key={"pk": {"S": f"REPORT#{key}"}, "sk": {"S": "REQUEST"}}
    )
    return dict(answer.get("Item", {}))


def test_one_mapping_reads_the_stream_with_the_templates_filters(deployed_stack: DeployedStack) -> None:
    table = deployed_stack.outputs["TableName"]
    lambda_ = deployed_stack.client("lambda")
    stream_readers = [
        mapping
        for mapping in lambda_.list_event_source_mappings()["EventSourceMappings"]
        if mapping["EventSourceArn"].startswith(
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/"
        )
    ]
    (mapping,) = stream_readers
    assert mapping["FunctionArn"].endswith(deployed_stack.function_name("StreamFunction"))
    deployed = [json.loads(item["Pattern"]) for item in mapping["FilterCriteria"]["Filters"]]
    assert deployed == template_patterns("StreamFunction")


@pytest.mark.parametrize(
    ("worker", "queue"), [("CleanupWorkerFunction", "CleanupQueue"), ("ReportWorkerFunction", "ReportQueue")]
)
def test_each_job_queue_is_read_by_its_worker_with_partial_batch_responses(
    deployed_stack: DeployedStack, worker: str, queue: str
) -> None:
    (mapping,) = deployed_stack.client("lambda").list_event_source_mappings(
        FunctionName=deployed_stack.function_name(worker)
    )["EventSourceMappings"]
    arn = deployed_stack.client("sqs").get_queue_attributes(
        QueueUrl=deployed_stack.resources[queue], AttributeNames=["QueueArn", "RedrivePolicy"]
    )["Attributes"]
    assert mapping["EventSourceArn"] == arn["QueueArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert json.loads(arn["RedrivePolicy"])["maxReceiveCount"] == 5


def test_a_membership_starts_the_reader_only_and_a_deletion_its_clean_up_job(
    api: ApiClient, deployed_stack: DeployedStack
) -> None:
    # Given a quiet stack
    before = quiet(deployed_stack, BACKGROUND)
    # When a membership changes, Then only the stream's reader runs
    assert api.post("/segments", json={"slug": "E2E_ROUTED"}).status_code == 201
    assert api.post("/users/4100/segments", json={"add": ["E2E_ROUTED"]}).status_code == 200
    after_add = quiet(deployed_stack, BACKGROUND)
    assert after_add["StreamFunction"] > before["StreamFunction"]
    assert after_add["CleanupWorkerFunction"] == before["CleanupWorkerFunction"]
    # When the segment is deleted, Then its clean-up job runs and the member's removal reaches history
    assert api.delete("/segments/E2E_ROUTED").status_code == 204
    after_delete = quiet(deployed_stack, BACKGROUND)
    assert after_delete["CleanupWorkerFunction"] > after_add["CleanupWorkerFunction"]
    month = datetime.now(UTC).strftime("%Y-%m")

    def removed() -> bool:
        answer = api.get("/reports/history", params={"period": month, "user_id": "4100"})
        if answer.status_code != 200:
            return False
        text = api.download(answer.json()["url"]).text
        return ";E2E_ROUTED;remove;" in text and "segment_deleted" in text

    assert eventually(removed, timeout_s=60, interval_s=2)


def test_a_pending_report_request_is_finished_by_its_job(deployed_stack: DeployedStack) -> None:
    # Given a report request, as the API writes one when a report misses its 20 s deadline
    month = datetime.now(UTC).strftime("%Y-%m")
    key = f"reports/users/4200/{month}.csv"
    deployed_stack.client("dynamodb").put_item(
        TableName=deployed_stack.outputs["TableName"],
        Item={
            "pk": {"S": f"REPORT#{key}"}, "sk": {"S": "REQUEST"}, "entity": {"S": "REPORT_REQUEST"},
            "key": {"S": key}, "period": {"S": month}, "user_id": {"N": "4200"}, "status": {"S": "pending"},
            "requested_at": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")},
            "ttl": {"N": str(int(time.time()) + 3600)},
        },
    )  # fmt: skip
    # Then its stream record sends its job, whose worker writes the report and marks the request done
    assert eventually(lambda: object_tags(deployed_stack, key).get("rows") == "0", timeout_s=60)
    assert eventually(lambda: request_item(deployed_stack, key)["status"]["S"] == "done", timeout_s=30)


def test_the_monthly_schedule_asks_for_last_months_report_which_its_job_writes(
    deployed_stack: DeployedStack,
) -> None:
    # Given the deployed rule: the 1st of each month at 01:00 UTC, targeting the monthly function
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
    # Then last month's report for everyone is written, complete, by its job
    key = f"reports/monthly/{previous_month(now)}.csv"
    assert eventually(lambda: object_tags(deployed_stack, key).get("complete") == "true", timeout_s=90), key


def test_the_sweeper_runs_every_minute(deployed_stack: DeployedStack) -> None:
    events = deployed_stack.client("events")
    rule = events.describe_rule(Name=deployed_stack.resources["SweeperFunctionEveryMinute"])
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "ENABLED")


def test_a_job_that_keeps_failing_waits_whole_in_its_dead_letter_queue_and_a_redrive_completes_it(
    deployed_stack: DeployedStack, poisoned_work: str
) -> None:
    # Given the report request written at the start, whose period no worker can read
    sqs = deployed_stack.client("sqs")
    dead_letters = deployed_stack.resources["ReportDeadLetterQueue"]

    def waiting() -> list[dict[str, Any]]:
        answer = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [json.loads(message["Body"]) for message in answer.get("Messages", [])]

    # Then after five tries its job waits, whole, in the report jobs' dead-letter queue, marked failed
    assert eventually(
        lambda: {"kind": "report", "key": POISONED_REPORT_KEY} in waiting(), DEAD_LETTER_WAIT_S, 2
    )
    assert invocations(deployed_stack, "ReportWorkerFunction") >= 5
    assert eventually(
        lambda: request_item(deployed_stack, POISONED_REPORT_KEY)["status"]["S"] == "failed", 30
    )
    # When the request is mended (its status left as it is: nothing else starts its job) and the
    # dead-letter queue redriven (docs/operations.md)
    month = datetime.now(UTC).strftime("%Y-%m")
    deployed_stack.client("dynamodb").update_item(
        TableName=deployed_stack.outputs["TableName"],
        Key={"pk": {"S": f"REPORT#{POISONED_REPORT_KEY}"}, "sk": {"S": "REQUEST"}},
        UpdateExpression="SET period = :month",
        ExpressionAttributeValues={":month": {"S": month}},
    )
    assert redrive(deployed_stack, "ReportDeadLetterQueue", "ReportQueue") >= 1
    # Then the job completes: the request (which names no user) is done, its month written
    assert eventually(
        lambda: request_item(deployed_stack, POISONED_REPORT_KEY)["status"]["S"] == "done", timeout_s=60
    )
    assert "rows" in object_tags(deployed_stack, f"reports/monthly/{month}.csv")
