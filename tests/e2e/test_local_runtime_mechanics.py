"""The runtime itself, over real HTTP, with the small fake stack in tests/fixtures/local_runtime."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests

from tests.e2e.conftest import REPO_ROOT, RunningRuntime, start_runtime, stop_runtime

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def eventually(probe: Callable[[], Any], timeout_s: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def seen(runtime: RunningRuntime) -> list[dict[str, Any]]:
    return list(requests.get(f"{runtime.url}/seen", timeout=5).json())


def test_a_request_becomes_a_payload_2_event(fake_stack: RunningRuntime) -> None:
    # Given a request with a repeated query parameter, cookies and an encoded path parameter
    # When it reaches the echo function
    response = requests.get(
        f"{fake_stack.url}/items/a%20b?x=1&x=2", headers={"Cookie": "c=1; d=2"}, timeout=5
    )
    # Then the function saw what API Gateway would have sent
    event = response.json()["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["cookies"] == ["c=1", "d=2"]
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["http"]["method"] == "GET"
    assert response.headers["apigw-requestid"] == event["requestContext"]["requestId"]


def test_a_literal_route_wins_over_a_parameter(fake_stack: RunningRuntime) -> None:
    response = requests.get(f"{fake_stack.url}/items/special", timeout=5)
    assert response.json()["event"]["routeKey"] == "GET /items/special"


def test_a_binary_body_arrives_base64_encoded(fake_stack: RunningRuntime) -> None:
    response = requests.post(
        f"{fake_stack.url}/echo/x/y",
        data=b"\xff\x00",
        headers={"content-type": "application/octet-stream"},
        timeout=5,
    )
    event = response.json()["event"]
    assert event["isBase64Encoded"] is True
    assert event["body"] == "/wA="
    assert event["pathParameters"] == {"proxy": "x/y"}


def test_a_chunked_body_arrives_whole(fake_stack: RunningRuntime) -> None:
    chunks = iter([b'{"a": ', b"1}"])
    response = requests.post(
        f"{fake_stack.url}/echo/chunked", data=chunks, headers={"content-type": "application/json"}, timeout=5
    )
    assert response.json()["event"]["body"] == '{"a": 1}'


def test_response_cookies_become_set_cookie_headers(fake_stack: RunningRuntime) -> None:
    response = requests.get(f"{fake_stack.url}/items/1", timeout=5)
    assert response.cookies.get("a") == "1"
    assert response.cookies.get("b") == "2"


def test_a_base64_response_is_decoded(fake_stack: RunningRuntime) -> None:
    response = requests.get(f"{fake_stack.url}/items/1?mode=binary", timeout=5)
    assert response.content == b"\x00\x01\x02"


def test_a_bare_return_value_is_a_json_200(fake_stack: RunningRuntime) -> None:
    response = requests.get(f"{fake_stack.url}/items/1?mode=bare", timeout=5)
    assert (response.status_code, response.json()) == (200, {"bare": True})
    assert response.headers["content-type"] == "application/json"


def test_a_crash_is_a_500_internal_server_error(fake_stack: RunningRuntime) -> None:
    response = requests.get(f"{fake_stack.url}/items/1?mode=crash", timeout=5)
    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})


def test_no_route_is_api_gateways_404(fake_stack: RunningRuntime) -> None:
    response = requests.delete(f"{fake_stack.url}/items/1", timeout=5)
    assert (response.status_code, response.json()) == (404, {"message": "Not Found"})


def test_stream_records_reach_the_stream_function_through_its_filter(fake_stack: RunningRuntime) -> None:
    # Given a thing written through the API
    requests.put(f"{fake_stack.url}/things/streamed", json={}, timeout=5)

    # Then its INSERT record arrives, as Lambda builds it, well within a second
    def delivered() -> list[dict[str, Any]]:
        return [
            entry["record"]
            for entry in seen(fake_stack)
            if entry["kind"] == "stream"
            and entry["record"]["dynamodb"]["Keys"]["pk"]["S"] == "THING#streamed"
        ]

    records = eventually(delivered, timeout_s=1.0)
    assert records, fake_stack.log()
    record = records[0]
    assert record["eventName"] == "INSERT"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"].startswith("arn:aws:dynamodb:us-east-1:123456789012:table/")
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    assert "userIdentity" not in record


def test_ttl_deletions_carry_the_service_identity(fake_stack: RunningRuntime) -> None:
    # Given a thing that expires in a second
    requests.put(f"{fake_stack.url}/things/expiring", json={"ttl": int(time.time()) + 1}, timeout=5)

    # When the sweeper deletes it, Then the REMOVE record says DynamoDB did it
    def removal() -> list[dict[str, Any]]:
        return [
            entry["record"]
            for entry in seen(fake_stack)
            if entry["kind"] == "stream"
            and entry["record"]["eventName"] == "REMOVE"
            and entry["record"]["dynamodb"]["Keys"]["pk"]["S"] == "THING#expiring"
        ]

    records = eventually(removal, timeout_s=5.0)
    assert records, fake_stack.log()
    assert records[0]["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


def test_a_record_that_keeps_failing_goes_to_the_on_failure_queue(fake_stack: RunningRuntime) -> None:
    # Given a thing the stream function reports as failed every time
    requests.put(f"{fake_stack.url}/things/poison", json={"fail": True}, timeout=5)
    sqs = boto3.client(
        "sqs",
        endpoint_url=fake_stack.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    queue_url = sqs.get_queue_url(QueueName="segments-local-failures")["QueueUrl"]

    # Then after its retries its metadata lands on the OnFailure queue
    def message() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])

    messages = eventually(message, timeout_s=5.0)
    assert messages, fake_stack.log()
    info = json.loads(messages[0]["Body"])
    assert info["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert info["requestContext"]["approximateInvokeCount"] == 3
    assert info["DDBStreamBatchInfo"]["batchSize"] == 1


def test_a_scheduled_function_runs_on_demand(fake_stack: RunningRuntime) -> None:
    # When the documented command invokes it
    completed = subprocess.run(
        [sys.executable, "-m", "local.invoke", "MonthlyFunction", "--url", fake_stack.url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # Then it ran with an EventBridge scheduled event
    assert completed.returncode == 0, completed.stderr
    events = [entry["event"] for entry in seen(fake_stack) if entry["kind"] == "schedule"]
    assert events[-1]["detail-type"] == "Scheduled Event"
    assert events[-1]["source"] == "aws.events"


def test_a_presigned_link_downloads_with_curl(fake_stack: RunningRuntime) -> None:
    url = requests.get(f"{fake_stack.url}/link", timeout=5).json()["url"]
    assert url.startswith(fake_stack.aws_url)
    completed = subprocess.run(["curl", "-sf", url], capture_output=True, timeout=10, check=False)
    assert completed.stdout == b"a;b\n1;2\n"


def test_data_survives_a_restart(tmp_path: Any) -> None:
    # Given a runtime holding a thing
    template = REPO_ROOT / "tests" / "fixtures" / "local_runtime" / "template.yaml"
    first = start_runtime(tmp_path, template)
    requests.put(f"{first.url}/things/kept", json={}, timeout=5)
    requests.get(f"{first.url}/link", timeout=5)
    stop_runtime(first)
    # When it starts again on the same data directory
    second = start_runtime(tmp_path, template)
    try:
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=second.aws_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        items = dynamodb.scan(TableName="segments-local-Table")["Items"]
        # Then the thing is still there, and the restore was not replayed to the stream function
        assert {"pk": {"S": "THING#kept"}, "sk": {"S": "A"}} in items
        assert seen(second) == []
    finally:
        stop_runtime(second)
