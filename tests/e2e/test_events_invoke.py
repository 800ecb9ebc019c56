"""Each events/ file invoked on its deployed function (what `sam local invoke -e` or `aws lambda invoke`
does): the built artifact and its layer, the function's own role, the emulator's Lambda runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.support.table import load_yaml_template

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

EVENTS = Path(__file__).resolve().parents[2] / "events"


def function_of_event() -> dict[str, str]:
    """events/{handler module}.json -> the logical id of the function whose handler it is."""
    found = {}
    for logical_id, resource in load_yaml_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            module = resource["Properties"]["Handler"].split(".")[1]
            found[module] = logical_id
    return found


EVENT_FILES = sorted(path.stem for path in EVENTS.glob("*.json") if path.stem != "env")


def test_every_function_has_an_event_and_every_event_a_function() -> None:
    assert set(EVENT_FILES) == set(function_of_event())


def invoke(stack: DeployedStack, logical_id: str, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    answer = stack.client("lambda", read_timeout=120).invoke(
        FunctionName=stack.function_name(logical_id), Payload=json.dumps(event).encode()
    )
    payload = answer["Payload"].read()
    return answer, json.loads(payload) if payload else None


@pytest.mark.parametrize("name", EVENT_FILES)
def test_the_event_runs_on_its_deployed_function(deployed_stack: DeployedStack, name: str) -> None:
    # Given the events/ file, as `sam local invoke -e events/{name}.json` takes it
    event = json.loads((EVENTS / f"{name}.json").read_text())
    # When it is invoked on the deployed function
    answer, result = invoke(deployed_stack, function_of_event()[name], event)
    # Then the function ran without error and answered as its trigger expects
    assert "FunctionError" not in answer, result
    if name.startswith("api_"):
        assert result["statusCode"] < 500, result
        if result.get("body"):
            assert result["headers"]["Content-Type"].startswith(
                ("application/json", "application/problem+json")
            )
            json.loads(result["body"])
    elif name in ("stream_table", "queue_cleanup", "queue_reports", "queue_imports"):
        assert result == {"batchItemFailures": []}, result
        if name == "stream_table":
            # Lambda sends a batch again when part of it failed: its records applied before are found
            # with a consistent read of their marks, which the function's policy must allow
            answer, result = invoke(deployed_stack, function_of_event()[name], event)
            assert "FunctionError" not in answer and result == {"batchItemFailures": []}, result
    elif name == "scheduled_monthly_report":
        assert result["period"] == "2023-08", result  # the month before the event's time
    else:
        assert name == "scheduled_sweeper" and set(result) == {"cleanup", "report", "import", "expired"}, (
            result
        )
