"""The PostgreSQL twin (sql/): schema constraints, the named queries on the seed scenario, buckets."""

import itertools
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from logic.buckets import (
    BUCKETS,
    bucket_of,
    gbhash,
    largest_free_gap,
    lowest_fitting_gap,
    resize_range,
)
from logic.import_lines import read_chunk
from logic.imports import new_import_id
from models.domain import ImportMode, ImportStatus
from tests.support.sql_queries import (
    D30,
    D50,
    VAS,
    VOICE,
    apply_line,
    data_lines,
    fresh_database,
    import_file,
    load_queries,
)

pytestmark = [pytest.mark.sql, pytest.mark.xdist_group("sql")]

QUERIES = load_queries()

T0 = datetime(2023, 8, 29, 10, 0, tzinfo=UTC)
AUGUST = {"period_start": datetime(2023, 8, 1, tzinfo=UTC), "period_end": datetime(2023, 9, 1, tzinfo=UTC)}


@dataclass
class Db:
    """One connection inside one transaction, rolled back after the test."""

    conn: psycopg.Connection[dict[str, Any]]

    def run(self, name: str, **params: Any) -> list[dict[str, Any]]:
        cursor = self.conn.execute(QUERIES[name], params)
        return cursor.fetchall() if cursor.description else []

    def create(self, slug: str, now: datetime = T0, **fields: Any) -> list[dict[str, Any]]:
        params = {"description": "", "auto_percent": None, "exclusion_group": None} | fields
        return self.run("create_segment", slug=slug, now=now, **params)

    def change_user(
        self,
        user_id: int,
        now: datetime,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        **add_fields: Any,
    ) -> dict[str, str]:
        """POST /users/{id}/segments as the documented transaction (here a savepoint)."""
        outcomes: dict[str, str] = {}
        with self.conn.transaction():
            self.run("lock_user", user_id=user_id)
            missing = self.run("missing_segments", slugs=[*add, *remove])
            assert missing == [], missing
            self.run("expire_memberships", user_id=user_id, now=now)
            for slug in add:
                params = {"expires_at": None} | add_fields
                (row,) = self.run("add_user_segment", user_id=user_id, slug=slug, now=now, **params)
                outcomes[slug] = row["outcome"]
            for slug in remove:
                (row,) = self.run("remove_user_segment", user_id=user_id, slug=slug, now=now)
                outcomes[slug] = row["outcome"]
        return outcomes

    def active(self, user_id: int, now: datetime) -> list[str]:
        return [row["slug"] for row in self.run("active_segments", user_id=user_id, now=now)]

    def start_import(self, slug: str, now: datetime = T0, **fields: Any) -> dict[str, Any]:
        """POST /segments/{slug}/imports; the import (awaiting its upload)."""
        params = {"mode": "add", "ttl_seconds": None, "expires_at": None} | fields
        (row,) = self.run(
            "create_import", import_id=new_import_id(now), slug=slug, now=now,
            upload_expires_at=now + timedelta(minutes=15), **params,
        )  # fmt: skip
        return row

    def imported(self, slug: str, text: str | bytes, now: datetime = T0, **fields: Any) -> dict[str, Any]:
        """An import created, its file uploaded and every line applied; the import as GET shows it."""
        job = self.start_import(slug, now, **fields)
        import_file(self.conn, job["import_id"], text.encode() if isinstance(text, str) else text, now)
        return self.get_import(slug, job["import_id"])

    def get_import(self, slug: str, import_id: str) -> dict[str, Any]:
        (row,) = self.run("get_import", slug=slug, import_id=import_id)
        return row

    def counts(self, slug: str, now: datetime = T0) -> tuple[int, int]:
        (row,) = self.run("member_counts", slugs=[slug], now=now)
        return row["explicit"], row["opted_out"]

    def report(self, now: datetime, user_id: int | None = None) -> list[tuple[Any, ...]]:
        if user_id is None:
            rows = self.run("history_report_all_users", now=now, **AUGUST)
        else:
            rows = self.run("history_report_for_user", user_id=user_id, now=now, **AUGUST)
        return [(r["user_id"], r["segment"], r["operation"], r["at"], r["reason"]) for r in rows]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_database("segments_sql") as dsn:
        yield dsn


@pytest.fixture
def db(database: str) -> Iterator[Db]:
    with psycopg.connect(database, row_factory=dict_row) as conn:
        yield Db(conn)
        conn.rollback()


def seed_scenario(db: Db) -> None:
    for slug in (VOICE, VAS, D30, D50):
        db.create(slug, now=T0 - timedelta(hours=1))
    db.change_user(1000, T0, add=[VOICE, VAS, D30])
    db.change_user(1002, T0 + timedelta(seconds=1), add=[VOICE, D50])


# --- the seed scenario through the named queries ------------------------------------------


def test_seed_scenario_gives_each_user_their_active_segments(db: Db) -> None:
    seed_scenario(db)

    assert db.active(1000, T0 + timedelta(minutes=1)) == [D30, VAS, VOICE]
    assert db.active(1002, T0 + timedelta(minutes=1)) == [D50, VOICE]
    assert db.active(1004, T0 + timedelta(minutes=1)) == []


