"""Operations as deployed: every alarm of template.yaml on the stack's own resources, notifying its
topic; the dashboard; each function's log group and its retention; the job workers' concurrency caps.
And a function that fails drives its errors alarm to ALARM, whose notification reaches the topic's
subscribers (docs/operations.md). What the emulator does not evaluate is in test_emulator_gaps.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.support.deployed import evaluate_alarms, eventually, log_group
from tests.support.table import load_yaml_template

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

RESOURCES: dict[str, Any] = load_yaml_template()["Resources"]
ALARMS = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
FUNCTIONS = sorted(name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
QUEUES = sorted(name for name, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue")


def physical(stack: DeployedStack, value: Any) -> str:
    """What a template value names on the deployed stack: a Ref's physical id, a queue's name."""
    if isinstance(value, dict) and "Ref" in value:
        return stack.resources[value["Ref"]]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        queue, attribute = value["Fn::GetAtt"]
        assert attribute == "QueueName", value
        return stack.resources[queue].rsplit("/", 1)[1]
    return str(value)


def deployed_alarms(stack: DeployedStack) -> dict[str, dict[str, Any]]:
    """Logical id -> the alarm as CloudWatch describes it."""
    names = {stack.resources[name]: name for name in ALARMS}
    described = stack.client("cloudwatch").describe_alarms(AlarmNames=list(names), MaxRecords=100)
    return {names[alarm["AlarmName"]]: alarm for alarm in described["MetricAlarms"]}


def test_every_alarm_is_deployed_on_the_stacks_resources_and_notifies_the_topic(
    deployed_stack: DeployedStack,
) -> None:
    topic = deployed_stack.outputs["AlarmTopicArn"]
    deployed = deployed_alarms(deployed_stack)
    assert set(deployed) == set(ALARMS)
    for name, template in ALARMS.items():
        alarm = deployed[name]
        dimensions = {d["Name"]: physical(deployed_stack, d["Value"]) for d in template["Dimensions"]}
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == dimensions, name
        for key in ("Namespace", "MetricName", "Statistic", "ComparisonOperator", "TreatMissingData"):
            assert alarm[key] == template[key], (name, key)
        assert (alarm["Period"], alarm["EvaluationPeriods"]) == (
            template["Period"],
            template["EvaluationPeriods"],
        )
        assert alarm["Threshold"] == float(template["Threshold"]), name
        assert alarm["AlarmActions"] == alarm["OKActions"] == [topic], name


def test_the_alarm_topic_mails_no_one_unless_an_address_is_given(deployed_stack: DeployedStack) -> None:
    # Deployed with AlarmEmail left empty: no subscription of the template's own
    assert "AlarmEmailSubscription" not in deployed_stack.resources
    sns = deployed_stack.client("sns")
    attributes = sns.get_topic_attributes(TopicArn=deployed_stack.outputs["AlarmTopicArn"])["Attributes"]
    assert attributes["TopicArn"] == deployed_stack.outputs["AlarmTopicArn"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=attributes["TopicArn"])["Subscriptions"]
    assert [s for s in subscriptions if s["Protocol"] == "email"] == []


def test_the_dashboard_shows_the_stacks_own_functions_queues_api_and_alarms(
    deployed_stack: DeployedStack,
) -> None:
    cloudwatch = deployed_stack.client("cloudwatch")
    answer = cloudwatch.get_dashboard(DashboardName=deployed_stack.outputs["DashboardName"])
    assert "${" not in answer["DashboardBody"]
    body = json.loads(answer["DashboardBody"])
    values = {
        str(item)
        for widget in body["widgets"]
        for line in widget["properties"].get("metrics", [])
        for item in line
        if not isinstance(item, dict)
    }
    assert deployed_stack.api_id in values
    assert {deployed_stack.function_name(f) for f in FUNCTIONS} <= values
    assert {physical(deployed_stack, {"Fn::GetAtt": [q, "QueueName"]}) for q in QUEUES} <= values
    (alarms,) = [w["properties"]["alarms"] for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarms) == sorted(alarm["AlarmArn"] for alarm in deployed_alarms(deployed_stack).values())


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_logs_to_its_own_group_kept_30_days(
    deployed_stack: DeployedStack, function: str
) -> None:
    group = log_group(deployed_stack, function)
    assert group == deployed_stack.resources[f"{function}LogGroup"] == f"/aws/lambda/segments/{function}"
    (described,) = deployed_stack.client("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert described["retentionInDays"] == 30  # LogRetentionDays' default


@pytest.mark.parametrize(
    ("worker", "cap"),
    # CleanupMaxConcurrency's default; ReportWorkers and ImportWorkers as the emulator's stack sets them
    [("CleanupWorkerFunction", 2), ("ReportWorkerFunction", 2), ("ImportWorkerFunction", 4)],
)
def test_each_job_worker_runs_at_most_its_cap_of_batches_at_once(
    deployed_stack: DeployedStack, worker: str, cap: int
) -> None:
    (mapping,) = deployed_stack.client("lambda").list_event_source_mappings(
        FunctionName=deployed_stack.function_name(worker)
    )["EventSourceMappings"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": cap}


@pytest.fixture
def alarm_inbox(deployed_stack: DeployedStack) -> Iterator[str]:
    """A queue of the tests' own subscribed to the alarm topic, as a pager or a chat would be."""
    sqs, sns = deployed_stack.client("sqs"), deployed_stack.client("sns")
    topic = deployed_stack.outputs["AlarmTopicArn"]
    url = sqs.create_queue(QueueName="segments-tests-alarm-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    yield url
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=url)


def notifications(stack: DeployedStack, inbox: str) -> list[dict[str, Any]]:
    """The alarm notifications received so far (CloudWatch's message inside SNS's envelope)."""
    sqs = stack.client("sqs")
    messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=inbox, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(json.loads(message["Body"])["Message"]) for message in messages]


def test_a_function_that_fails_drives_its_errors_alarm_to_alarm_and_notifies_the_topic(
    deployed_stack: DeployedStack, alarm_inbox: str
) -> None:
    # Given the monthly report's errors alarm, and a subscriber of the alarm topic
    alarm = deployed_stack.resources["MonthlyReportFunctionErrorsAlarm"]
    cloudwatch = deployed_stack.client("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] != "ALARM"
    # When the function fails: its schedule's event carries a time it cannot read
    answer = deployed_stack.client("lambda").invoke(
        FunctionName=deployed_stack.function_name("MonthlyReportFunction"),
        Payload=json.dumps({"time": "not-a-time"}).encode(),
    )
    assert answer.get("FunctionError") == "Unhandled"
    evaluate_alarms(deployed_stack)  # as CloudWatch does every period (test_emulator_gaps.py)
    # Then its alarm is in ALARM and the topic's subscribers are told
    (described,) = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    assert described["StateValue"] == "ALARM", described["StateReason"]
    received: list[dict[str, Any]] = []

    def told() -> bool:
        received.extend(notifications(deployed_stack, alarm_inbox))
        return any(n["AlarmName"] == alarm and n["NewStateValue"] == "ALARM" for n in received)

    assert eventually(told, timeout_s=20, interval_s=1), received
