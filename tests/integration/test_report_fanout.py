"""An all-users month fanned out over many workers reads, to its user, as the one writer's report: the
same CSV row for row, whatever dies, is lost or is poisoned on the way (docs/background-jobs.md)."""

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tests.conftest import BUCKET, TABLE, indexes_caught_up
from tests.support.api import call
from tests.support.background import LATER, Background, later

MONTH = "2023-05"  # closed and settled: its report is written once
KEY = f"reports/monthly/{MONTH}.csv"
WORKERS = 2  # eight slices
START = datetime(2023, 5, 1, tzinfo=UTC)


class WorkerKilled(BaseException):
    """What Lambda does to a worker past its timeout: nothing of it runs after, no except, no finally."""


@pytest.fixture
def fan_out(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Background]:
    """The report worker as deployed with two workers, fanning every all-users month out at once."""
    from dal import factory
    from shared import settings

    monkeypatch.setenv("REPORT_WORKERS", str(WORKERS))
    monkeypatch.setenv("REPORT_SINGLE_WRITER_SECONDS", "0")
    settings.get_settings.cache_clear()
    factory.get_fan_out.cache_clear()
    yield Background(TABLE)
    monkeypatch.undo()
    settings.get_settings.cache_clear()
    factory.get_fan_out.cache_clear()


def cuts() -> list[datetime]:
    from logic.report_fanout import SLICES_PER_WORKER, plan_slices
    from logic.reports import parse_period

    slices = plan_slices(parse_period(MONTH, datetime.now(UTC)), WORKERS * SLICES_PER_WORKER)
    return [piece.until for piece in slices if piece.until is not None]


def write_month(rows: int = 300, seed: int = 14) -> None:
    """A month of history as the stream's reader writes it, with what slices could get wrong: rows of
    many users at the very instant of every cut and a microsecond before it, and at one cut an expiry
    DynamoDB has not deleted yet whose stored row duplicates it (the report shows it once)."""
    from dal.factory import get_history_store, get_store
    from dal.history_store import AppliedChange
    from models.domain import MEMBER_SHARDS, HistoryRow, MembershipRecord, MembershipState, Operation, Reason

    chance = random.Random(seed)
    moments = [START + timedelta(seconds=chance.uniform(0, 31 * 86_400)) for _ in range(rows)]
    for cut in cuts():
        moments += [cut] * 4 + [cut - timedelta(microseconds=1)] * 2
    changes = [
        (Operation.ADD, Reason.MANUAL),
        (Operation.REMOVE, Reason.MANUAL),
        (Operation.ADD, Reason.IMPORT),
    ]
    history = [
        HistoryRow(at, chance.randint(1, 60), f"SEG_{chance.randint(0, 5)}", *chance.choice(changes))
        for at in moments
    ]
    expiry = cuts()[2]
    history.append(HistoryRow(expiry, 61, "SEG_X", Operation.REMOVE, Reason.TTL_EXPIRED))
    get_history_store().apply(
        [
            AppliedChange(f"event-{number}", row.user_id, [row], Counter())
            for number, row in enumerate(history)
        ]
    )
    store = get_store()
    for user, slug in ((61, "SEG_X"), (62, "SEG_Y")):  # 61's stored row duplicates it; 62's has none
        record = MembershipRecord(user, slug, 1, MembershipState.MEMBER, 1, START, expiry)
        store.membership_item(record, MEMBER_SHARDS).save()
    indexes_caught_up()


def single_writer_report() -> str:
    """The month as one writer reports it: what the fan-out must match byte for byte."""
    from dal.factory import get_history_store, get_store
    from logic.reports import csv_lines, parse_period, report_rows

    now = datetime.now(UTC)
    store, period = get_store(), parse_period(MONTH, now)
    return "".join(csv_lines(report_rows(get_history_store(), store, period, None, now, store.user_records)))


def stored(key: str = KEY) -> str:
    return str(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def tags(key: str = KEY) -> dict[str, str]:
    found = boto3.client("s3").get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in found}


def part_objects() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"reports/parts/{MONTH}/")
    return [entry["Key"] for entry in listed.get("Contents", [])]


def ask_for_the_month() -> None:
    from dal.factory import get_background_reports

    assert get_background_reports().request(KEY, MONTH, None, datetime.now(UTC))


def request_status() -> str:
    item = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"pk": {"S": f"REPORT#{KEY}"}, "sk": {"S": "REQUEST"}}, ConsistentRead=True
    )["Item"]
    return str(item["status"]["S"])


def dies_after(lines: Iterable[str], count: int) -> Iterator[str]:
    for number, line in enumerate(lines):
        if number == count:
            raise WorkerKilled
        yield line


