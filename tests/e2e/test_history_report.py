"""GET /reports/history as deployed: the presigned link downloads with curl and the CSV holds every change,
including the removals the background clean-up writes after a segment is deleted."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from datetime import UTC, datetime

import pytest

from tests.support.signed_http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]


def report(api: ApiClient, user_id: int) -> dict[str, object]:
    """The user's report for this month, asked again while it is pending (202), as a client would."""
    query = {"period": datetime.now(UTC).strftime("%Y-%m"), "user_id": str(user_id)}
    response = api.get("/reports/history", params=query)
    for _ in range(30):
        if response.status_code != 202:
            break
        time.sleep(1)
        response = api.get("/reports/history", params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


def rows_until(api: ApiClient, user_id: int, wanted: int, timeout_s: float = 30) -> list[dict[str, str]]:
    """History comes from the stream, a moment after the write: the report's rows once there are enough."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = report(api, user_id)
        download = api.download(str(answer["url"]))
        assert download.status_code == 200, download.text
        rows = list(csv.DictReader(io.StringIO(download.content.decode()), delimiter=";"))
        if len(rows) >= wanted or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_the_report_link_downloads_with_curl_and_parses(api: ApiClient) -> None:
    # Given one membership change this month
    assert api.post("/segments", json={"slug": "E2E_REPORTED"}).status_code == 201
    assert api.post("/users/4000/segments", json={"add": ["E2E_REPORTED"]}).status_code == 200
    rows_until(api, 4000, wanted=1)
    # When the report is asked for
    answer = report(api, 4000)
    # Then curl downloads the CSV from the link over TLS, and it holds the change
    completed = subprocess.run(
        ["curl", "-sf", "--cacert", str(api.trust), str(answer["url"])],
        capture_output=True,
        timeout=30,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(completed.stdout.decode()), delimiter=";"))
    assert [(row["user_id"], row["segment"], row["operation"], row["reason"]) for row in rows] == [
        ("4000", "E2E_REPORTED", "add", "manual")
    ]
    assert answer["rows"] == 1


def test_a_deleted_segment_leaves_its_members_a_segment_deleted_row(api: ApiClient) -> None:
    # Given a user in a segment
    assert api.post("/segments", json={"slug": "E2E_CLEANED"}).status_code == 201
    assert api.post("/users/4001/segments", json={"add": ["E2E_CLEANED"]}).status_code == 200
    # When the segment is deleted
    assert api.delete("/segments/E2E_CLEANED").status_code == 204
    # Then the background clean-up removes the member, and the history says why
    rows = rows_until(api, 4001, wanted=2)
    assert [(row["segment"], row["operation"], row["reason"]) for row in rows] == [
        ("E2E_CLEANED", "add", "manual"),
        ("E2E_CLEANED", "remove", "segment_deleted"),
    ]


def test_an_expired_membership_is_in_the_history_at_its_expiry(api: ApiClient) -> None:
    # Given a membership that lives one second
    assert api.post("/segments", json={"slug": "E2E_EXPIRING"}).status_code == 201
    assert (
        api.post(
            "/users/4002/segments", json={"add": [{"slug": "E2E_EXPIRING", "ttl_seconds": 1}]}
        ).status_code
        == 200
    )
    time.sleep(1.5)
    # Then the report shows its removal, reason ttl_expired, whether or not DynamoDB deleted it yet
    rows = rows_until(api, 4002, wanted=2)
    assert [(row["operation"], row["reason"]) for row in rows] == [
        ("add", "manual"),
        ("remove", "ttl_expired"),
    ]


def test_a_missing_month_is_a_header_only_csv(api: ApiClient) -> None:
    # A past month with no history: nothing stored yet, so the functions look for an object that is not
    # there (S3 answers 404 only to a caller allowed to list the bucket, 403 to any other).
    response = api.get("/reports/history", params={"period": "2001-01", "user_id": "4003"})
    assert response.status_code == 200, response.text
    download = api.download(response.json()["url"])
    assert download.content.decode() == "user_id;segment;operation;timestamp;reason\n"
