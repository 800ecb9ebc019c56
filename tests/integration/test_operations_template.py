"""Operations, read from template.yaml: every alarm and its threshold, a log group per function, the
alarm topic, the dashboard, the API's throttling and the workers' concurrency caps.

A new function, dead-letter queue, stream reader, route or business metric fails here until it has its
alarms, its log group and its place on the dashboard (docs/operations.md, "Adding a function or a queue").
"""

import ast
import json
import re
from typing import Any

import pytest

from tests.support import sam_transform
from tests.support.table import ROOT, http_routes, load_yaml_template

TEMPLATE = load_yaml_template()
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = sorted(name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
ALARMS: dict[str, Any] = {
    name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"
}
COMPARISONS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}
# The values CloudWatch Logs accepts as a retention (PutRetentionPolicy).
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922]
RETENTION_DAYS += [3288, 3653]


def named(value: Any) -> str:
    """The resource a Ref or GetAtt names (`Table`, `Queue.QueueName`), or a literal as it is."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return ".".join(value["Fn::GetAtt"])
    return str(value)


def summary(alarm: dict[str, Any]) -> str:
    """`Namespace Metric{Dimension=resource} Statistic datapoints/periods x period > threshold`."""
    dimensions = ",".join(f"{d['Name']}={named(d['Value'])}" for d in alarm["Dimensions"])
    statistic = alarm.get("Statistic") or alarm["ExtendedStatistic"]
    periods = alarm["EvaluationPeriods"]
    return (
        f"{alarm['Namespace']} {alarm['MetricName']}{{{dimensions}}} {statistic} "
        f"{alarm.get('DatapointsToAlarm', periods)}/{periods} x {alarm['Period']}s "
        f"{COMPARISONS[alarm['ComparisonOperator']]} {alarm['Threshold']}"
    )


def events(function: str, kind: str) -> list[dict[str, Any]]:
    found = RESOURCES[function]["Properties"].get("Events", {}).values()
    return [event["Properties"] for event in found if event["Type"] == kind]


def dead_letter_queues() -> set[str]:
    """Every queue something sends its failures to: a queue's redrive target, an event's OnFailure."""
    redriven = {
        named(r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]).removesuffix(".Arn")
        for r in RESOURCES.values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    }
    on_failure = {
        named(source["DestinationConfig"]["OnFailure"]["Destination"]).removesuffix(".Arn")
        for function in FUNCTIONS
        for kind in ("DynamoDB", "Kinesis", "SQS")
        for source in events(function, kind)
        if "DestinationConfig" in source
    }
    return redriven | on_failure


# --- every alarm -----------------------------------------------------------------------------------

# Every alarm of the stack, as summary() writes it: a new function or dead-letter queue adds its rows.
PER_FUNCTION = {
    "ErrorsAlarm": "AWS/Lambda Errors{{FunctionName={0}}} Sum 1/1 x 300s >= 1",
    "ThrottlesAlarm": "AWS/Lambda Throttles{{FunctionName={0}}} Sum 1/1 x 300s >= 1",
}
PER_DEAD_LETTER_QUEUE = (
    "AWS/SQS ApproximateNumberOfMessagesVisible{{QueueName={0}.QueueName}} Maximum 1/1 x 60s > 0"
)
EVERY_ALARM = {
    **{f"{f}{suffix}": line.format(f) for f in FUNCTIONS for suffix, line in PER_FUNCTION.items()},
    **{
        f"{queue}Alarm": PER_DEAD_LETTER_QUEUE.format(queue)
        for queue in (
            "StreamDeadLetterQueue",
            "CleanupDeadLetterQueue",
            "ReportDeadLetterQueue",
            "ImportDeadLetterQueue",
        )
    },
    "StreamIteratorAgeAlarm": "AWS/Lambda IteratorAge{FunctionName=StreamFunction} Maximum 3/3 x 60s > 60000",
    "Api5xxAlarm": "AWS/ApiGateway 5xx{ApiId=Api} Average 2/2 x 300s > 0.01",
    "JobsFailedAlarm": "Segments JobsFailed{service=segments} Sum 1/1 x 300s >= 1",
}


def test_every_alarm_and_its_threshold() -> None:
    assert {name: summary(alarm) for name, alarm in ALARMS.items()} == EVERY_ALARM


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_an_errors_and_a_throttles_alarm(function: str) -> None:
    watched = {
        alarm["MetricName"]
        for alarm in ALARMS.values()
        if alarm["Namespace"] == "AWS/Lambda"
        and [(d["Name"], named(d["Value"])) for d in alarm["Dimensions"]] == [("FunctionName", function)]
    }
    assert {"Errors", "Throttles"} <= watched, f"{function} needs its ErrorsAlarm and ThrottlesAlarm"


def test_every_dead_letter_queue_has_a_not_empty_alarm() -> None:
    queues = dead_letter_queues()
    assert queues >= {"StreamDeadLetterQueue", "CleanupDeadLetterQueue", "ReportDeadLetterQueue"}
    for queue in queues:
        (alarm,) = [
            alarm
            for alarm in ALARMS.values()
            if alarm["Namespace"] == "AWS/SQS"
            and named(alarm["Dimensions"][0]["Value"]) == f"{queue}.QueueName"
        ] or [None]
        assert alarm is not None, f"{queue} needs an alarm: {queue}Alarm, as the others have"
        assert summary(alarm) == PER_DEAD_LETTER_QUEUE.format(queue), queue


def test_every_stream_reader_has_an_iterator_age_alarm() -> None:
    readers = [f for f in FUNCTIONS if events(f, "DynamoDB") or events(f, "Kinesis")]
    assert readers == ["StreamFunction"]
    for reader in readers:
        lag = [
            alarm
            for alarm in ALARMS.values()
            if alarm["MetricName"] == "IteratorAge" and named(alarm["Dimensions"][0]["Value"]) == reader
        ]
        assert len(lag) == 1, f"{reader} needs an IteratorAge alarm"


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears() -> None:
    for name, alarm in ALARMS.items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name  # these metrics exist only when used
        assert "Metrics" not in alarm, name  # no metric math: one metric an alarm, as MiniStack takes it
        assert alarm.get("ActionsEnabled", True) is True, name
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_the_alarm_email_is_optional_and_off_by_default() -> None:
    assert PARAMETERS["AlarmEmail"]["Default"] == ""
    pattern = re.compile(PARAMETERS["AlarmEmail"]["AllowedPattern"])
    assert (
        pattern.fullmatch("") and pattern.fullmatch("oncall@example.com") and not pattern.fullmatch("oncall")
    )
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


# --- logs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_logs_to_a_group_of_its_own_kept_log_retention_days(function: str) -> None:
    logging = RESOURCES[function]["Properties"].get("LoggingConfig", {})
    assert logging == {"LogGroup": {"Ref": f"{function}LogGroup"}}, f"{function} needs its own log group"
    group = RESOURCES[f"{function}LogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"] == {
        "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}/{function}"},
        "RetentionInDays": {"Ref": "LogRetentionDays"},
    }


def test_every_log_group_is_a_functions_and_the_retention_is_a_parameter() -> None:
    groups = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert groups == {f"{function}LogGroup" for function in FUNCTIONS}
    retention = PARAMETERS["LogRetentionDays"]
    assert retention["Default"] == 30 and retention["AllowedValues"] == RETENTION_DAYS


@pytest.mark.skipif(not sam_transform.available(), reason="make test installs .venv-sam")
def test_as_deployed_each_function_may_still_write_its_logs() -> None:
    resources = sam_transform.transformed()["Resources"]
    for function in FUNCTIONS:
        properties = resources[function]["Properties"]
        assert properties["LoggingConfig"] == {"LogGroup": {"Ref": f"{function}LogGroup"}}, function
        role = resources[named(properties["Role"]).removesuffix(".Arn")]["Properties"]
        # logs:CreateLogStream and logs:PutLogEvents on any group: the group is the function's to choose
        basic = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        managed = [arn if isinstance(arn, str) else arn.get("Fn::Sub") for arn in role["ManagedPolicyArns"]]
        assert any(arn and arn.endswith(basic.rsplit(":", 1)[1]) for arn in managed), (function, managed)


# --- throttling and concurrency --------------------------------------------------------------------


def test_every_route_is_throttled_by_the_parameters_and_publishes_its_own_metrics() -> None:
    settings = RESOURCES["Api"]["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "DetailedMetricsEnabled": True,  # the dashboard's per-route widgets
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
    }
    # A stage's limits cannot exceed the account's (10,000 requests a second, 5,000 at once, by default).
    assert PARAMETERS["ApiThrottlingRateLimit"]["MaxValue"] <= 10_000
    assert PARAMETERS["ApiThrottlingBurstLimit"]["MaxValue"] <= 5_000
    rate, burst = (PARAMETERS[p]["Default"] for p in ("ApiThrottlingRateLimit", "ApiThrottlingBurstLimit"))
    assert 0 < rate <= burst


@pytest.mark.skipif(not sam_transform.available(), reason="make test installs .venv-sam")
def test_as_deployed_the_default_stage_carries_the_route_settings() -> None:
    resources = sam_transform.transformed()["Resources"]
    (stage,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert stage["StageName"] == "$default"
    assert stage["DefaultRouteSettings"] == RESOURCES["Api"]["Properties"]["DefaultRouteSettings"]


def test_sqs_workers_are_capped_by_maximum_concurrency_and_nothing_reserves_concurrency() -> None:
    # Reserved concurrency on an SQS consumer throttles its batches, and every throttled receive counts
    # towards maxReceiveCount: jobs would be dead-lettered without having failed (docs/operations.md).
    workers = {f: events(f, "SQS") for f in FUNCTIONS if events(f, "SQS")}
    # Clean-ups and reports are few and may wait; an import's chunks are meant to run side by side.
    # A month too big for one writer is written in slices by ReportWorkers at once.
    defaults = {"CleanupWorkerFunction": 2, "ReportWorkerFunction": 32, "ImportWorkerFunction": 20}
    assert set(workers) == set(defaults)
    for worker, sources in workers.items():
        for source in sources:
            assert "MaximumConcurrency" in source.get("ScalingConfig", {}), (
                f"{worker}: cap it with a parameter"
            )
            parameter = PARAMETERS[named(source["ScalingConfig"]["MaximumConcurrency"])]
            assert (parameter["MinValue"], parameter["MaxValue"]) == (2, 1000), worker  # what SQS allows
            assert parameter["Default"] == defaults[worker], worker
    for function in FUNCTIONS:
        assert "ReservedConcurrentExecutions" not in RESOURCES[function]["Properties"], function
    assert "ReservedConcurrentExecutions" not in TEMPLATE["Globals"]["Function"]


# --- the dashboard ---------------------------------------------------------------------------------

SUBSTITUTION = re.compile(r"\$\{([\w:]+(?:\.\w+)?)\}")


def dashboard() -> dict[str, Any]:
    """The dashboard's body, each ${Name} of its Fn::Sub as the text <Name>."""
    body = RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in SUBSTITUTION.findall(body):
        assert name.startswith("AWS::") or name.split(".")[0] in RESOURCES, name
    return dict(json.loads(SUBSTITUTION.sub(r"<\1>", body)))