def test_seed_scenario_history_report_lists_every_add_in_order(db: Db) -> None:
    seed_scenario(db)

    rows = db.report(now=T0 + timedelta(minutes=1))

    later = T0 + timedelta(seconds=1)
    assert rows == [
        (1000, D30, "add", T0, "manual"),
        (1000, VAS, "add", T0, "manual"),
        (1000, VOICE, "add", T0, "manual"),
        (1002, D50, "add", later, "manual"),
        (1002, VOICE, "add", later, "manual"),
    ]
    assert db.report(now=T0 + timedelta(minutes=1), user_id=1002) == rows[3:]
    assert db.report(now=T0 + timedelta(minutes=1), user_id=1004) == []


def test_adding_twice_and_removing_what_the_user_lacks_change_nothing(db: Db) -> None:
    seed_scenario(db)

    outcomes = db.change_user(1000, T0 + timedelta(hours=1), add=[VOICE], remove=[D50])

    assert outcomes == {VOICE: "unchanged", D50: "unchanged"}
    (voice,) = [m for m in db.run("active_segments", user_id=1000, now=T0) if m["slug"] == VOICE]
    assert voice["added_at"] == T0
    assert len(db.report(now=T0 + timedelta(hours=2))) == 5


def test_removing_a_segment_writes_a_manual_remove(db: Db) -> None:
    seed_scenario(db)
    later = T0 + timedelta(hours=2)

    assert db.change_user(1000, later, remove=[VAS]) == {VAS: "removed"}

    assert db.active(1000, later) == [D30, VOICE]
    assert db.report(later, user_id=1000)[-1] == (1000, VAS, "remove", later, "manual")


def test_an_expired_membership_is_gone_and_reported_once_at_its_expiry(db: Db) -> None:
    seed_scenario(db)
    added = T0 + timedelta(days=1)
    expiry = added + timedelta(seconds=86400)
    db.change_user(1002, added, add=[D30], expires_at=expiry)
    expected = (1002, D30, "remove", expiry, "ttl_expired")

    assert D30 in db.active(1002, expiry - timedelta(seconds=1))
    assert D30 not in db.active(1002, expiry)
    assert db.report(now=expiry + timedelta(hours=1))[-1] == expected  # due, not swept yet
    pending = db.run("expired_membership_history", user_id=None, now=expiry, **AUGUST)
    assert [tuple(row.values()) for row in pending] == [expected]

    db.run("expire_memberships", user_id=None, now=expiry + timedelta(hours=1))

    assert db.report(now=expiry + timedelta(hours=2)).count(expected) == 1
    assert db.run("expired_membership_history", user_id=None, now=expiry, **AUGUST) == []


def test_deleting_a_segment_removes_it_from_every_member_with_history(db: Db) -> None:
    seed_scenario(db)
    deleted = T0 + timedelta(hours=3)

    (gone,) = db.run("delete_segment", slug=VOICE, now=deleted)

    assert gone["removed_members"] == 2
    assert db.active(1000, deleted) == [D30, VAS]
    assert db.active(1002, deleted) == [D50]
    assert db.report(deleted)[-2:] == [
        (1000, VOICE, "remove", deleted, "segment_deleted"),
        (1002, VOICE, "remove", deleted, "segment_deleted"),
    ]
    assert db.run("get_segment", slug=VOICE) == []
    assert db.run("delete_segment", slug=VOICE, now=deleted) == []


def test_a_deleted_slug_comes_back_as_a_new_generation_without_members(db: Db) -> None:
    seed_scenario(db)
    db.run("delete_segment", slug=VOICE, now=T0 + timedelta(hours=3))

    (again,) = db.create(VOICE, now=T0 + timedelta(hours=4))

    assert again["generation"] == 2
    assert db.active(1000, T0 + timedelta(hours=5)) == [D30, VAS]


def test_list_segments_pages_by_slug_in_byte_order(db: Db) -> None:
    seed_scenario(db)
    db.create("aardvark")  # lower case sorts after upper case in byte order

    first = db.run("list_segments", after=None, limit=2)
    second = db.run("list_segments", after=first[1]["slug"], limit=2)
    last = db.run("list_segments", after=second[1]["slug"], limit=2)

    assert [r["slug"] for r in first] == [D30, D50, VAS]  # one extra row: there is a next page
    assert [r["slug"] for r in second] == [VAS, VOICE, "aardvark"]
    assert [r["slug"] for r in last] == ["aardvark"]


def test_missing_segments_names_every_slug_without_a_live_segment(db: Db) -> None:
    seed_scenario(db)

    missing = db.run("missing_segments", slugs=[VOICE, "NOPE_B", "NOPE_A"])

    assert [r["slug"] for r in missing] == ["NOPE_A", "NOPE_B"]


def test_patch_changes_only_what_it_is_told(db: Db) -> None:
    db.create(VOICE, description="voice")

    (patched,) = db.run(
        "patch_segment", slug=VOICE, now=T0, set_description=False, description=None,
        set_auto_percent=True, auto_percent=10,
    )  # fmt: skip

    assert (patched["description"], patched["auto_percent"]) == ("voice", 10)
    assert (patched["bucket_start"], patched["bucket_end"]) == (0, 1000)


# --- percentage segments ------------------------------------------------------------------


def test_a_percentage_segment_holds_exactly_the_users_whose_bucket_is_in_range(db: Db) -> None:
    db.create(VOICE, auto_percent=33.33)
    users = range(1, 301)

    members = [u for u in users if VOICE in db.active(u, T0)]

    assert members == [u for u in users if bucket_of(VOICE, u) < 3333]
    assert db.report(T0) == []  # nothing is stored per user