class Writes:
    """Each slice's temporary object as its workers started it; the worker of the `kill_at`-th slice
    started dies halfway through it (0: none does)."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.kill_at = 0


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    from dal.report_storage import S3ReportStorage

    seen = Writes()
    original = S3ReportStorage.write_part

    def write_part(self: S3ReportStorage, key: str, lines: Iterable[str]) -> tuple[int, int]:
        seen.started[key] += 1
        if len(seen.started) == seen.kill_at and seen.started[key] == 1:
            lines = dies_after(lines, 3)
        return original(self, key, lines)

    monkeypatch.setattr(S3ReportStorage, "write_part", write_part)
    return seen


def test_a_fanned_out_month_is_the_single_writers_report_row_for_row(fan_out: Background) -> None:
    # Given a closed month of history, rows at every slice's bounds among them
    write_month()
    # When the month is asked for in the background (as the monthly schedule does)
    ask_for_the_month()
    fan_out.settle()
    # Then its eight slices wrote it, and it is the one writer's CSV, byte for byte, tagged as final
    assert len(part_objects()) == WORKERS * 4
    expected = single_writer_report()
    assert stored() == expected and expected.count("\n") > 300
    assert tags() == {"rows": str(expected.count("\n") - 1), "complete": "true"}
    assert request_status() == "done"
    # And the request answers 200 with a link to that object
    answer = call("api_history_report", query={"period": MONTH})
    assert answer.status == 200 and answer.body["rows"] == expected.count("\n") - 1


def test_rows_of_one_instant_at_a_slice_bound_are_all_in_the_later_slice_in_report_order(
    fan_out: Background,
) -> None:
    # Given rows at the instant of a cut, a microsecond before it, and an undeleted expiry at a cut
    write_month(rows=20)
    ask_for_the_month()
    fan_out.settle()
    # Then each is in the report once, in (time, user, slug) order across every cut
    lines = stored().splitlines()[1:]
    assert len(lines) == len(set(lines))
    cells = [line.split(";") for line in lines]
    keys = [(datetime.fromisoformat(cell[3]), int(cell[0]), cell[1]) for cell in cells]
    assert keys == sorted(keys)
    assert sum(";SEG_X;remove;" in line for line in lines) == 1  # the stored row and its item: one change
    assert sum(";SEG_Y;remove;" in line for line in lines) == 1
    # And the cut instant's rows were written by the slice that starts there, none by the one before
    third_cut = cuts()[2].strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = sorted(part_objects())
    holding = [part for part in parts if third_cut in stored(part)]
    assert holding == [parts[3]]
    assert stored() == single_writer_report()


def test_a_killed_report_worker_resumes_and_the_report_is_complete_every_row_once(
    fan_out: Background, writes: Writes
) -> None:
    # Given a fanned-out month whose worker dies halfway through its fourth slice
    write_month()
    writes.kill_at = 4
    ask_for_the_month()
    with pytest.raises(WorkerKilled):
        fan_out.settle()
    assert len(writes.started) == 4
    # When its message comes back once its claim is stale (as SQS redelivers after the visibility timeout)
    with later(LATER):
        fan_out.settle()
    # Then the report is the one writer's, every row once, and no finished slice was written again
    assert stored() == single_writer_report()
    assert request_status() == "done"
    assert len(writes.started) == WORKERS * 4
    assert sorted(writes.started.values()) == [1] * (WORKERS * 4 - 1) + [2]  # the killed one, again


def test_the_sweeper_sends_a_stalled_slice_again_when_its_message_is_lost(
    fan_out: Background, writes: Writes
) -> None:
    # Given a fanned-out month whose worker died in a slice, and every message of the queue lost
    write_month(rows=40)
    writes.kill_at = 2
    ask_for_the_month()
    with pytest.raises(WorkerKilled):
        fan_out.settle()
    fan_out.purge("report")
    assert fan_out.jobs("report") == 0
    # When the sweeper runs once the slices are due (a claim or a send twenty minutes old)
    indexes_caught_up()
    with later(LATER):
        resent = fan_out.sweep()["report"]
        fan_out.settle()
    # Then it sent the stalled slice and the unsent ones again, and the report is complete
    assert resent >= WORKERS * 4 - 1
    assert stored() == single_writer_report()
    assert request_status() == "done"


def test_a_poisoned_slice_waits_whole_in_the_dead_letter_queue_and_a_redrive_completes_the_report(
    fan_out: Background,
) -> None:
    from dal.history_store import DynamoHistoryStore

    # Given a month one of whose slices no worker can read
    write_month(rows=40)
    poisoned = cuts()[4]
    original = DynamoHistoryStore.all_users_month

    def all_users_month(self: DynamoHistoryStore, month: str, since: datetime | None = None,
                        until: datetime | None = None) -> Iterator[object]:  # fmt: skip
        if since == poisoned:
            raise ValueError("poisoned")
        return original(self, month, since, until)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DynamoHistoryStore, "all_users_month", all_users_month)
        ask_for_the_month()
        fan_out.settle()
        # Then after five tries the slice's job waits, whole, in the dead-letter queue; the report is failed
        (dead,) = fan_out.dead_letters("report")
        assert '"slice":5' in dead["Body"] and '"run":' in dead["Body"]
        assert request_status() == "failed"
        assert "reports/monthly/2023-05.csv" not in [
            entry["Key"] for entry in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
        ]
    # When the cause is mended and the dead-letter queue redriven
    assert fan_out.redrive("report") == 1
    fan_out.settle()
    # Then the report is complete, as one writer writes it
    assert stored() == single_writer_report()
    assert request_status() == "done"


def test_an_all_users_report_past_its_deadline_answers_202_then_200_with_the_fanned_out_csv(
    fan_out: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dal.report_storage
    from shared import settings

    # Given a month, and an API whose deadline passes at once, with a worker that would write it alone
    write_month(rows=40)
    monkeypatch.setenv("REPORT_SINGLE_WRITER_SECONDS", "20")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dal.report_storage, "STOP_CHECK_LINES", 1)
        patch.setenv("REPORT_DEADLINE_SECONDS", "0.000001")
        settings.get_settings.cache_clear()
        # When the month is asked for
        pending = call("api_history_report", query={"period": MONTH})
        # Then the answer is 202 with Retry-After
        assert pending.status == 202 and pending.headers["Retry-After"] == "10"
        assert pending.body == {"status": "pending", "period": MONTH, "user_id": None, "retry_after": 10}
    settings.get_settings.cache_clear()
    # When the background runs: the worker fans out at once (the request missed its deadline already)
    fan_out.settle()
    assert len(part_objects()) == WORKERS * 4
    # Then the same request answers 200, and its link's CSV is the one writer's
    done = call("api_history_report", query={"period": MONTH})
    assert done.status == 200 and done.body["rows"] == single_writer_report().count("\n") - 1
    assert stored() == single_writer_report()


def test_a_report_composed_from_parts_is_the_parts_in_order_big_ones_copied_by_s3(aws: None) -> None:
    from dal.report_storage import MIB, S3ReportStorage
    from logic.report_fanout import Part
    from logic.reports import StoredReport
    from tests.support.calls import counting_calls

    # Given temporary objects, big and small, as slices leave them (moto holds S3 to its 5 MiB parts)
    s3, storage = boto3.client("s3"), S3ReportStorage(BUCKET, 900)
    bodies = [
        bytes([65 + number]) * size for number, size in enumerate([6 * MIB, 1000, 3 * MIB, 12 * MIB + 5, 9])
    ]
    parts = []
    for number, body in enumerate(bodies):
        s3.put_object(Bucket=BUCKET, Key=f"reports/parts/test/{number}.csv", Body=body)
        parts.append(Part(f"reports/parts/test/{number}.csv", len(body)))
    # When they are composed
    with counting_calls() as calls:
        storage.compose("reports/composed.csv", parts, StoredReport(rows=5, complete=True))
    # Then the object is their bytes in order, S3 copied the big ones, and it is described once whole
    assert s3.get_object(Bucket=BUCKET, Key="reports/composed.csv")["Body"].read() == b"".join(bodies)
    assert calls["UploadPartCopy"] == 2 and calls["UploadPart"] == 2 and calls["PutObjectTagging"] == 1
    assert storage.describe("reports/composed.csv") == StoredReport(rows=5, complete=True)


def test_a_small_composed_report_is_one_put_that_carries_its_tags(aws: None) -> None:
    from dal.report_storage import S3ReportStorage
    from logic.report_fanout import Part
    from logic.reports import StoredReport
    from tests.support.calls import counting_calls

    s3, storage = boto3.client("s3"), S3ReportStorage(BUCKET, 900)
    for number in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"reports/parts/small/{number}.csv", Body=f"{number}\n".encode())
    parts = [Part(f"reports/parts/small/{number}.csv", 2) for number in range(3)]
    with counting_calls() as calls:
        storage.compose("reports/small.csv", parts, StoredReport(rows=2, complete=False))
    assert s3.get_object(Bucket=BUCKET, Key="reports/small.csv")["Body"].read() == b"0\n1\n2\n"
    assert calls["PutObject"] == 1 and calls["CreateMultipartUpload"] == 0 and calls["PutObjectTagging"] == 0
    assert storage.describe("reports/small.csv") == StoredReport(rows=2, complete=False)


def test_a_later_request_plans_again_and_the_old_runs_slices_leave_the_jobs_index(
    fan_out: Background,
) -> None:
    from dal.factory import get_background_reports, get_job_index

    # Given a month planned (its slices sent, none written yet), then done and asked for again
    write_month(rows=20)
    ask_for_the_month()
    fan_out.stream()
    assert fan_out.jobs("report", limit=1) == 1  # the plan: eight slices sent
    background = get_background_reports()
    background.finish(KEY)
    assert background.request(KEY, MONTH, None, datetime.now(UTC))
    # When the background runs both runs' messages
    fan_out.settle()
    # Then the report is complete, and no slice of either run is left for the sweeper to send again
    assert stored() == single_writer_report()
    indexes_caught_up()
    assert get_job_index().due("report", datetime.now(UTC) + LATER) == []