def widget_metrics() -> list[list[Any]]:
    """Every metric line of every widget: [namespace, name, dimension, value, ...]."""
    return [
        [item for item in line if not isinstance(item, dict)]
        for widget in dashboard()["widgets"]
        for line in widget["properties"].get("metrics", [])
    ]


def emitted_metric_names() -> set[str]:
    """The names functions/ gives `metrics.add_metric`; an f-string's as its leading literal text."""
    names = set()
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_metric":
                (name,) = [keyword.value for keyword in node.keywords if keyword.arg == "name"]
                if isinstance(name, ast.Constant):
                    names.add(str(name.value))
                else:
                    assert isinstance(name, ast.JoinedStr) and isinstance(name.values[0], ast.Constant), path
                    names.add(f"{name.values[0].value!s}*")
    return names


def test_the_dashboard_shows_every_alarm() -> None:
    (widget,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"<{name}.Arn>" for name in ALARMS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_dashboard_shows_every_functions_errors_and_throttles(function: str) -> None:
    shown = {line[1] for line in widget_metrics() if line[0] == "AWS/Lambda" and line[3] == f"<{function}>"}
    assert {"Errors", "Throttles"} <= shown, function


def test_the_dashboard_shows_every_routes_requests_latency_and_errors() -> None:
    for route in http_routes():
        method, path = route.split(" ")
        shown = [
            line[1]
            for line in widget_metrics()
            if dict(zip(line[2::2], line[3::2], strict=True)) == {
                "ApiId": "<Api>", "Stage": "$default", "Method": method, "Resource": path
            }
        ]  # fmt: skip
        assert sorted(shown) == ["4xx", "5xx", "Count", "Latency", "Latency"], route  # p50 and p99


def test_the_dashboard_shows_stream_lag_queue_depths_and_report_durations() -> None:
    lines = [line[:4] for line in widget_metrics()]
    assert ["AWS/Lambda", "IteratorAge", "FunctionName", "<StreamFunction>"] in lines
    assert (
        lines.count(["AWS/Lambda", "Duration", "FunctionName", "<ReportWorkerFunction>"]) == 3
    )  # p50 p99 max
    queues = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue"]
    for queue in queues:
        depth = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"<{queue}.QueueName>"]
        assert depth in lines, queue


def test_the_dashboard_shows_every_business_metric_the_functions_emit() -> None:
    shown = {
        line[1] for line in widget_metrics() if line[0] == "Segments" and line[2:] == ["service", "segments"]
    }
    emitted = emitted_metric_names()
    assert "JobsFailed" in emitted and "MembershipsAdded" in emitted
    for name in emitted:
        assert any(fnmatch_prefix(name, metric) for metric in shown), f"{name} is not on the dashboard"
    for metric in shown:  # and nothing the code no longer emits
        assert any(fnmatch_prefix(name, metric) for name in emitted), metric


def fnmatch_prefix(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def test_every_parameter_is_in_the_operations_guide_with_its_default() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    table = guide.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.MULTILINE))
    assert set(rows) == set(PARAMETERS)
    for name, parameter in PARAMETERS.items():
        default = str(parameter["Default"]).lower() or "(empty)"
        assert rows[name].strip().lower().replace(",", "") == default, name
