"""History from the stream, exactly once per change, and the month's CSV report on S3."""

import csv
import io
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import boto3
import pandas as pd
import pytest

from tests.conftest import BUCKET, TABLE, indexes_caught_up
from tests.support.api import Api, call
from tests.support.background import Background
from tests.support.calls import counting_calls
from tests.support.events import history_records, load_event
from tests.support.streams import StreamTap, deliver, template_filter

THIS_MONTH = datetime.now(UTC).strftime("%Y-%m")


class History:
    """The stream processor fed as Lambda would, and reports read back from S3."""

    def __init__(self, background: Background | None = None) -> None:
        self.tap = StreamTap(TABLE)
        self.accept = template_filter("StreamFunction")
        self.background = background

    def process(self) -> list[dict[str, Any]]:
        """The stream's records so far, delivered to its reader (the jobs it sends are not run)."""
        if self.background is not None:
            self.background.stream()
            return []
        records = [record for record in self.tap.new_records() if self.accept(record)]
        return deliver("stream_table", records, batch_size=100)

    def report(self, period: str = THIS_MONTH, user_id: int | None = None) -> tuple[dict[str, Any], str]:
        """The report once the stream is delivered and the month index caught up, as a client sees it
        a few seconds after the changes."""
        self.process()
        indexes_caught_up()
        query = {"period": period, **({"user_id": str(user_id)} if user_id else {})}
        answer = call("api_history_report", query=query)
        assert answer.status == 200, answer
        key = urlparse(answer.body["url"]).path.split(f"/{BUCKET}/", 1)[-1].lstrip("/")
        if key.startswith(BUCKET):
            key = key[len(BUCKET) + 1 :]
        body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        return answer.body, body


def rows_of(text: str) -> list[tuple[str, str, str, str]]:
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    assert reader.fieldnames == ["user_id", "segment", "operation", "timestamp", "reason"]
    return [(row["user_id"], row["segment"], row["operation"], row["reason"]) for row in reader]


@pytest.fixture
def history(aws: None) -> History:
    return History()


def test_seed_scenario_history_per_user_and_for_everyone(api: Api, history: History) -> None:
    for slug in ["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30", "AVITO_DISCOUNT_50"]:
        api.create_segment(slug)
    api.change_user(1000, add=["AVITO_VOICE_MESSAGES", "AVITO_PERFORMANCE_VAS", "AVITO_DISCOUNT_30"])
    api.change_user(1002, add=["AVITO_VOICE_MESSAGES", "AVITO_DISCOUNT_50"])
    api.change_user(1000, remove=["AVITO_PERFORMANCE_VAS"])

    answer, text = history.report(user_id=1000)
    assert answer["rows"] == 4 and answer["user_id"] == 1000 and answer["period"] == THIS_MONTH
    assert rows_of(text) == [
        ("1000", "AVITO_DISCOUNT_30", "add", "manual"),
        ("1000", "AVITO_PERFORMANCE_VAS", "add", "manual"),
        ("1000", "AVITO_VOICE_MESSAGES", "add", "manual"),
        ("1000", "AVITO_PERFORMANCE_VAS", "remove", "manual"),
    ]
    everyone, text = history.report()
    assert everyone["user_id"] is None and everyone["rows"] == 6
    assert [row[0] for row in rows_of(text)] == ["1000", "1000", "1000", "1002", "1002", "1000"]
    frame = pd.read_csv(io.StringIO(text), sep=";")
    assert list(frame.columns) == ["user_id", "segment", "operation", "timestamp", "reason"]
    assert len(frame) == 6 and frame["timestamp"].str.endswith("Z").all()
    # The history replayed in order gives exactly each user's stored memberships
    for user in (1000, 1002):
        replay: set[str] = set()
        for user_id, slug, operation, _ in rows_of(text):
            if int(user_id) == user:
                (replay.add if operation == "add" else replay.discard)(slug)
        assert sorted(replay) == api.segments_of(user)


