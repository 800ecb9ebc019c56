"""The PostgreSQL twin (sql/): schema constraints, the named queries on the seed scenario, buckets."""

import random
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
from tests.support.sql_queries import D30, D50, VAS, VOICE, fresh_database, load_queries

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