def test_an_opt_out_wins_over_the_bucket_and_a_later_add_brings_the_user_back(db: Db) -> None:
    db.create(VOICE, auto_percent=50)
    user = next(u for u in range(1, 100) if bucket_of(VOICE, u) < 5000)
    later = T0 + timedelta(hours=1)

    assert db.change_user(user, T0, remove=[VOICE]) == {VOICE: "removed"}
    assert db.active(user, T0) == []
    db.run("patch_segment", slug=VOICE, now=T0, set_description=False, description=None,
           set_auto_percent=True, auto_percent=100)  # fmt: skip
    assert db.active(user, T0) == []
    assert db.change_user(user, later, add=[VOICE]) == {VOICE: "added"}
    assert db.run("active_segments", user_id=user, now=later)[0]["source"] == "manual"
    assert [row[2:] for row in db.report(later, user_id=user)] == [
        ("remove", T0, "manual"),
        ("add", later, "manual"),
    ]


def test_adding_a_user_the_bucket_already_holds_is_unchanged(db: Db) -> None:
    db.create(VOICE, auto_percent=50)
    user = next(u for u in range(1, 100) if bucket_of(VOICE, u) < 5000)

    assert db.change_user(user, T0, add=[VOICE]) == {VOICE: "unchanged"}
    assert db.run("active_segments", user_id=user, now=T0)[0]["source"] == "manual"


def test_an_expiry_the_bucket_still_covers_is_no_change_and_one_it_does_not_is_one_row(db: Db) -> None:
    # Given two users explicitly in a 50 % segment until `expiry`: one the bucket holds, one it does not
    db.create(VOICE, auto_percent=50, now=T0 - timedelta(hours=1))
    held = next(u for u in range(1, 100) if bucket_of(VOICE, u) < 5000)
    outside = next(u for u in range(1, 100) if bucket_of(VOICE, u) >= 5000)
    expiry = T0 + timedelta(hours=1)
    for user in (held, outside):
        db.change_user(user, T0, add=[VOICE], expires_at=expiry)
    later = expiry + timedelta(hours=1)
    # When the expiry passes: reported before the sweep, then swept
    due = db.report(later)
    db.run("expire_memberships", user_id=None, now=later)
    # Then only the user who left has a row, once, in both reports
    left = (outside, VOICE, "remove", expiry, "ttl_expired")
    assert [row for row in due if row[3] == expiry] == [left]
    assert [row for row in db.report(later) if row[3] == expiry] == [left]
    assert [row[2:] for row in db.report(later, user_id=held)] == []
    assert db.active(held, later) == [VOICE] and db.active(outside, later) == []


def test_exclusion_group_segments_take_the_lowest_gap_and_grow_upward(db: Db) -> None:
    group: dict[str, Any] = {"exclusion_group": "discounts"}
    (d30,) = db.create(D30, auto_percent=30, **group)
    (d50,) = db.create(D50, auto_percent=50, **group)
    db.run("delete_segment", slug=D30, now=T0)
    (small,) = db.create("AVITO_DISCOUNT_10", auto_percent=10, **group)

    assert (d30["bucket_start"], d30["bucket_end"]) == (0, 3000)
    assert (d50["bucket_start"], d50["bucket_end"]) == (3000, 8000)
    assert (small["bucket_start"], small["bucket_end"]) == (0, 1000)
    (grown,) = db.run("patch_segment", slug="AVITO_DISCOUNT_10", now=T0, set_description=False,
                      description=None, set_auto_percent=True, auto_percent=30)  # fmt: skip
    assert (grown["bucket_start"], grown["bucket_end"]) == (0, 3000)
    assert db.run("patch_segment", slug="AVITO_DISCOUNT_10", now=T0, set_description=False,
                  description=None, set_auto_percent=True, auto_percent=31) == []  # fmt: skip
    assert db.create("AVITO_DISCOUNT_25", auto_percent=25, **group) == []
    assert db.run("largest_free_gap", exclusion_group="discounts", except_slug=None) == [{"free_units": 2000}]


def test_no_user_is_in_two_segments_of_one_group(db: Db) -> None:
    group: dict[str, Any] = {"exclusion_group": "discounts"}
    db.create(D30, auto_percent=30, **group)
    db.create(D50, auto_percent=70, **group)

    for user in range(1, 201):
        assert len(set(db.active(user, T0)) & {D30, D50}) == 1


def test_rule_changes_record_every_range_a_segment_held(db: Db) -> None:
    db.create(VOICE, auto_percent=10)
    db.run("patch_segment", slug=VOICE, now=T0 + timedelta(hours=1), set_description=False,
           description=None, set_auto_percent=True, auto_percent=20)  # fmt: skip
    db.run("delete_segment", slug=VOICE, now=T0 + timedelta(hours=2))

    changes = db.run("segment_rule_changes", period_end=AUGUST["period_end"])

    assert [(c["seed"], c["bucket_start"], c["bucket_end"]) for c in changes] == [
        (VOICE, 0, 1000),
        (VOICE, 0, 2000),
        (VOICE, None, None),
    ]


# --- constraints --------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["-starts-with-dash", "has space", "ünicode", "x" * 101, ""])
def test_a_malformed_slug_is_rejected(db: Db, slug: str) -> None:
    with pytest.raises(errors.CheckViolation), db.conn.transaction():
        db.create(slug)


