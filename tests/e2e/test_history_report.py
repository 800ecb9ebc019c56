"""GET /reports/history: the presigned link downloads the CSV from the host, and it parses."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from datetime import UTC, datetime

import pytest
import requests

from local.template import load_stack
from tests.e2e.conftest import REPO_ROOT, RunningRuntime

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def reports_served() -> bool:
    stack = load_stack(REPO_ROOT / "template.yaml", "http://unused")
    return any(route.path == "/reports/history" for function in stack.functions for route in function.routes)


@pytest.mark.skipif(not reports_served(), reason="GET /reports/history is not in template.yaml yet (issue 4)")
def test_the_report_link_downloads_with_curl_and_parses(service: RunningRuntime) -> None:
    # Given one membership change this month
    requests.post(f"{service.url}/segments", json={"slug": "E2E_REPORTED"}, timeout=10)
    requests.post(f"{service.url}/users/4000/segments", json={"add": ["E2E_REPORTED"]}, timeout=10)
    query = {"period": datetime.now(UTC).strftime("%Y-%m"), "user_id": "4000"}
    wait_for_history(service, query)
    # When the report is asked for (a pending answer is asked again, as a client would)
    response = requests.get(f"{service.url}/reports/history", params=query, timeout=30)
    for _ in range(30):
        if response.status_code != 202:
            break
        response = requests.get(f"{service.url}/reports/history", params=query, timeout=30)
    assert response.status_code == 200, response.text
    # Then curl downloads the CSV from the link, and it holds the change
    completed = subprocess.run(
        ["curl", "-sf", response.json()["url"]], capture_output=True, timeout=30, check=True
    )
    rows = list(csv.DictReader(io.StringIO(completed.stdout.decode()), delimiter=";"))
    assert [(row["user_id"], row["segment"], row["operation"]) for row in rows] == [
        ("4000", "E2E_REPORTED", "add")
    ]


def wait_for_history(service: RunningRuntime, query: dict[str, str]) -> None:
    """History comes from the stream, a moment after the write (like Lambda's poller when deployed)."""
    for _ in range(50):
        response = requests.get(f"{service.url}/reports/history", params=query, timeout=30)
        if response.status_code == 200 and response.json()["rows"] > 0:
            return
        time.sleep(0.1)
