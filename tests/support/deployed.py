"""Reading the deployed stack from outside, through the AWS API: its functions' logs and queues."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from local.stack import DeployedStack

T = TypeVar("T")
TESTS_NAMESPACE = "SegmentsTests"  # CloudWatch metrics the tests put, apart from the stack's
FILTER_PAGE_LIMIT = 10_000  # events a FilterLogEvents answer holds at most


def eventually(probe: Callable[[], T], timeout_s: float, interval_s: float = 0.5) -> T:
    """The probe's first truthy answer, or its last answer once the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = probe()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(interval_s)


_LOG_GROUPS: dict[str, str] = {}  # function name -> the log group it writes to


def log_group(stack: DeployedStack, function_logical_id: str) -> str:
    """The deployed function's log group, as its LoggingConfig names it (template.yaml gives each its own)."""
    name = stack.function_name(function_logical_id)
    if name not in _LOG_GROUPS:
        configuration = stack.client("lambda").get_function_configuration(FunctionName=name)
        _LOG_GROUPS[name] = configuration["LoggingConfig"]["LogGroup"]
    return _LOG_GROUPS[name]


def log_messages(stack: DeployedStack, group: str) -> list[str]:
    """Every message of a CloudWatch Logs group, oldest first ([] for a group not created yet)."""
    logs = stack.client("logs")
    messages: list[str] = []
    arguments: dict[str, Any] = {"logGroupName": group}
    while True:
        try:
            page = logs.filter_log_events(**arguments)
        except logs.exceptions.ResourceNotFoundException:
            return messages
        events = page.get("events", [])
        messages += [event["message"] for event in events]
        token = page.get("nextToken")
        # MiniStack answers at most a page, without nextToken (gap 17): a full one may not be all
        assert token or len(events) < FILTER_PAGE_LIMIT, f"{group}: more than {FILTER_PAGE_LIMIT} events"
        if not token or token == arguments.get("nextToken"):
            return messages
        arguments["nextToken"] = token


def function_log_groups(stack: DeployedStack) -> dict[str, str]:
    """Logical id -> log group of every function of the stack."""
    functions = [
        logical_id
        for logical_id, physical_id in stack.resources.items()
        if logical_id.endswith("Function") and not physical_id.startswith("arn:")
    ]
    return {logical_id: log_group(stack, logical_id) for logical_id in functions}


def invocations(stack: DeployedStack, function_logical_id: str) -> int:
    """How many times Lambda started the function (its START lines)."""
    group = log_group(stack, function_logical_id)
    return sum(message.startswith("START RequestId") for message in log_messages(stack, group))


def quiet(
    stack: DeployedStack, functions: list[str], still_s: float = 3.0, timeout_s: float = 60
) -> dict[str, int]:
    """Invocation counts once none of the functions has been started for `still_s` seconds."""
    deadline = time.monotonic() + timeout_s
    counts = {name: invocations(stack, name) for name in functions}
    while time.monotonic() < deadline:
        time.sleep(still_s)
        now = {name: invocations(stack, name) for name in functions}
        if now == counts:
            return counts
        counts = now
    raise AssertionError(f"{functions} kept being invoked for {timeout_s} s")


def queue_messages(stack: DeployedStack, queue_logical_id: str) -> list[dict[str, Any]]:
    """The bodies of the messages waiting in a queue (read without deleting them)."""
    sqs = stack.client("sqs")
    answer = sqs.receive_message(
        QueueUrl=stack.resources[queue_logical_id], MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def evaluate_alarms(stack: DeployedStack) -> None:
    """Has the emulator evaluate every alarm now: MiniStack does so when metric data is put, not every
    period (test_emulator_gaps.py), so one datum of the tests' own namespace is put."""
    stack.client("cloudwatch").put_metric_data(
        Namespace=TESTS_NAMESPACE, MetricData=[{"MetricName": "Evaluate", "Value": 0}]
    )


def redrive(stack: DeployedStack, dead_letters: str, queue: str) -> int:
    """What `aws sqs start-message-move-task --source-arn <dead-letter queue>` does (docs/operations.md),
    message by message: the emulator has no StartMessageMoveTask (test_emulator_gaps.py)."""
    sqs, moved = stack.client("sqs"), 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=stack.resources[dead_letters], MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(QueueUrl=stack.resources[queue], MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=stack.resources[dead_letters], ReceiptHandle=message["ReceiptHandle"])
            moved += 1
