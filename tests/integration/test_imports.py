"""Bulk imports (`POST /segments/{slug}/imports`): a CSV of user ids uploaded through a presigned link,
applied line by line by parallel chunk jobs, exactly once whatever is retried."""

import csv
import io
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.conftest import TABLE, indexes_caught_up
from tests.support.api import Api, call
from tests.support.background import Background, later

THIS_MONTH = datetime.now(UTC).strftime("%Y-%m")


@pytest.fixture
def background(aws: None) -> Background:
    return Background(TABLE)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 lines: a short file spreads over several chunk jobs."""
    import logic.import_lines

    monkeypatch.setattr(logic.import_lines, "CHUNK_LINES", 4)


def start(api: Api, slug: str, **fields: Any) -> dict[str, Any]:
    answer = api.create_import(slug, **({"mode": "add"} | fields))
    assert answer.status == 201, answer
    return dict(answer.body)


def upload(created: dict[str, Any], text: str | bytes) -> None:
    link = created["upload"]
    body = text.encode() if isinstance(text, str) else text
    response = requests.put(link["url"], data=body, headers=link["headers"], timeout=10)
    assert response.status_code == 200, response.text


def imported(api: Api, background: Background, slug: str, text: str | bytes, **fields: Any) -> dict[str, Any]:
    """Create an import, upload the file, let the background run it; the import as GET answers."""
    created = start(api, slug, **fields)
    upload(created, text)
    background.settle()
    answer = api.get_import(slug, created["import_id"])
    assert answer.status == 200, answer
    return dict(answer.body)


def errors_of(job: dict[str, Any]) -> list[dict[str, str]]:
    assert job["errors_url"], job
    text = requests.get(job["errors_url"], timeout=10).text
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    assert reader.fieldnames == ["line", "value", "error"]
    return list(reader)


def history(user_id: int | None = None) -> list[tuple[str, str, str, str]]:
    """(user, slug, operation, reason) of this month's report, once the stream has caught up."""
    indexes_caught_up()
    query = {"period": THIS_MONTH, **({"user_id": str(user_id)} if user_id else {})}
    answer = call("api_history_report", query=query)
    assert answer.status == 200, answer
    text = requests.get(answer.body["url"], timeout=10).text
    rows = [line.split(";") for line in text.splitlines()[1:]]
    return [(user, slug, operation, reason) for user, slug, operation, _, reason in rows]


def test_an_import_is_created_awaiting_its_upload(api: Api) -> None:
    api.create_segment("AVITO_DISCOUNT_30")
    answer = api.create_import("AVITO_DISCOUNT_30", mode="add", ttl_seconds=86400)
    assert answer.status == 201
    body = answer.body
    assert answer.headers["Location"] == f"/segments/AVITO_DISCOUNT_30/imports/{body['import_id']}"
    assert body["segment"] == "AVITO_DISCOUNT_30" and body["mode"] == "add"
    assert body["status"] == "awaiting_upload" and body["expires_at"] is None
    assert body["upload"]["method"] == "PUT" and body["upload"]["headers"] == {"content-type": "text/csv"}
    assert body["upload"]["url"].startswith("https://")
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["upload"]["expires_at"]) - created == pytest.approx(
        timedelta(minutes=15), abs=timedelta(seconds=2)
    )
    assert (body["lines"], body["applied"], body["unchanged"], body["rejected"]) == (0, 0, 0, 0)
    assert body["errors_url"] is body["started_at"] is body["finished_at"] is body["failure"] is None
    again = api.get_import("AVITO_DISCOUNT_30", body["import_id"])
    assert again.status == 200 and again.body == body | {"upload": None}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"mode": "replace"},
        {"mode": "add", "extra": 1},
        {"mode": "remove", "ttl_seconds": 60},
        {"mode": "add", "ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"},
        {"mode": "add", "ttl_seconds": 0},
        {"mode": "add", "ttl_seconds": 1.5},
        {"mode": "add", "expires_at": "2020-01-01T00:00:00Z"},
        {"mode": "add", "expires_at": "tomorrow"},
    ],
)
def test_a_malformed_import_is_400_and_creates_nothing(api: Api, fields: dict[str, Any]) -> None:
    api.create_segment("S")
    answer = call("api_create_import", path={"slug": "S"}, body=fields)
    assert answer.status == 400, answer
    assert answer.problem["errors"]
    assert api.list_imports("S").body["imports"] == []


def test_unknown_segments_and_imports_are_404(api: Api) -> None:
    assert api.create_import("NOPE", mode="add").problem["status"] == 404
    # a bad body is 400 before the slug is looked up, as for a user's change
    past = call(
        "api_create_import", path={"slug": "NOPE"}, body={"mode": "add", "expires_at": "2020-01-01T00:00:00Z"}
    )
    assert past.status == 400 and past.problem["errors"][0]["field"] == "expires_at", past
    api.create_segment("S")
    missing = api.get_import("S", "01J9Z3Q8F6T5E4D3C2B1A0ZYXW")
    assert missing.status == 404 and missing.problem["type"] == "/problems/import-not-found"
    assert api.get_import("S", "not-an-id").status == 400
    assert api.list_imports("NOPE").status == 404