def test_a_second_live_segment_with_the_same_slug_is_rejected(db: Db) -> None:
    db.create(VOICE)

    with pytest.raises(errors.UniqueViolation), db.conn.transaction():
        db.create(VOICE)


def test_overlapping_ranges_in_one_group_are_rejected(db: Db) -> None:
    insert = """INSERT INTO segment (slug, generation, auto_percent, exclusion_group, bucket_start,
                bucket_end, created_at, updated_at) VALUES (%s, 1, 30, %s, %s, %s, now(), now())"""
    db.conn.execute(insert, (D30, "discounts", 0, 3000))
    db.conn.execute(insert, (VAS, "other_group", 0, 3000))  # another group: its own buckets

    with pytest.raises(errors.ExclusionViolation), db.conn.transaction():
        db.conn.execute(insert, (D50, "discounts", 2999, 5999))


def test_user_id_zero_is_rejected(db: Db) -> None:
    db.create(VOICE)

    with pytest.raises(errors.CheckViolation), db.conn.transaction():
        db.run("add_user_segment", user_id=0, slug=VOICE, now=T0, expires_at=None)


def test_a_description_over_1000_characters_is_rejected(db: Db) -> None:
    with pytest.raises(errors.CheckViolation), db.conn.transaction():
        db.create(VOICE, description="x" * 1001)


def test_an_exclusion_group_without_a_percentage_is_rejected(db: Db) -> None:
    with pytest.raises(errors.CheckViolation), db.conn.transaction():
        db.create(VOICE, exclusion_group="discounts")


# --- imports (POST /segments/{slug}/imports) and member counts ----------------------------

COUNTS = ("lines", "applied", "unchanged", "rejected")


def counts_of(job: dict[str, Any]) -> tuple[int, ...]:
    return tuple(job[name] for name in COUNTS)


def user_in(slug: str, inside: bool, skip: int = 0) -> int:
    """A user whose bucket of `slug` falls inside (or outside) [0, 50 %)."""
    found = (u for u in range(1, 1000) if (bucket_of(slug, u) < 5000) == inside)
    return next(itertools.islice(found, skip, None))


def test_an_import_is_created_awaiting_its_upload(db: Db) -> None:
    db.create(D30)

    job = db.start_import(D30, mode="add", ttl_seconds=86400)

    assert (job["segment"], job["mode"], job["status"], job["expires_at"]) == (
        D30,
        "add",
        "awaiting_upload",
        None,
    )
    assert counts_of(job) == (0, 0, 0, 0)
    assert job["started_at"] is job["finished_at"] is job["failure"] is None
    assert db.get_import(D30, job["import_id"])["ttl_seconds"] == 86400


def test_an_import_of_an_unknown_segment_is_no_row(db: Db) -> None:
    rows = db.run(
        "create_import", import_id=new_import_id(T0), slug="NOPE", mode="add", ttl_seconds=None,
        expires_at=None, now=T0, upload_expires_at=T0 + timedelta(minutes=15),
    )  # fmt: skip

    assert rows == []


def test_a_file_is_applied_line_by_line_with_exact_counts(db: Db) -> None:
    # Given a segment user 2 is in already
    db.create("S", now=T0 - timedelta(hours=1))
    db.change_user(2, T0, add=["S"])
    later = T0 + timedelta(minutes=1)
    text = "\ufeffuser_id\r\n1\r\n2\r\n\r\n3\r\nabc\r\n3\r\n01\r\n  \r\n99999999999999999999\r\n4"
    # When a file with a BOM, a header, blank, bad and duplicate lines is imported
    job = db.imported("S", text, now=later)
    # Then every line is counted once, the bad ones kept with their line numbers
    assert (job["status"], job["failure"]) == ("done", None)
    assert counts_of(job) == (8, 3, 2, 3)
    errors_csv = db.run("import_errors", import_id=job["import_id"])
    assert [(row["line"], row["value"]) for row in errors_csv] == [(6, "abc"), (8, "01"), (10, "9" * 20)]
    assert all(db.active(user, later) == ["S"] for user in (1, 2, 3, 4))
    assert db.report(later) == [
        (2, "S", "add", T0, "manual"),
        (1, "S", "add", later, "import"),
        (3, "S", "add", later, "import"),
        (4, "S", "add", later, "import"),
    ]
    assert db.counts("S", later) == (4, 0)


def test_retried_and_duplicate_lines_are_applied_once_and_counted_once(db: Db) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]
    db.run("start_import", import_id=import_id, lines=3, bytes=8, now=T0)
    lines = [(1, "7"), (2, "7"), (3, "x")]

    first = [apply_line(db.conn, import_id, line, value, T0) for line, value in lines]
    again = [apply_line(db.conn, import_id, line, value, T0) for line, value in reversed(lines)]

    assert first == ["applied", "duplicate", "rejected"]
    assert again == ["rejected", "duplicate", "applied"]
    (done,) = db.run("finish_import", import_id=import_id, now=T0)
    assert counts_of(done) == (3, 1, 1, 1)
    assert db.report(T0) == [(7, "S", "add", T0, "import")]