def test_unchanged_adds_and_noop_removes_write_no_history(api: Api, history: History) -> None:
    api.create_segment("A")
    api.create_segment("B")
    api.change_user(7, add=["A"])
    api.change_user(7, add=["A"], remove=["B"])
    api.change_user(7, add=[{"slug": "A", "ttl_seconds": 3600}])
    _, text = history.report(user_id=7)
    assert rows_of(text) == [("7", "A", "add", "manual")]


def test_redelivered_and_overlapping_batches_never_duplicate_rows(api: Api, history: History) -> None:
    api.create_segment("A")
    api.change_user(1, add=["A"])
    api.change_user(1, remove=["A"])
    records = [record for record in history.tap.new_records() if history.accept(record)]
    deliver("stream_table", records)
    deliver("stream_table", records)  # the whole batch again
    deliver("stream_table", records[1:] + records[:1], batch_size=1)  # overlapping, out of order
    _, text = history.report(user_id=1)
    assert rows_of(text) == [("1", "A", "add", "manual"), ("1", "A", "remove", "manual")]


def test_a_poisoned_record_fails_alone_and_the_rest_lands(api: Api, history: History) -> None:
    api.create_segment("A")
    api.change_user(1, add=["A"])
    api.change_user(2, add=["A"])
    records = [record for record in history.tap.new_records() if history.accept(record)]
    poisoned = {
        **records[0],
        "dynamodb": {**records[0]["dynamodb"], "NewImage": {"entity": {"S": "MEMBERSHIP"}}},
    }
    response = deliver("stream_table", [poisoned, records[1]])
    assert response == [{"batchItemFailures": [{"itemIdentifier": poisoned["dynamodb"]["SequenceNumber"]}]}]
    _, text = history.report()
    assert rows_of(text) == [("2", "A", "add", "manual")]


def test_segment_deletion_writes_segment_deleted_rows_at_the_deletion_time(
    seeded: Api, history: History
) -> None:
    seeded.delete_segment("AVITO_VOICE_MESSAGES")
    Background(TABLE).finish()
    _, text = history.report()
    removals = [row for row in rows_of(text) if row[2] == "remove"]
    assert removals == [
        ("1000", "AVITO_VOICE_MESSAGES", "remove", "segment_deleted"),
        ("1002", "AVITO_VOICE_MESSAGES", "remove", "segment_deleted"),
    ]
    stamps = {
        row["timestamp"]
        for row in csv.DictReader(io.StringIO(text), delimiter=";")
        if row["operation"] == "remove"
    }
    assert len(stamps) == 1  # both at the one deletion time


def test_expiry_appears_once_whether_or_not_ttl_deleted_it(api: Api, history: History) -> None:
    api.create_segment("A")
    api.change_user(1, add=[{"slug": "A", "ttl_seconds": 1}])
    api.change_user(2, add=[{"slug": "A", "ttl_seconds": 1}])
    import time

    time.sleep(1.2)
    assert api.segments_of(1) == [] and api.segments_of(2) == []
    # DynamoDB's TTL deletes user 1's item (a REMOVE by the service principal); user 2's is still there
    history.process()
    client = boto3.client("dynamodb")
    client.delete_item(TableName=TABLE, Key={"pk": {"S": "USER#1"}, "sk": {"S": "SEG#A"}})
    records = [record for record in history.tap.new_records() if history.accept(record)]
    for record in records:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    deliver("stream_table", records)
    _, text = history.report()
    assert rows_of(text) == [
        ("1", "A", "add", "manual"),
        ("2", "A", "add", "manual"),
        ("1", "A", "remove", "ttl_expired"),
        ("2", "A", "remove", "ttl_expired"),
    ]
    _, text = history.report(user_id=2)
    assert rows_of(text) == [("2", "A", "add", "manual"), ("2", "A", "remove", "ttl_expired")]