def test_a_file_is_applied_line_by_line_with_exact_counts(api: Api, background: Background) -> None:
    api.create_segment("S")
    api.change_user(2, add=["S"])  # in already: unchanged
    text = "\ufeffuser_id\r\n1\r\n2\r\n\r\n3\r\nabc\r\n3\r\n01\r\n  \r\n99999999999999999999\r\n4"
    job = imported(api, background, "S", text)
    assert job["status"] == "done" and job["failure"] is None
    assert (job["lines"], job["applied"], job["unchanged"], job["rejected"]) == (8, 3, 2, 3)
    assert job["applied"] + job["unchanged"] + job["rejected"] == job["lines"]
    assert [(row["line"], row["value"]) for row in errors_of(job)] == [
        ("6", "abc"),
        ("8", "01"),
        ("10", "99999999999999999999"),
    ]
    for user in (1, 2, 3, 4):
        assert api.segments_of(user) == ["S"]
    background.settle()
    assert Counter(row for row in history() if row[1] == "S") == Counter(
        {("1", "S", "add", "import"): 1, ("3", "S", "add", "import"): 1, ("4", "S", "add", "import"): 1,
         ("2", "S", "add", "manual"): 1}
    )  # fmt: skip
    members = api.get_segment("S").body["members"]
    assert (members["explicit"], members["opted_out"]) == (4, 0)


def test_the_errors_csv_lists_every_bad_line_and_defuses_formulas(api: Api, background: Background) -> None:
    api.create_segment("S")
    lines = ["1", "=cmd|' /C calc'!A0", "-1", "0", "1e3", "a;b", 'say "hi"', "x" * 200, "2"]
    job = imported(api, background, "S", "\n".join(lines) + "\n")
    rows = errors_of(job)
    assert [row["line"] for row in rows] == ["2", "3", "4", "5", "6", "7", "8"]
    assert rows[0]["value"] == "'=cmd|' /C calc'!A0" and rows[1]["value"] == "'-1"
    assert rows[4]["value"] == "a;b" and rows[5]["value"] == 'say "hi"'
    assert rows[6]["value"] == "x" * 64 + "…"
    assert all(row["error"] for row in rows)
    assert (job["applied"], job["rejected"]) == (2, 7)


def test_a_file_without_bad_lines_has_no_errors_link(api: Api, background: Background) -> None:
    api.create_segment("S")
    job = imported(api, background, "S", "1\n2\n")
    assert job["errors_url"] is None and job["rejected"] == 0


def test_an_empty_file_is_done_with_nothing(api: Api, background: Background) -> None:
    api.create_segment("S")
    job = imported(api, background, "S", "")
    assert job["status"] == "done" and job["lines"] == 0


def test_duplicates_across_chunks_are_applied_once(
    api: Api, background: Background, small_chunks: None
) -> None:
    api.create_segment("S")
    users = [random.Random(5).randrange(1, 30) for _ in range(60)]
    job = imported(api, background, "S", "\n".join(map(str, users)))
    distinct = len(set(users))
    assert (job["lines"], job["applied"], job["unchanged"]) == (60, distinct, 60 - distinct)
    background.settle()
    adds = [row for row in history() if row[1] == "S"]
    assert len(adds) == distinct and len(set(adds)) == distinct
    assert api.get_segment("S").body["members"]["explicit"] == distinct