def test_an_import_is_done_only_once_every_line_has_its_outcome(db: Db) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]
    db.run("start_import", import_id=import_id, lines=2, bytes=4, now=T0)
    apply_line(db.conn, import_id, 1, "1", T0)

    assert db.run("finish_import", import_id=import_id, now=T0) == []
    apply_line(db.conn, import_id, 2, "2", T0)
    assert db.run("finish_import", import_id=import_id, now=T0)[0]["status"] == "done"


def test_each_user_is_changed_as_a_one_slug_change_would(db: Db) -> None:
    # Given user 1 in a plain segment until a minute from now, and a 100 % segment
    db.create("M", now=T0 - timedelta(hours=1))
    db.create("P", auto_percent=100, now=T0 - timedelta(hours=1))
    db.change_user(1, T0, add=["M"], expires_at=T0 + timedelta(minutes=1))
    later = T0 + timedelta(seconds=10)
    # When an import adds user 1 with a TTL: in already, so added_at stays and the expiry is the import's
    job = db.imported("M", "1\n", now=later, ttl_seconds=3600)
    assert (job["applied"], job["unchanged"]) == (0, 1)
    (membership,) = [m for m in db.run("active_segments", user_id=1, now=later) if m["slug"] == "M"]
    assert (membership["added_at"], membership["expires_at"]) == (T0, later + timedelta(hours=1))
    # When an import removes users the bucket holds: opt-outs, once
    removal = db.imported("P", "5\n6\n", now=later, mode="remove")
    assert (removal["applied"], removal["unchanged"]) == (2, 0)
    assert db.active(5, later) == [] and db.active(6, later) == []
    again = db.imported("P", "5\n", now=later, mode="remove")
    assert (again["applied"], again["unchanged"]) == (0, 1)
    assert db.counts("P", later) == (0, 2)
    assert db.report(later, user_id=5) == [(5, "P", "remove", later, "import")]


def test_an_import_adds_silently_whom_the_bucket_holds(db: Db) -> None:
    db.create("P", auto_percent=100)

    job = db.imported("P", "7\n")

    assert (job["applied"], job["unchanged"]) == (0, 1)
    assert db.report(T0) == []
    assert db.run("active_segments", user_id=7, now=T0)[0]["source"] == "manual"
    assert db.counts("P") == (1, 0)  # a stored membership now


def test_a_removal_import_writes_import_rows(db: Db) -> None:
    db.create("S", now=T0 - timedelta(hours=1))
    for user in (1, 2):
        db.change_user(user, T0, add=["S"])
    later = T0 + timedelta(minutes=1)

    job = db.imported("S", "1\n2\n3\n", now=later, mode="remove")

    assert (job["applied"], job["unchanged"]) == (2, 1)
    assert [row for row in db.report(later) if row[2] == "remove"] == [
        (1, "S", "remove", later, "import"),
        (2, "S", "remove", later, "import"),
    ]
    assert db.counts("S", later) == (0, 0)


def test_an_import_with_a_fixed_expiry_sets_it_and_stops_once_it_passed(db: Db) -> None:
    db.create("S")
    at = T0 + timedelta(days=2)
    job = db.imported("S", "1\n", expires_at=at)
    assert job["expires_at"] == at
    assert db.run("active_segments", user_id=1, now=T0)[0]["expires_at"] == at
    # An expiry that passes while the import runs stops it, and the rest is not applied
    soon = db.start_import("S", expires_at=T0 + timedelta(hours=1))
    db.run("start_import", import_id=soon["import_id"], lines=2, bytes=4, now=T0)
    assert apply_line(db.conn, soon["import_id"], 1, "2", T0) == "applied"
    assert apply_line(db.conn, soon["import_id"], 2, "3", T0 + timedelta(hours=2)) is None
    stopped = db.get_import("S", soon["import_id"])
    assert (stopped["status"], stopped["failure"]) == (
        "failed",
        "expires_at passed before the import could apply it",
    )
    assert db.active(3, T0) == []


@pytest.mark.parametrize(
    ("lines", "size", "failure"),
    [
        (10_000_001, 10**8, "the file has more than 10,000,000 lines"),
        (1, 256 * 1024 * 1024 + 1, "the file is larger than 256 MiB"),
    ],
)
def test_a_file_the_import_cannot_take_fails_it_at_its_start(
    db: Db, lines: int, size: int, failure: str
) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]

    (started,) = db.run("start_import", import_id=import_id, lines=lines, bytes=size, now=T0)

    assert (started["status"], started["lines"], started["failure"]) == ("failed", 0, failure)


def test_a_later_upload_to_the_same_import_is_ignored(db: Db) -> None:
    db.create("S")
    job = db.imported("S", "1\n")

    assert import_file(db.conn, job["import_id"], b"2\n3\n", T0) == {}

    assert counts_of(db.get_import("S", job["import_id"])) == (1, 1, 0, 0)
    assert db.active(2, T0) == []