def test_readding_over_an_undeleted_expired_membership_shows_the_expiry_then_the_add(
    api: Api, history: History
) -> None:
    api.create_segment("A")
    api.change_user(3, add=[{"slug": "A", "ttl_seconds": 1}])
    import time

    time.sleep(1.2)
    assert api.change_user(3, add=["A"]).body["added"] == ["A"]
    _, text = history.report(user_id=3)
    assert rows_of(text) == [
        ("3", "A", "add", "manual"),
        ("3", "A", "remove", "ttl_expired"),
        ("3", "A", "add", "manual"),
    ]


def test_month_boundaries_are_utc(aws: None) -> None:
    records = history_records()
    add, remove = records
    add["dynamodb"]["NewImage"]["change_at"] = {"S": "2023-08-31T23:59:59.999999Z"}
    remove["dynamodb"]["OldImage"] = add["dynamodb"]["NewImage"]
    remove["dynamodb"]["NewImage"]["change_at"] = {"S": "2023-09-01T00:00:00.000000Z"}
    assert deliver("stream_table", records) == [{"batchItemFailures": []}]
    august = call("api_history_report", query={"period": "2023-08", "user_id": "1000"})
    september = call("api_history_report", query={"period": "2023-09", "user_id": "1000"})
    assert (august.body["rows"], september.body["rows"]) == (1, 1)


def test_history_event_file_writes_the_spec_example_rows(aws: None) -> None:
    assert deliver("stream_table", history_records()) == [{"batchItemFailures": []}]
    answer = call("api_history_report")  # events/api_history_report.json: 2023-08, user 1000
    assert answer.status == 200 and answer.body["rows"] == 2
    key = "reports/users/1000/2023-08.csv"
    text = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert text == (
        "user_id;segment;operation;timestamp;reason\n"
        "1000;AVITO_VOICE_MESSAGES;add;2023-08-29T10:00:00Z;manual\n"
        "1000;AVITO_VOICE_MESSAGES;remove;2023-08-30T12:00:05Z;manual\n"
    )


def test_closed_month_is_written_once_and_linked_again(aws: None) -> None:
    deliver("stream_table", history_records())
    first = call("api_history_report")
    s3 = boto3.client("s3")
    stamp = s3.head_object(Bucket=BUCKET, Key="reports/users/1000/2023-08.csv")["LastModified"]
    second = call("api_history_report")
    assert second.body["rows"] == first.body["rows"] == 2
    assert s3.head_object(Bucket=BUCKET, Key="reports/users/1000/2023-08.csv")["LastModified"] == stamp


def test_a_report_is_stored_with_its_description_in_one_write(aws: None) -> None:
    deliver("stream_table", history_records())
    with counting_calls() as calls:
        answer = call("api_history_report")
    assert answer.status == 200 and answer.body["rows"] == 2
    # The object and the tags that say it is finished appear together, or not at all.
    assert calls["PutObject"] == 1 and calls["PutObjectTagging"] == 0
    tags = boto3.client("s3").get_object_tagging(Bucket=BUCKET, Key="reports/users/1000/2023-08.csv")[
        "TagSet"
    ]
    assert {tag["Key"]: tag["Value"] for tag in tags} == {"rows": "2", "complete": "true"}


def test_a_report_bigger_than_a_part_is_uploaded_in_parts_and_described_once_whole(aws: None) -> None:
    from dal.report_storage import PART_BYTES, S3ReportStorage
    from logic.reports import StoredReport

    line = "1000;AVITO_VOICE_MESSAGES;add;2023-08-29T10:00:00Z;manual\n"
    count = PART_BYTES // len(line) + 1000  # one full part and a bit
    storage = S3ReportStorage(BUCKET, 900)
    with counting_calls() as calls:
        stored = storage.save("reports/big.csv", (line for _ in range(count)), lambda: False,
                              lambda lines: StoredReport(rows=lines - 1, complete=False))  # fmt: skip
    assert stored == StoredReport(rows=count - 1, complete=False)
    assert (
        calls["UploadPart"] == 2 and calls["CompleteMultipartUpload"] == 1 and calls["PutObjectTagging"] == 1
    )
    assert storage.describe("reports/big.csv") == stored
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key="reports/big.csv")["Body"].read()
    assert len(body) == count * len(line) and body.endswith(line.encode())


