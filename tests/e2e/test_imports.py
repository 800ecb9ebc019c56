"""A bulk import as deployed: create it over signed HTTPS, PUT the file to its presigned link with curl,
poll it to `done`, then read the users' segments, the segment's member counts, the errors CSV and the
history. The file has 1% bad lines and 1% duplicates; its size is SEGMENTS_E2E_IMPORT_LINES (2,000 in
`make test`, 100,000 in `.ci/run`'s import check)."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stack import DeployedStack
from tests.support.deployed import eventually
from tests.support.signed_http import ApiClient

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("deployed")]

LINES = int(os.environ.get("SEGMENTS_E2E_IMPORT_LINES", "2000"))
SLUG = "E2E_IMPORTED"
FIRST_USER = 10_000_000


class ImportFile:
    """A file of LINES data lines after a header: good ids, 1% bad lines, 1% repeats of earlier ids."""

    def __init__(self, lines: int, seed: int = 15) -> None:
        rng = random.Random(seed)
        self.rows: list[str] = ["user_id"]
        self.bad: list[tuple[int, str]] = []  # (line number, value)
        self.users: list[int] = []
        for index in range(lines):
            number = len(self.rows) + 1
            if index % 100 == 37:
                value = rng.choice(["0", "-1", "01", "abc", "1e3", "99999999999999999999"])
                self.bad.append((number, value))
            elif index % 100 == 71 and self.users:
                value = str(rng.choice(self.users))
            else:
                self.users.append(FIRST_USER + index)
                value = str(FIRST_USER + index)
            self.rows.append(value)

    @property
    def text(self) -> bytes:
        return ("\n".join(self.rows) + "\n").encode()

    @property
    def duplicates(self) -> int:
        return len(self.rows) - 1 - len(self.bad) - len(self.users)


def put_with_curl(link: dict[str, Any], body: bytes, trust: str) -> None:
    headers = [argument for name, value in link["headers"].items() for argument in ("-H", f"{name}: {value}")]
    completed = subprocess.run(
        [
            "curl",
            "-sS",
            "-f",
            "--cacert",
            trust,
            "-X",
            link["method"],
            *headers,
            "--data-binary",
            "@-",
            link["url"],
        ],
        input=body,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()


def until_ended(api: ApiClient, location: str, timeout_s: float) -> dict[str, Any]:
    """The import once it has ended, polled as a client would. A poll that API Gateway answers 502 or
    504 (the emulator, one process on two cores, busy with the import's writes) is asked again."""

    def ended() -> dict[str, Any] | None:
        response = api.get(location)
        if response.status_code in (502, 504):
            return None
        assert response.status_code == 200, response.text
        body = dict(response.json())
        return body if body["status"] not in ("awaiting_upload", "running") else None

    job = eventually(ended, timeout_s, interval_s=1)
    assert job, f"the import did not end within {timeout_s} s: {api.get(location).json()}"
    return job


def test_an_uploaded_file_is_applied_with_exact_counts_errors_and_history(
    api: ApiClient, deployed_stack: DeployedStack
) -> None:
    started = time.monotonic()
    file = ImportFile(LINES)
    assert api.post("/segments", json={"slug": SLUG}).status_code == 201
    created = api.post(f"/segments/{SLUG}/imports", json={"mode": "add"})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]

    put_with_curl(created.json()["upload"], file.text, str(api.trust))
    job = until_ended(api, location, timeout_s=120 + LINES / 20)
    elapsed = time.monotonic() - started

    assert job["status"] == "done", job
    assert (job["lines"], job["applied"], job["unchanged"], job["rejected"]) == (
        LINES, len(file.users), file.duplicates, len(file.bad)
    ), job  # fmt: skip
    errors = api.download(job["errors_url"])
    assert errors.status_code == 200
    rows = list(csv.DictReader(io.StringIO(errors.content.decode()), delimiter=";"))
    assert [(int(row["line"]), row["value"].lstrip("'")) for row in rows] == file.bad
    for user in random.Random(1).sample(file.users, 20):
        assert SLUG in api.get(f"/users/{user}/segments").json()["segments"], user

    def counted() -> bool:
        return bool(api.get(f"/segments/{SLUG}").json()["members"]["explicit"] == len(file.users))

    # the stream's reader takes a while longer than the import to reach every user on the emulator
    assert eventually(counted, timeout_s=120 + LINES / 50, interval_s=2), api.get(f"/segments/{SLUG}").json()[
        "members"
    ]
    assert history_rows(deployed_stack) == {(user, "add", "import") for user in file.users}
    user = file.users[0]
    report = api.get(
        "/reports/history", params={"period": datetime.now(UTC).strftime("%Y-%m"), "user_id": str(user)}
    )
    assert report.status_code == 200, report.text
    lines = api.download(report.json()["url"]).content.decode().splitlines()
    assert [line.split(";")[1:3] + line.split(";")[4:] for line in lines[1:]] == [[SLUG, "add", "import"]]
    print(f"\nimport of {LINES:,} lines: done and counted in {elapsed:.0f} s")


def history_rows(stack: DeployedStack) -> set[tuple[int, str, str]]:
    """The stored history rows of the segment, read from the deployed table (every row once: a set of
    the same size as the list)."""
    dynamodb, table = stack.client("dynamodb"), stack.outputs["TableName"]
    found: list[tuple[int, str, str]] = []
    arguments: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(sk, :history) AND slug = :slug",
        "ExpressionAttributeValues": {":history": {"S": "HIST#"}, ":slug": {"S": SLUG}},
    }
    while True:
        page = dynamodb.scan(**arguments)
        found += [
            (int(item["user_id"]["N"]), item["operation"]["S"], item["reason"]["S"]) for item in page["Items"]
        ]
        if "LastEvaluatedKey" not in page:
            break
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(found) == len(set(found)), "a history row was written twice"
    return set(found)


def test_a_malformed_import_is_a_400_and_an_unknown_one_a_404(api: ApiClient) -> None:
    assert api.post("/segments", json={"slug": "E2E_IMPORT_ERRORS"}).status_code == 201
    bad = api.post("/segments/E2E_IMPORT_ERRORS/imports", json={"mode": "remove", "ttl_seconds": 5})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    missing = api.get("/segments/E2E_IMPORT_ERRORS/imports/01J9Z3Q8F6T5E4D3C2B1A0ZYXW")
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/import-not-found"
    assert api.get("/segments/E2E_IMPORT_ERRORS/imports").json() == {"imports": [], "next_cursor": None}