def test_deleting_the_segment_fails_its_running_import_and_cleans_what_it_wrote(db: Db) -> None:
    # Given an import that has applied two of its three lines
    db.create("S", now=T0 - timedelta(hours=1))
    import_id = db.start_import("S")["import_id"]
    db.run("start_import", import_id=import_id, lines=3, bytes=6, now=T0)
    for line in (1, 2):
        apply_line(db.conn, import_id, line, str(line), T0)
    deleted = T0 + timedelta(minutes=1)
    # When the segment is deleted
    db.run("delete_segment", slug="S", now=deleted)
    # Then the import has failed, its last line is not applied, and its members left with history
    assert apply_line(db.conn, import_id, 3, "3", deleted) is None
    (job,) = db.conn.execute("SELECT status, failure FROM segment_import WHERE import_id = %s", [import_id])
    assert (job["status"], job["failure"]) == ("failed", "segment deleted")
    assert db.run("get_import", slug="S", import_id=import_id) == []
    assert [row[2:] for row in db.report(deleted) if row[0] == 1] == [
        ("add", T0, "import"),
        ("remove", deleted, "segment_deleted"),
    ]
    # And a re-created slug starts without imports or members
    db.create("S", now=deleted + timedelta(minutes=1))
    assert db.run("list_imports", slug="S", before=None, limit=10) == []
    assert db.counts("S", deleted) == (0, 0)
    assert all(db.active(user, deleted) == [] for user in (1, 2, 3))


def test_an_upload_after_the_segment_was_deleted_fails_the_import(db: Db) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]
    db.run("delete_segment", slug="S", now=T0)

    assert import_file(db.conn, import_id, b"1\n", T0) == {}

    (job,) = db.conn.execute("SELECT status, failure FROM segment_import WHERE import_id = %s", [import_id])
    assert (job["status"], job["failure"]) == ("failed", "segment deleted")


def test_an_unused_link_expires_and_a_late_upload_is_ignored(db: Db) -> None:
    db.create("S")
    job = db.start_import("S")

    assert db.run("expire_imports", now=T0 + timedelta(minutes=16)) == []  # a little grace past the link
    assert db.run("expire_imports", now=T0 + timedelta(minutes=21)) == [
        {"import_id": job["import_id"], "segment": "S"}
    ]
    assert db.get_import("S", job["import_id"])["status"] == "expired"
    assert import_file(db.conn, job["import_id"], b"1\n", T0 + timedelta(minutes=22)) == {}
    assert db.active(1, T0 + timedelta(minutes=22)) == []


def test_imports_are_listed_newest_first_page_by_page(db: Db) -> None:
    db.create("S")
    made = [db.start_import("S", now=T0 + timedelta(seconds=n))["import_id"] for n in range(5)]

    first = db.run("list_imports", slug="S", before=None, limit=2)
    rest = db.run("list_imports", slug="S", before=first[1]["import_id"], limit=10)

    assert [row["import_id"] for row in first] == made[::-1][:3]  # one extra row: there is a next page
    assert [row["import_id"] for row in rest] == made[::-1][2:]


def test_member_counts_are_the_live_generations_explicit_memberships_and_opt_outs(db: Db) -> None:
    # Given a 50 % segment with an opt-out of a user it held, a silent opt-out and a silent add
    db.create("P", auto_percent=50, now=T0 - timedelta(hours=1))
    db.create("M", now=T0 - timedelta(hours=1))
    db.change_user(user_in("P", True), T0, remove=["P"])
    db.change_user(user_in("P", False), T0, remove=["P"])
    db.change_user(user_in("P", True, skip=1), T0, add=["P"])
    # And a plain segment with one permanent and one expiring member
    db.change_user(1, T0, add=["M"], expires_at=T0 + timedelta(hours=1))
    db.change_user(2, T0, add=["M"])
    # Then users in only by their bucket are not counted, nor a membership once it expired
    assert db.run("member_counts", slugs=["P", "M", "NOPE"], now=T0) == [
        {"slug": "M", "explicit": 2, "opted_out": 0},
        {"slug": "P", "explicit": 1, "opted_out": 2},
    ]
    assert db.counts("M", T0 + timedelta(hours=2)) == (1, 0)
    # And a re-created slug starts at 0
    db.run("delete_segment", slug="P", now=T0 + timedelta(minutes=1))
    db.create("P", auto_percent=50, now=T0 + timedelta(minutes=2))
    assert db.counts("P") == (0, 0)


def test_the_twins_reader_finds_the_lines_the_services_reader_finds(db: Db) -> None:
    data = b"\xef\xbb\xbfuser_id\r\n1\n\n \t\n01\nuser_id\n\xff\xfe\n-1\r\n9223372036854775808\n2"

    found = data_lines(data)

    read = read_chunk(data, 1)
    assert [line for line, _, _ in found] == sorted(
        [*(line for line, _ in read.users), *(r.line for r in read.rejected)]
    )
    assert [(line, value, error) for line, value, error in found if error] == [
        (r.line, r.value, r.error) for r in read.rejected if r.error == "not UTF-8 text"
    ]


@pytest.mark.parametrize(
    "value",
    ["1", "1000", "9223372036854775807", "9223372036854775808", "9" * 19, "9" * 20, "0", "01", "-1",
     "+1", "1e3", "1.0", " 1", "1 ", "abc", "\uff11\uff12", "user_id", "1;2"],
)  # fmt: skip
def test_import_line_error_says_what_the_services_reader_says(db: Db, value: str) -> None:
    read = read_chunk(value.encode() + b"\n", first_line=2)
    expected = read.rejected[0].error if read.rejected else None

    assert db.run("import_line_error", value=value) == [{"error": expected}]