def test_empty_month_is_a_header_only_csv(aws: None) -> None:
    answer = call("api_history_report", query={"period": "2020-02"})
    assert answer.status == 200 and answer.body["rows"] == 0
    text = boto3.client("s3").get_object(Bucket=BUCKET, Key="reports/monthly/2020-02.csv")["Body"].read()
    assert text == b"user_id;segment;operation;timestamp;reason\n"


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"period": "2023-13"},
        {"period": "2023-8"},
        {"period": "23-08"},
        {"period": "2999-01"},
        {"period": "../../etc"},
        {"period": "2023-08", "user_id": "0"},
        {"period": "2023-08", "user_id": "01"},
        {"period": "2023-08", "format": "xlsx"},
    ],
)
def test_bad_report_requests_are_400(aws: None, query: dict[str, str]) -> None:
    answer = call("api_history_report", query=query)
    assert answer.status == 400, answer
    assert answer.problem["status"] == 400


def test_monthly_schedule_writes_the_previous_month_and_twice_is_the_same_object(aws: None) -> None:
    import importlib

    from tests.support.api import FakeContext

    background = Background(TABLE)
    deliver("stream_table", history_records())
    background.settle()
    indexes_caught_up()
    handler = importlib.import_module("handlers.scheduled_monthly_report").lambda_handler
    event = load_event("scheduled_monthly_report")  # fired 2023-09-01T01:00Z
    # The schedule asks for the report; its job writes it
    assert handler(event, FakeContext()) == {"period": "2023-08", "status": "requested"}
    assert handler(event, FakeContext()) == {"period": "2023-08", "status": "pending"}
    background.settle()
    s3 = boto3.client("s3")
    first = s3.get_object(Bucket=BUCKET, Key="reports/monthly/2023-08.csv")
    assert first["Body"].read().decode().count("\n") == 3
    # A second firing finds it written for good
    assert handler(event, FakeContext()) == {"period": "2023-08", "status": "written"}
    background.settle()
    second = s3.get_object(Bucket=BUCKET, Key="reports/monthly/2023-08.csv")
    assert first["ETag"] == second["ETag"] and first["LastModified"] == second["LastModified"]