def test_each_user_is_changed_as_a_one_slug_change_would(api: Api, background: Background) -> None:
    api.create_segment("M")
    api.create_segment("P", auto_percent=100)
    api.change_user(1, add=[{"slug": "M", "ttl_seconds": 60}])

    def membership_of_m() -> dict[str, Any]:
        (found,) = [m for m in api.user_segments(1, details=True).body["memberships"] if m["slug"] == "M"]
        return dict(found)

    added_at = membership_of_m()["added_at"]
    job = imported(api, background, "M", "1\n", ttl_seconds=3600)
    assert (job["applied"], job["unchanged"]) == (0, 1)  # in already: its expiry becomes the import's
    membership = membership_of_m()
    assert membership["added_at"] == added_at
    expires = datetime.fromisoformat(membership["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    removal = imported(api, background, "P", "5\n6\n", mode="remove")
    assert (removal["applied"], removal["unchanged"]) == (2, 0)  # out of the bucket: opt-outs
    assert api.segments_of(5) == [] and api.segments_of(6) == []
    again = imported(api, background, "P", "5\n", mode="remove")
    assert (again["applied"], again["unchanged"]) == (0, 1)
    background.settle()
    assert api.get_segment("P").body["members"]["opted_out"] == 2


def test_an_import_to_a_percentage_segment_adds_silently_whom_the_bucket_holds(
    api: Api, background: Background
) -> None:
    api.create_segment("P", auto_percent=100)
    job = imported(api, background, "P", "7\n")
    assert (job["applied"], job["unchanged"]) == (0, 1)
    background.settle()
    assert [row for row in history() if row[1] == "P"] == []
    assert api.get_segment("P").body["members"]["explicit"] == 1  # a stored membership now


def test_a_removal_import_writes_import_rows(api: Api, background: Background) -> None:
    api.create_segment("S")
    for user in (1, 2):
        api.change_user(user, add=["S"])
    job = imported(api, background, "S", "1\n2\n3\n", mode="remove")
    assert (job["applied"], job["unchanged"]) == (2, 1)
    background.settle()
    removes = sorted(row for row in history() if row[2] == "remove")
    assert removes == [("1", "S", "remove", "import"), ("2", "S", "remove", "import")]


def test_an_expiring_import_sets_its_fixed_expiry(api: Api, background: Background) -> None:
    api.create_segment("S")
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    job = imported(api, background, "S", "1\n", expires_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert job["expires_at"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    (membership,) = api.user_segments(1, details=True).body["memberships"]
    assert membership["expires_at"] == job["expires_at"]


def test_a_later_upload_to_the_same_link_is_ignored(api: Api, background: Background) -> None:
    api.create_segment("S")
    created = start(api, "S")
    upload(created, "1\n")
    background.settle()
    upload(created, "2\n3\n")
    background.settle()
    job = api.get_import("S", created["import_id"]).body
    assert (job["status"], job["lines"], job["applied"]) == ("done", 1, 1)
    assert api.segments_of(2) == []


def test_a_chunk_job_killed_midway_and_run_again_counts_every_user_once(
    api: Api, background: Background, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dies after some of a chunk's users are written; the chunk's job comes back and the
    import ends with every user applied once, counted once, with one history row each."""
    import dal.imports

    api.create_segment("S")
    created = start(api, "S")
    upload(created, "\n".join(str(user) for user in range(1, 21)))
    commits = Counter[str]()
    real = dal.imports.DynamoImportStore.commit_import_users

    class Killed(BaseException):
        pass

    def dying(self: Any, *arguments: Any) -> None:
        commits["done"] += 1
        if commits["done"] in (3, 9):
            real(self, *arguments)  # it commits, and the worker dies before it knows
            raise Killed
        real(self, *arguments)

    monkeypatch.setattr(dal.imports.DynamoImportStore, "commit_import_users", dying)
    for _ in range(4):
        try:
            background.settle()
        except Killed:
            continue
    monkeypatch.setattr(dal.imports.DynamoImportStore, "commit_import_users", real)
    background.settle()
    with later(timedelta(minutes=30)):  # the sweeper sends the jobs the kills left unacknowledged
        background.sweep()
    background.settle()
    job = api.get_import("S", created["import_id"]).body
    assert (job["status"], job["lines"], job["applied"], job["unchanged"]) == ("done", 20, 20, 0)
    background.settle()
    adds = [row for row in history() if row[1] == "S"]
    assert len(adds) == 20 and len(set(adds)) == 20
    assert api.get_segment("S").body["members"]["explicit"] == 20


def test_deleting_the_segment_fails_the_import_and_cleans_what_it_wrote(
    api: Api, background: Background, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logic.imports

    api.create_segment("S")
    created = start(api, "S")
    upload(created, "\n".join(str(user) for user in range(1, 41)))
    chunks_run = Counter[str]()
    real = logic.imports.apply_users

    def deleting_after_two(*arguments: Any) -> Any:
        chunks_run["n"] += 1
        if chunks_run["n"] == 3:
            assert api.delete_segment("S").status == 204
        return real(*arguments)

    monkeypatch.setattr(logic.imports, "apply_users", deleting_after_two)
    background.finish()
    job = call("api_get_import", path={"slug": "S", "import_id": created["import_id"]})
    assert job.status == 404  # the segment is gone, and its imports with it
    assert all(api.segments_of(user) == [] for user in range(1, 41))
    rows = [row for row in history() if row[1] == "S"]
    added = {row[0] for row in rows if row[2] == "add"}
    removed = {row[0] for row in rows if row[2] == "remove" and row[3] == "segment_deleted"}
    assert added and added == removed  # every member the import wrote was cleaned, with history
    assert len(added) < 40


def test_a_failed_import_says_why(api: Api, background: Background, monkeypatch: pytest.MonkeyPatch) -> None:
    import logic.imports

    api.create_segment("S")
    created = start(api, "S")
    upload(created, "1\n")
    monkeypatch.setattr(logic.imports, "MAX_LINES", 0)
    background.settle()
    job = api.get_import("S", created["import_id"]).body
    assert job["status"] == "failed" and job["failure"] == logic.imports.TOO_LONG
    assert job["finished_at"] and api.segments_of(1) == []


def test_an_unused_link_expires(api: Api, background: Background) -> None:
    api.create_segment("S")
    created = start(api, "S")
    indexes_caught_up()
    with later(timedelta(minutes=21)):
        background.sweep()
    job = api.get_import("S", created["import_id"]).body
    assert job["status"] == "expired" and job["finished_at"]
    upload(created, "1\n")  # too late: ignored
    background.settle()
    assert api.segments_of(1) == []


def test_imports_are_listed_newest_first_page_by_page(api: Api, background: Background) -> None:
    api.create_segment("S")
    made = [start(api, "S")["import_id"] for _ in range(5)]
    first = api.list_imports("S", limit="2").body
    assert [job["import_id"] for job in first["imports"]] == made[::-1][:2]
    rest = api.list_imports("S", limit="10", cursor=first["next_cursor"]).body
    assert [job["import_id"] for job in rest["imports"]] == made[::-1][2:]
    assert rest["next_cursor"] is None
    assert api.list_imports("S", cursor="bm90LWFuLWlk").status == 400
    api.delete_segment("S")
    api.create_segment("S")
    assert api.list_imports("S").body["imports"] == []  # a re-created slug starts without imports


def test_a_chunk_that_keeps_failing_waits_whole_in_its_dead_letter_queue_until_redriven(
    api: Api, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dal.import_files

    api.create_segment("S")
    created = start(api, "S")
    upload(created, "1\n2\n")
    real = dal.import_files.S3ImportFiles.source_range

    def broken(*_: Any) -> bytes:
        raise OSError("S3 is down")

    monkeypatch.setattr(dal.import_files.S3ImportFiles, "source_range", broken)
    background.settle()
    (dead,) = background.dead_letters("import")
    assert '"step":"chunk"' in dead["Body"]
    with later(timedelta(minutes=30)):
        background.sweep()  # a failed chunk is not sent again: it waits for its redrive
    assert background.sqs.receive_message(QueueUrl=background.urls["import"]).get("Messages") is None
    monkeypatch.setattr(dal.import_files.S3ImportFiles, "source_range", real)
    assert background.redrive("import") == 1
    background.settle()
    job = api.get_import("S", created["import_id"]).body
    assert (job["status"], job["applied"]) == ("done", 2)


def test_a_user_changed_between_the_imports_read_and_its_commit_is_decided_again(
    api: Api, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Users are committed several to a transaction; one a request changed meanwhile fails the
    transaction, and each of its users is then decided again and committed on its own."""
    import dal.imports

    api.create_segment("S")
    real = dal.imports.DynamoImportStore.import_states
    raced = Counter[str]()

    def racing(self: Any, slug: str, import_id: str, user_ids: list[int]) -> Any:
        states = real(self, slug, import_id, user_ids)
        if not raced["done"] and 7 in user_ids:
            raced["done"] += 1
            assert api.change_user(7, add=["S"]).status == 200  # after the read, before the commit
        return states

    monkeypatch.setattr(dal.imports.DynamoImportStore, "import_states", racing)
    job = imported(api, background, "S", "\n".join(str(user) for user in range(1, 11)))
    assert raced["done"] == 1
    assert (job["applied"], job["unchanged"]) == (9, 1)
    assert all(api.segments_of(user) == ["S"] for user in range(1, 11))
    background.settle()
    rows = [row for row in history() if row[1] == "S"]
    assert sorted(rows) == sorted(
        [(str(user), "S", "add", "import") for user in range(1, 11) if user != 7]
        + [("7", "S", "add", "manual")]
    )


def test_a_chunk_of_bad_lines_after_the_deletion_fails_the_import_too(
    api: Api, background: Background, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logic.imports

    api.create_segment("S")
    created = start(api, "S")
    upload(created, "1\n2\n3\n4\nbad\nworse\n\n-1\n")  # a chunk of users, then a chunk of bad lines
    real = logic.imports.read_chunk

    def deleting_before_the_second(data: bytes, first_line: int) -> Any:
        if first_line > 1:
            assert api.delete_segment("S").status == 204
        return real(data, first_line)

    monkeypatch.setattr(logic.imports, "read_chunk", deleting_before_the_second)
    background.settle()
    monkeypatch.setattr(logic.imports, "read_chunk", real)
    api.create_segment("S")  # the slug again: the import was the deleted generation's
    from dal.factory import get_import_store

    job = get_import_store().find_import("S", created["import_id"])
    assert job is not None and job.status.value == "failed" and job.failure == "segment deleted"