def insert_import(db: Db, **fields: Any) -> None:
    row: dict[str, Any] = {
        "import_id": new_import_id(T0), "slug": "S", "generation": 1, "mode": "add", "ttl_seconds": None,
        "expires_at": None, "status": "awaiting_upload", "lines": 0, "applied": 0, "unchanged": 0,
        "rejected": 0, "failure": None, "created_at": T0, "upload_expires_at": T0 + timedelta(minutes=15),
        "started_at": None, "finished_at": None,
    } | fields  # fmt: skip
    columns = ", ".join(row)
    values = ", ".join(f"%({name})s" for name in row)
    db.conn.execute(f"INSERT INTO segment_import ({columns}) VALUES ({values})", row)


ENDED = {"started_at": T0, "finished_at": T0}


@pytest.mark.parametrize(
    "fields",
    [
        {"status": ImportStatus.AWAITING_UPLOAD},
        {"status": ImportStatus.RUNNING, "started_at": T0, "lines": 3, "applied": 1},
        {"status": ImportStatus.DONE, **ENDED, "lines": 3, "applied": 1, "unchanged": 1, "rejected": 1},
        {"status": ImportStatus.FAILED, **ENDED, "failure": "segment deleted"},
        {"status": ImportStatus.EXPIRED, "finished_at": T0},
        {"mode": ImportMode.REMOVE},
        {"mode": ImportMode.ADD, "ttl_seconds": 315_360_000},
        {"mode": ImportMode.ADD, "expires_at": T0 + timedelta(days=3650)},
    ],
)
def test_every_status_and_mode_of_the_service_fits_the_table(db: Db, fields: dict[str, Any]) -> None:
    db.create("S")

    insert_import(
        db, **{name: str(value) if isinstance(value, str) else value for name, value in fields.items()}
    )


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"mode": "replace"}, "segment_import_mode_check"),
        ({"status": "pending", **ENDED}, "segment_import_status_check"),
        ({"import_id": "not-an-id"}, "segments_import_id_check"),
        ({"mode": "remove", "ttl_seconds": 60}, "import_expiry_only_with_add"),
        ({"mode": "remove", "expires_at": T0 + timedelta(days=1)}, "import_expiry_only_with_add"),
        ({"ttl_seconds": 60, "expires_at": T0 + timedelta(days=1)}, "import_one_kind_of_expiry"),
        ({"ttl_seconds": 0}, "segment_import_ttl_seconds_check"),
        ({"ttl_seconds": 315_360_001}, "segment_import_ttl_seconds_check"),
        ({"expires_at": T0}, "import_expiry_within_ten_years"),
        ({"expires_at": T0 + timedelta(days=3651)}, "import_expiry_within_ten_years"),
        ({"status": "done", **ENDED, "lines": 3, "applied": 1}, "import_counts_add_up"),
        (
            {"status": "running", "started_at": T0, "lines": 1, "applied": 1, "rejected": 1},
            "import_counts_add_up",
        ),
        ({"status": "running", "started_at": T0, "lines": 10_000_001}, "segment_import_lines_check"),
        ({"status": "awaiting_upload", "lines": 2}, "import_no_lines_without_upload"),
        ({"status": "running"}, "import_started_iff_uploaded"),
        ({"status": "expired", **ENDED}, "import_started_iff_uploaded"),
        ({"status": "done", "started_at": T0}, "import_finished_iff_ended"),
        ({"status": "failed", **ENDED}, "import_failure_iff_failed"),
        ({"status": "done", **ENDED, "failure": "segment deleted"}, "import_failure_iff_failed"),
        ({"status": "running", "started_at": T0 - timedelta(seconds=1)}, "import_times_in_order"),
    ],
)
def test_an_import_breaking_the_specs_rules_is_rejected(
    db: Db, fields: dict[str, Any], constraint: str
) -> None:
    db.create("S")

    with pytest.raises(errors.CheckViolation) as rejected, db.conn.transaction():
        insert_import(db, **fields)

    assert rejected.value.diag.constraint_name == constraint


def test_an_import_of_a_segment_that_never_was_is_rejected(db: Db) -> None:
    with pytest.raises(errors.ForeignKeyViolation), db.conn.transaction():
        insert_import(db, slug="NEVER")


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([(1, 7, None, None, "applied"), (2, 7, None, None, "unchanged")], errors.UniqueViolation),
        ([(1, 7, None, None, "applied"), (1, 8, None, None, "applied")], errors.UniqueViolation),
        ([(1, None, "abc", None, "rejected")], errors.CheckViolation),  # rejected without why
        ([(1, 7, "7", "bad", "rejected")], errors.CheckViolation),
        ([(1, None, None, None, "applied")], errors.CheckViolation),  # a good line without its user
        ([(1, 7, None, None, "skipped")], errors.CheckViolation),
        ([(0, 7, None, None, "applied")], errors.CheckViolation),
    ],
)
def test_an_import_line_breaking_the_exactly_once_rules_is_rejected(
    db: Db, rows: list[tuple[Any, ...]], error: type[Exception]
) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]
    insert = """INSERT INTO import_line (import_id, line, user_id, value, error, outcome)
                VALUES (%s, %s, %s, %s, %s, %s)"""

    with pytest.raises(error), db.conn.transaction():
        for row in rows:
            db.conn.execute(insert, (import_id, *row))


def test_duplicates_of_a_decided_user_are_allowed(db: Db) -> None:
    db.create("S")
    import_id = db.start_import("S")["import_id"]
    insert = "INSERT INTO import_line (import_id, line, user_id, outcome) VALUES (%s, %s, 7, %s)"

    for line, outcome in [(1, "duplicate"), (2, "applied"), (3, "duplicate")]:
        db.conn.execute(insert, (import_id, line, outcome))