def test_report_past_its_deadline_is_finished_in_the_background(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dal.report_storage

    deliver("stream_table", history_records())
    monkeypatch.setattr(dal.report_storage, "STOP_CHECK_LINES", 1)
    monkeypatch.setenv("REPORT_DEADLINE_SECONDS", "0.000001")
    from shared import settings

    settings.get_settings.cache_clear()
    try:
        pending = call("api_history_report")
        assert pending.status == 202 and pending.headers["Retry-After"] == "10"
        assert pending.body == {"status": "pending", "period": "2023-08", "user_id": 1000, "retry_after": 10}
        again = call("api_history_report")
        assert again.status == 202  # asked once; the worker has not run yet
        background = Background(TABLE)
        background.stream()
        assert background.jobs("report") == 1
    finally:
        monkeypatch.undo()
        settings.get_settings.cache_clear()
    done = call("api_history_report")
    assert done.status == 200 and done.body["rows"] == 2


def test_report_worker_event_file_writes_its_report(aws: None) -> None:
    from dal.factory import get_background_reports
    from handlers.queue_reports import lambda_handler
    from shared.clock import utc_now
    from tests.support.api import FakeContext

    deliver("stream_table", history_records())
    key = "reports/users/1000/2023-08.csv"  # the report events/queue_reports.json names
    assert get_background_reports().request(key, "2023-08", 1000, utc_now())
    assert lambda_handler(load_event("queue_reports"), FakeContext()) == {"batchItemFailures": []}
    text = boto3.client("s3").get_object(Bucket=BUCKET, Key="reports/users/1000/2023-08.csv")["Body"].read()
    assert text.count(b"\n") == 3


@pytest.mark.slow
def test_deleting_a_5000_member_segment_writes_5000_segment_deleted_rows_once_each(
    api: Api, history: History
) -> None:
    from pynamodb.models import BatchWrite

    from dal.entities import MembershipItem
    from dal.factory import get_store
    from models.domain import MEMBER_SHARDS, MembershipRecord, MembershipState
    from shared.clock import utc_now

    # Given a segment with 5,000 members (written in batches, as a bulk import would)
    api.create_segment("BIG")
    store, now = get_store(), utc_now()
    with BatchWrite(MembershipItem) as batch:
        for user in range(1, 5001):
            record = MembershipRecord(user, "BIG", 1, MembershipState.MEMBER, 1, now)
            batch.save(store.membership_item(record, MEMBER_SHARDS))
    history.tap.new_records()  # the bulk import itself is not under test
    # When it is deleted, cleaned up in the background, and the stream delivered twice over
    background = Background(TABLE)
    background.tap.new_records()
    indexes_caught_up()
    assert api.delete_segment("BIG").status == 204
    background.finish()
    records = [record for record in history.tap.new_records() if history.accept(record)]
    deliver("stream_table", records, batch_size=100)
    deliver("stream_table", records[::-1], batch_size=100)
    # Then the history holds exactly one segment_deleted row per member (counted with a Scan: moto
    # answers a GSI Query by sorting the whole table, so the report path is tested at smaller scale)
    rows = [
        item
        for item in _scan_all()
        if item.get("entity", {}).get("S") == "HISTORY" and item["slug"]["S"] == "BIG"
    ]
    removals = [item for item in rows if item["operation"]["S"] == "remove"]
    assert len(rows) == len(removals) == 5000
    assert {item["reason"]["S"] for item in removals} == {"segment_deleted"}
    assert len({item["user_id"]["N"] for item in removals}) == 5000


def _scan_all() -> list[dict[str, Any]]:
    client, items, start = boto3.client("dynamodb"), [], None
    while True:
        page = client.scan(TableName=TABLE, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def test_per_user_report_shows_entries_into_and_out_of_percentage_segments(
    api: Api, history: History
) -> None:
    # Given a segment that takes every user, then none, then half
    api.create_segment("RAMP", auto_percent=100)
    api.patch_segment("RAMP", auto_percent=0)
    # When user 42's month is reported, though 42 was never written anywhere
    answer, text = history.report(user_id=42)
    # Then the bucket's entry and exit are there, derived from the rule changes, as auto rows
    assert rows_of(text) == [("42", "RAMP", "add", "auto"), ("42", "RAMP", "remove", "auto")]
    assert answer["rows"] == 2
    # And the all-users report does not enumerate users that were never seen
    _, everyone = history.report()
    assert rows_of(everyone) == []


def test_a_poisoned_record_fails_alone_and_the_others_land(api: Api, history: History) -> None:
    """Lambda retries what the answer reports failed, then sends it to the OnFailure queue (template.yaml);
    the retries and the queue as deployed are checked by tests/e2e/test_background_jobs.py."""
    from tests.support.api import FakeContext

    handler = __import__("handlers.stream_table", fromlist=["lambda_handler"]).lambda_handler
    api.create_segment("A")
    api.change_user(1, add=["A"])
    api.change_user(2, add=["A"])
    good = [record for record in history.tap.new_records() if history.accept(record)]
    poisoned = {**good[0], "dynamodb": {**good[0]["dynamodb"], "NewImage": {"entity": {"S": "MEMBERSHIP"}}}}
    poisoned["dynamodb"]["SequenceNumber"] = "999"
    # When a batch with the poisoned record in the middle is delivered
    answer = handler({"Records": [good[0], poisoned, good[1]]}, FakeContext())
    # Then the good records' rows landed, and only the poisoned one is reported failed
    _, text = history.report()
    assert rows_of(text) == [("1", "A", "add", "manual"), ("2", "A", "add", "manual")]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "999"}]}