# --- two lines of one user at once (committed transactions: a database of their own) -------


Committed = tuple[psycopg.Connection[dict[str, Any]], psycopg.Connection[dict[str, Any]], str]


@pytest.fixture
def committed() -> Iterator[Committed]:
    """Two autocommit connections to a fresh database holding segment S and a running import of it."""
    with (
        fresh_database("segments_sql_lines") as dsn,
        psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as first,
        psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as second,
    ):
        db = Db(first)
        db.create("S")
        import_id = db.start_import("S")["import_id"]
        db.run("start_import", import_id=import_id, lines=2, bytes=4, now=T0)
        yield first, second, import_id


def test_two_lines_of_one_user_at_once_change_the_user_once(committed: Committed) -> None:
    first, second, import_id = committed
    outcome: list[str | None] = []
    with first.transaction():
        Db(first).run("lock_user", user_id=7)
        Db(first).run("apply_import_line", import_id=import_id, line=1, user_id=7, now=T0)
        racing = threading.Thread(target=lambda: outcome.append(apply_line(second, import_id, 2, "7", T0)))
        racing.start()
        racing.join(timeout=0.5)
        assert racing.is_alive()  # it waits at lock_user
    racing.join(timeout=10)

    assert outcome == ["duplicate"]
    assert Db(first).report(T0) == [(7, "S", "add", T0, "import")]


def test_the_key_keeps_a_user_changed_once_even_without_the_users_lock(committed: Committed) -> None:
    first, second, import_id = committed
    failed: list[BaseException] = []

    def racing_line() -> None:
        try:
            Db(second).run("apply_import_line", import_id=import_id, line=2, user_id=7, now=T0)
        except errors.UniqueViolation as error:
            failed.append(error)

    with first.transaction():
        Db(first).run("apply_import_line", import_id=import_id, line=1, user_id=7, now=T0)
        racing = threading.Thread(target=racing_line)
        racing.start()
        racing.join(timeout=0.5)
        assert racing.is_alive()  # it waits for the first line's rows
    racing.join(timeout=10)

    assert len(failed) == 1  # its whole statement rolled back: the user was changed once
    assert Db(first).report(T0) == [(7, "S", "add", T0, "import")]


# --- the SQL functions against logic/buckets.py -------------------------------------------


def test_sql_bucket_equals_python_bucket_of_for_100000_users(db: Db) -> None:
    rows = db.conn.execute(
        "SELECT u, segments_bucket(%s, u) AS bucket FROM generate_series(1, 100000) AS u ORDER BY u", [VOICE]
    ).fetchall()

    assert [row["bucket"] for row in rows] == [bucket_of(VOICE, user) for user in range(1, 100001)]


def test_sql_bucket_equals_python_for_large_ids_and_other_seeds(db: Db) -> None:
    picks = [*random.Random(5).sample(range(1, 2**63), 200), 2**63 - 1]
    for seed in ("discounts", "a", "Z.9-_"):
        rows = db.conn.execute(
            "SELECT segments_bucket(%s, u) AS bucket"
            " FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(u, i) ORDER BY i",
            [seed, picks],
        ).fetchall()
        assert [row["bucket"] for row in rows] == [bucket_of(seed, user) for user in picks]


def test_sql_gbhash_v2_matches_python_on_growthbook_cases(db: Db) -> None:
    cases = [
        ("seed", "a"),
        ("foo", "def"),
        ("90850943850283058242805", "123"),
        ("()**(%$##$%#$#", '___)((*":&'),
    ]
    for seed, value in cases:
        (row,) = db.conn.execute("SELECT segments_gbhash_v2(%s, %s) AS h", [seed, value]).fetchall()
        assert float(row["h"]) == gbhash(seed, value, 2)


def test_sql_range_allocation_equals_python(db: Db) -> None:
    rng = random.Random(7)
    for _ in range(150):
        taken: list[tuple[int, int]] = []
        for _ in range(rng.randrange(6)):
            placed = lowest_fitting_gap(taken, rng.randrange(0, 4000))
            if placed is not None:
                taken.append(placed)
        width = rng.randrange(0, BUCKETS + 1)
        current = rng.choice(taken) if taken else (0, 0)
        others = [r for r in taken if r != current]
        as_ranges = [f"[{start},{end})" for start, end in others]
        (row,) = db.conn.execute(
            """SELECT segments_lowest_fitting_start(%(taken)s::int4range[], %(width)s) AS start,
                      segments_largest_free_gap(%(taken)s::int4range[]) AS largest,
                      segments_resized_start(%(s)s, %(e)s, %(width)s, %(taken)s::int4range[]) AS resized""",
            {"taken": as_ranges, "width": width, "s": current[0], "e": current[1]},
        ).fetchall()
        lowest = lowest_fitting_gap(others, width)
        resized = resize_range(current, width, others)
        assert row["start"] == (lowest[0] if lowest else None)
        assert row["largest"] == largest_free_gap(others)
        assert row["resized"] == (resized[0] if resized else None)


def test_every_statement_in_queries_sql_has_a_name_and_only_named_parameters() -> None:
    assert len(QUERIES) >= 15
    for name, statement in QUERIES.items():
        stripped = statement.replace("%%", "")
        assert stripped.count("%") == stripped.count("%("), name
