"""Differential test: the DynamoDB service and its PostgreSQL twin (sql/) run one scenario and agree.

Every API call goes to both stores: to the real Lambda handlers under moto (with the table's stream
delivered to the clean-up and history functions), and to a fresh PostgreSQL database through the
named statements of sql/queries.sql, one transaction per call. Both must answer every call alike and
give users the same active segments (with the same sources, the same call that set `added_at` and the
same expiry): every user after every step, except that in the random sequence a change is followed by
a check of the changed user and every tenth change by all. At checkpoints both give the same history
report rows, per user and for all users.

Imports go to both as well: to the service as a client would (create, PUT the file to the presigned
link, then the background runs the queue's jobs), to the twin as the statements of one import, each
line in its own transaction. Both must give the import the same status and counts, the same errors
CSV, and segments the same member counts once the stream has caught up.

The twin stores no per-user rows for percentage segments, so a per-user report's derived rows (the
`auto` entries and exits, and a bucket-only member's `segment_deleted` row) are not the twin's: the
service's `auto` rows are left out of the comparison, and the twin's side gets the derived
`segment_deleted` row of each user its bucket held when the segment was deleted.

The service runs on the real clock; the twin on a clock that follows it from 2023-08-02. Timestamps
are therefore compared by the call they fall after (each call records the real moment just before
it) and by their order within a report, never by value.
"""

import bisect
import csv
import io
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import boto3
import psycopg
import pytest
import requests
from psycopg import errors
from psycopg.rows import dict_row

from logic.buckets import bucket_of
from logic.imports import new_import_id
from tests.conftest import BUCKET, TABLE, indexes_caught_up
from tests.support.api import Api, call
from tests.support.background import Background
from tests.support.sql_queries import D30, D50, VAS, VOICE, fresh_database, import_file, load_queries

pytestmark = [pytest.mark.sql, pytest.mark.xdist_group("sql")]

QUERIES = load_queries()

SEED_USERS = [1000, 1002, 1004, 1006]
RANDOM_USERS = list(range(2001, 2011))
RANDOM_SLUGS = [f"RND_{letter}" for letter in "ABCDE"]
RANDOM_STEPS = 100
RANDOM_FULL_CHECK_EVERY = 10  # random change steps between checks of every user, not only the changed one

TWIN_START = datetime(2023, 8, 2, tzinfo=UTC)  # the twin's month: [2023-08-01, 2023-09-01)
TWIN_PERIOD = {
    "period_start": datetime(2023, 8, 1, tzinfo=UTC),
    "period_end": datetime(2023, 9, 1, tzinfo=UTC),
}
LATER = timedelta(hours=1)  # expiries at least this far from the start are compared as offsets


@dataclass(frozen=True)
class Add:
    """An `add` item with an expiry: `ttl_seconds`, or `expires_at` this long after the clock's start."""

    slug: str
    ttl_seconds: int | None = None
    after_start: timedelta | None = None


AddItem = str | Add


@dataclass(frozen=True)
class Outcome:
    """What one call answered, in the terms both stores can give."""

    status: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


Moment = tuple[str, Any]  # ("call", index of the call it follows), ("ttl", ...) or ("later", offset)
ReportRow = tuple[int, str, str, str, datetime]  # user_id, segment, operation, reason, timestamp


@dataclass(frozen=True)
class ImportOutcome:
    """An import as both stores can give it, once the background has run it."""

    code: int  # of POST /segments/{slug}/imports
    segment: str | None = None
    mode: str | None = None
    status: str | None = None
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # lines, applied, unchanged, rejected
    failure: str | None = None
    expires_at: Moment | None = None
    times: tuple[Moment | None, ...] = ()  # created_at, started_at, finished_at
    errors: tuple[tuple[int, str, str], ...] = ()  # the errors CSV: line, value, error


IMPORT_COUNTS = ("lines", "applied", "unchanged", "rejected")
IMPORT_TIMES = ("created_at", "started_at", "finished_at")


class Clock:
    """One tick per API call: the real moment just before the service handles it, and the twin's moment."""

    def __init__(self) -> None:
        self.real_start = datetime.now(UTC)
        self.real: list[datetime] = []
        self.twin: list[datetime] = []
        self.ttls: set[timedelta] = set()  # of imports, whose adds expire this long after they applied

    def tick(self) -> datetime:
        real = datetime.now(UTC)
        twin = TWIN_START + (real - self.real_start)
        assert twin < TWIN_PERIOD["period_end"]
        self.real.append(real)
        self.twin.append(twin)
        return twin

    def moment(self, at: datetime | None, twin: bool) -> Moment | None:
        """Which call a timestamp of one side follows; an expiry one of the TTLs after such a moment as
        that TTL and moment; else, if much later, how far after the start it is."""
        if at is None:
            return None
        start, stamps = (TWIN_START, self.twin) if twin else (self.real_start, self.real)
        if at >= start + LATER:
            for ttl in sorted(self.ttls):
                if start <= at - ttl < start + LATER:
                    return ("ttl", (ttl, self.moment(at - ttl, twin)))
            return ("later", at - start)
        return ("call", bisect.bisect_right(stamps, at) - 1)

    def months(self) -> list[str]:
        """The service's report months the scenario has touched so far (one, unless it ran over midnight)."""
        first, last = self.real_start, datetime.now(UTC)
        months = {first.strftime("%Y-%m"), last.strftime("%Y-%m")}
        return sorted(months)


class Service:
    """The DynamoDB service: the real handlers under moto, with the stream delivered by the test."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.api = Api()
        self.background = Background(TABLE)

    def create(self, slug: str, **fields: Any) -> int:
        return self.api.create_segment(slug, **fields).status

    def delete(self, slug: str) -> int:
        return self.api.delete_segment(slug).status

    def clean_up(self) -> None:
        self.background.finish()

    def change(self, user_id: int, add: Sequence[AddItem], remove: Sequence[str]) -> Outcome:
        items: list[Any] = [self._add_item(item) for item in add]
        answer = self.api.change_user(user_id, add=items or None, remove=list(remove) or None)
        if answer.status == 404:
            return Outcome(404, missing=tuple(answer.problem["missing"]))
        assert answer.status == 200, answer
        body = answer.body
        return Outcome(
            200,
            added=tuple(body["added"]),
            removed=tuple(body["removed"]),
            unchanged=tuple(body["unchanged"]),
            segments=tuple(body["segments"]),
        )

    def _add_item(self, item: AddItem) -> Any:
        if isinstance(item, str):
            return item
        if item.ttl_seconds is not None:
            return {"slug": item.slug, "ttl_seconds": item.ttl_seconds}
        assert item.after_start is not None
        return {"slug": item.slug, "expires_at": self._after_start(item.after_start)}

    def _after_start(self, after_start: timedelta) -> str:
        return (self.clock.real_start + after_start).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def import_(
        self, slug: str, data: bytes, mode: str, expiry: Add | None
    ) -> tuple[ImportOutcome, str | None]:
        """Create the import, PUT the file to its link, run the background; the import and its id."""
        fields: dict[str, Any] = {"mode": mode}
        if expiry is not None and expiry.ttl_seconds is not None:
            fields["ttl_seconds"] = expiry.ttl_seconds
        elif expiry is not None and expiry.after_start is not None:
            fields["expires_at"] = self._after_start(expiry.after_start)
        created = self.api.create_import(slug, **fields)
        if created.status != 201:
            return ImportOutcome(created.status), None
        link, import_id = created.body["upload"], created.body["import_id"]
        uploaded = requests.put(link["url"], data=data, headers=link["headers"], timeout=10)
        assert uploaded.status_code == 200, uploaded.text
        self.background.settle()
        answer = self.api.get_import(slug, import_id)
        assert answer.status == 200, answer
        job = answer.body
        errors: tuple[tuple[int, str, str], ...] = ()
        if job["errors_url"] is not None:
            text = requests.get(job["errors_url"], timeout=10).text
            reader = csv.DictReader(io.StringIO(text), delimiter=";")
            assert reader.fieldnames == ["line", "value", "error"]
            errors = tuple((int(row["line"]), row["value"], row["error"]) for row in reader)
        outcome = ImportOutcome(
            created.status, job["segment"], job["mode"], job["status"],
            (job["lines"], job["applied"], job["unchanged"], job["rejected"]), job["failure"],
            self.clock.moment(_parse(job["expires_at"]), twin=False),
            tuple(self.clock.moment(_parse(job[name]), twin=False) for name in IMPORT_TIMES), errors,
        )  # fmt: skip
        return outcome, import_id

    def import_ids(self, slug: str) -> list[str] | None:
        """GET /segments/{slug}/imports: the ids, newest first; None for no such segment."""
        answer = self.api.list_imports(slug)
        if answer.status == 404:
            return None
        assert answer.status == 200 and answer.body["next_cursor"] is None, answer
        return [job["import_id"] for job in answer.body["imports"]]

    def members(self, slug: str) -> tuple[int, int] | None:
        """`members` of GET /segments/{slug} once the stream has caught up; None for no such segment."""
        self.background.settle()
        answer = self.api.get_segment(slug)
        if answer.status == 404:
            return None
        assert answer.status == 200, answer
        return answer.body["members"]["explicit"], answer.body["members"]["opted_out"]

    def memberships(self, user_id: int) -> list[tuple[str, str, Moment | None, Moment | None]]:
        answer = self.api.user_segments(user_id, details=True)
        assert answer.status == 200, answer
        assert answer.body["segments"] == [m["slug"] for m in answer.body["memberships"]]
        return [
            (
                m["slug"],
                m["source"],
                self.clock.moment(_parse(m["added_at"]), twin=False),
                self.clock.moment(_parse(m["expires_at"]), twin=False),
            )
            for m in answer.body["memberships"]
        ]

    def report(self, user_id: int | None) -> list[ReportRow]:
        """The history of the months so far, after the history function has seen the whole stream."""
        self.background.stream()
        indexes_caught_up()
        rows: list[ReportRow] = []
        for period in self.clock.months():
            query = {"period": period, **({"user_id": str(user_id)} if user_id is not None else {})}
            answer = call("api_history_report", query=query)
            assert answer.status == 200, answer
            text = _s3_object(answer.body["url"])
            reader = csv.DictReader(io.StringIO(text), delimiter=";")
            assert reader.fieldnames == ["user_id", "segment", "operation", "timestamp", "reason"]
            period_rows = [
                (
                    int(r["user_id"]),
                    r["segment"],
                    r["operation"],
                    r["reason"],
                    datetime.fromisoformat(r["timestamp"]),
                )
                for r in reader
            ]
            assert answer.body["rows"] == len(period_rows)
            rows += period_rows
        return rows


class Twin:
    """The PostgreSQL twin: the named statements of sql/queries.sql, one transaction per API call."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn

    def run(self, name: str, **params: Any) -> list[dict[str, Any]]:
        cursor = self.conn.execute(QUERIES[name], params)
        return cursor.fetchall() if cursor.description else []

    def create(self, slug: str, now: datetime, auto_percent: float | None = None) -> int:
        try:
            with self.conn.transaction():
                rows = self.run(
                    "create_segment", slug=slug, now=now, description="", auto_percent=auto_percent,
                    exclusion_group=None,
                )  # fmt: skip
        except errors.UniqueViolation:
            return 409
        assert len(rows) == 1
        return 201

    def delete(self, slug: str, now: datetime) -> int:
        with self.conn.transaction():
            rows = self.run("delete_segment", slug=slug, now=now)
        return 204 if rows else 404

    def sweep_expired(self, now: datetime) -> None:
        """The twin of DynamoDB's TTL deletion, which may come at any time after the expiry."""
        with self.conn.transaction():
            self.run("expire_memberships", user_id=None, now=now)

    def change(self, user_id: int, add: Sequence[AddItem], remove: Sequence[str], now: datetime) -> Outcome:
        outcomes: dict[str, list[str]] = {"added": [], "removed": [], "unchanged": []}
        slugs = [item if isinstance(item, str) else item.slug for item in add]
        segments: list[str] = []
        with self.conn.transaction():
            self.run("lock_user", user_id=user_id)
            missing = [row["slug"] for row in self.run("missing_segments", slugs=[*slugs, *remove])]
            if missing:
                raise psycopg.Rollback()  # a 404 writes nothing
            self.run("expire_memberships", user_id=user_id, now=now)
            for item, slug in zip(add, slugs, strict=True):
                expires_at = self._expiry(item, now)
                params = {"user_id": user_id, "slug": slug, "now": now, "expires_at": expires_at}
                (row,) = self.run("add_user_segment", **params)
                outcomes[row["outcome"]].append(slug)
            for slug in remove:
                (row,) = self.run("remove_user_segment", user_id=user_id, slug=slug, now=now)
                outcomes[row["outcome"]].append(slug)
            segments = [row["slug"] for row in self.run("active_segments", user_id=user_id, now=now)]
        if missing:
            return Outcome(404, missing=tuple(missing))
        return Outcome(
            200,
            added=tuple(sorted(outcomes["added"])),
            removed=tuple(sorted(outcomes["removed"])),
            unchanged=tuple(sorted(outcomes["unchanged"])),
            segments=tuple(segments),
        )

    @staticmethod
    def _expiry(item: AddItem, now: datetime) -> datetime | None:
        if isinstance(item, str):
            return None
        if item.ttl_seconds is not None:
            return now + timedelta(seconds=item.ttl_seconds)
        assert item.after_start is not None
        return TWIN_START + item.after_start

    def memberships(self, user_id: int, now: datetime) -> list[dict[str, Any]]:
        with self.conn.transaction():
            return self.run("active_segments", user_id=user_id, now=now)

    def import_(
        self, slug: str, import_id: str, data: bytes, mode: str, expiry: Add | None, now: datetime,
        moment: Callable[[datetime | None], Moment | None],
    ) -> ImportOutcome:  # fmt: skip
        """The statements of one import (sql/queries.sql's header): the import as get_import gives it."""
        ttl_seconds = None if expiry is None else expiry.ttl_seconds
        expires_at = None if expiry is None or expiry.after_start is None else TWIN_START + expiry.after_start
        with self.conn.transaction():
            created = self.run(
                "create_import", import_id=import_id, slug=slug, mode=mode, ttl_seconds=ttl_seconds,
                expires_at=expires_at, now=now, upload_expires_at=now + timedelta(minutes=15),
            )  # fmt: skip
        if not created:
            return ImportOutcome(404)
        import_file(self.conn, import_id, data, now)
        with self.conn.transaction():
            (job,) = self.run("get_import", slug=slug, import_id=import_id)
            errors = self.run("import_errors", import_id=import_id)
        return ImportOutcome(
            201, job["segment"], job["mode"], job["status"], tuple(job[name] for name in IMPORT_COUNTS),
            job["failure"], moment(job["expires_at"]), tuple(moment(job[name]) for name in IMPORT_TIMES),
            tuple((row["line"], row["value"], row["error"]) for row in errors),
        )  # fmt: skip

    def import_ids(self, slug: str) -> list[str] | None:
        with self.conn.transaction():
            if not self.run("get_segment", slug=slug):
                return None
            return [row["import_id"] for row in self.run("list_imports", slug=slug, before=None, limit=100)]

    def members(self, slug: str, now: datetime) -> tuple[int, int] | None:
        with self.conn.transaction():
            rows = self.run("member_counts", slugs=[slug], now=now)
        return (rows[0]["explicit"], rows[0]["opted_out"]) if rows else None

    def report(self, user_id: int | None, now: datetime) -> list[ReportRow]:
        with self.conn.transaction():
            if user_id is None:
                rows = self.run("history_report_all_users", now=now, **TWIN_PERIOD)
            else:
                rows = self.run("history_report_for_user", user_id=user_id, now=now, **TWIN_PERIOD)
        return [(r["user_id"], r["segment"], r["operation"], r["reason"], r["at"]) for r in rows]


@dataclass
class Differential:
    """Each step on both stores, and the comparisons after it."""

    service: Service
    twin: Twin
    clock: Clock
    users: list[int]
    steps: list[str] = field(default_factory=list)
    changes: int = 0
    full_check_every: int = 1
    derived: dict[int, list[ReportRow]] = field(default_factory=dict)  # per-user rows the twin does not store

    def create(self, slug: str, expect: int | None = None, auto_percent: float | None = None) -> int:
        self.steps.append(f"create {slug}" + ("" if auto_percent is None else f" at {auto_percent} %"))
        now = self.clock.tick()
        status = self.service.create(slug, **({} if auto_percent is None else {"auto_percent": auto_percent}))
        assert (status, self.steps[-1]) == (self.twin.create(slug, now, auto_percent), self.steps[-1])
        assert expect is None or status == expect, (self.steps[-1], status)
        self.check_users()
        return status

    def delete(self, slug: str, clean_up: bool = True, expect: int | None = None) -> int:
        self.steps.append(f"delete {slug}" + ("" if clean_up else " (clean-up later)"))
        now = self.clock.tick()
        for user in self.users:  # in by the bucket only: the per-user report derives their removal
            if (slug, "auto") in [(m["slug"], m["source"]) for m in self.twin.memberships(user, now)]:
                self.derived.setdefault(user, []).append((user, slug, "remove", "segment_deleted", now))
        status = self.service.delete(slug)
        assert (status, self.steps[-1]) == (self.twin.delete(slug, now), self.steps[-1])
        assert expect is None or status == expect, (self.steps[-1], status)
        if clean_up:
            self.service.clean_up()
        self.check_users()
        return status

    def clean_up(self) -> None:
        self.steps.append("clean-up")
        self.service.clean_up()  # the twin removed the members at the deletion already
        self.check_users()

    def change(
        self, user_id: int, add: Sequence[AddItem] = (), remove: Sequence[str] = (), **expect: Any
    ) -> Outcome:
        self.steps.append(f"user {user_id} add {list(add)} remove {list(remove)}")
        now = self.clock.tick()
        served = self.service.change(user_id, add, remove)
        twinned = self.twin.change(user_id, add, remove, now)
        assert (served, self.steps[-1]) == (twinned, self.steps[-1])
        for name, value in expect.items():
            assert getattr(served, name) == tuple(value), (self.steps[-1], served)
        self.changes += 1
        self.check_users(None if self.changes % self.full_check_every == 0 else [user_id])
        return served

    def import_(
        self, slug: str, lines: Sequence[str | int | bytes], mode: str = "add", expiry: Add | None = None,
        code: int = 201, counts: tuple[int, int, int, int] | None = None,
    ) -> ImportOutcome:  # fmt: skip
        """One import of a file of these lines (`\\r\\n` ends) on both stores, then every user checked."""
        self.steps.append(f"import {mode} {lines} into {slug}" + (f" with {expiry}" if expiry else ""))
        data = b"\r\n".join(line if isinstance(line, bytes) else str(line).encode() for line in lines)
        if expiry is not None and expiry.ttl_seconds is not None:
            self.clock.ttls.add(timedelta(seconds=expiry.ttl_seconds))
        now = self.clock.tick()
        served, import_id = self.service.import_(slug, data, mode, expiry)
        twinned = self.twin.import_(
            slug, import_id or new_import_id(now), data, mode, expiry, now,
            lambda at: self.clock.moment(at, twin=True),
        )  # fmt: skip
        assert (served, self.steps[-1]) == (twinned, self.steps[-1])
        assert served.code == code, (self.steps[-1], served)
        assert counts is None or served.counts == counts, (self.steps[-1], served)
        self.check_users()
        return served

    def check_members(self, slugs: Sequence[str]) -> list[tuple[int, int] | None]:
        """Both stores' member counts of these segments (None: no such segment) and lists of imports."""
        now = self.clock.tick()
        served = [self.service.members(slug) for slug in slugs]
        assert served == [self.twin.members(slug, now) for slug in slugs], (self.steps[-1], served)
        imports = [self.service.import_ids(slug) for slug in slugs]
        assert imports == [self.twin.import_ids(slug) for slug in slugs], (self.steps[-1], imports)
        return served

    def check_users(self, users: Sequence[int] | None = None) -> None:
        """Both stores' active segments of these users (default: every user), with sources and times."""
        for user in self.users if users is None else users:
            now = self.clock.tick()
            served = self.service.memberships(user)
            twinned = [
                (
                    m["slug"],
                    m["source"],
                    self.clock.moment(m["added_at"], twin=True),
                    self.clock.moment(m["expires_at"], twin=True),
                )
                for m in self.twin.memberships(user, now)
            ]
            assert served == twinned, (f"user {user} after step {len(self.steps)}: {self.steps[-1]}", served)

    def check_reports(self) -> list[tuple[int, str, str, str]]:
        """Both stores' reports for every user and for all users; returns the all-users rows."""
        for user in [*self.users, None]:
            now = self.clock.tick()
            served_rows = [row for row in self.service.report(user) if row[3] != "auto"]
            twin_rows = self.twin.report(user, now) + ([] if user is None else self.derived.get(user, []))
            twin_rows.sort(key=lambda row: (row[4], row[1]))  # stable: the twin's order within a slug stays
            served = _report_shape(served_rows, self.clock, twin=False)
            twinned = _report_shape(twin_rows, self.clock, twin=True)
            assert served == twinned, f"report for user {user} after step {len(self.steps)}"
        return [row[:4] for row in self.twin.report(None, self.clock.tick())]

    def segments_of(self, user: int) -> list[str]:
        return [m[0] for m in self.service.memberships(user)]


def _report_shape(rows: list[ReportRow], clock: Clock, twin: bool) -> tuple[list[Any], list[str]]:
    """Rows with each timestamp as the call it follows, and how each timestamp compares to the previous."""
    keyed = [(*row[:4], clock.moment(row[4], twin)) for row in rows]
    order = ["=" if a[4] == b[4] else "<" if a[4] < b[4] else ">" for a, b in itertools.pairwise(rows)]
    return keyed, order


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _s3_object(url: str) -> str:
    key = urlparse(url).path.split(f"/{BUCKET}/", 1)[-1].lstrip("/")
    if key.startswith(BUCKET):
        key = key[len(BUCKET) + 1 :]
    body: bytes = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body.decode()


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database("segments_diff") as dsn:
        yield dsn


@pytest.fixture
def both(aws: None, database: str) -> Iterator[Differential]:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        clock = Clock()
        yield Differential(Service(clock), Twin(conn), clock, list(SEED_USERS))


@pytest.mark.slow
def test_service_and_sql_twin_agree_on_segments_and_history(both: Differential) -> None:
    # The SPEC's seed: four segments; user 1000 gets three, 1002 two, 1004 none
    for slug in (VOICE, VAS, D30, D50):
        both.create(slug, expect=201)
    both.change(1000, add=[VOICE, VAS, D30], added=[D30, VAS, VOICE])
    both.change(1002, add=[VOICE, D50], added=[D50, VOICE])
    assert both.segments_of(1000) == [D30, VAS, VOICE]
    assert both.segments_of(1002) == [D50, VOICE]
    assert both.segments_of(1004) == []
    assert len(both.check_reports()) == 5

    # Removals, re-adds, unchanged adds and no-op removes
    both.change(1000, remove=[VAS], removed=[VAS])
    both.change(1000, add=[VAS], added=[VAS])
    both.change(1000, add=[VOICE], remove=[D50], unchanged=[D50, VOICE])
    both.change(1002, remove=[VAS], unchanged=[VAS])
    both.change(1002, add=[VAS], remove=[VOICE], added=[VAS], removed=[VOICE])
    both.change(1004, remove=[D30], unchanged=[D30])  # a user never seen
    # Adding again keeps added_at and takes the latest expiry, none meaning permanent
    both.change(1000, add=[Add(D30, after_start=timedelta(days=2))], unchanged=[D30])
    both.change(1000, add=[Add(D30, after_start=timedelta(days=1))], unchanged=[D30])
    both.change(1000, add=[D30], unchanged=[D30])
    # Any missing slug is a 404 that changes nothing
    both.change(1000, add=["NOPE_B"], remove=[VOICE, "NOPE_A"], missing=["NOPE_A", "NOPE_B"])
    both.create(VOICE, expect=409)
    both.delete("NOPE", expect=404)
    assert len(both.check_reports()) == 9

    # Delete (clean-up at once) and re-create: the new generation starts empty
    both.delete(D50, expect=204)
    both.change(1002, add=[D50], missing=[D50])
    both.create(D50, expect=201)
    both.change(1002, add=[D50], added=[D50])
    # Delete and re-create with the clean-up still pending, and a member re-added before it runs
    both.delete(VOICE, clean_up=False, expect=204)
    both.create(VOICE, expect=201)
    both.change(1000, add=[VOICE], added=[VOICE])
    both.change(1006, remove=[VOICE], unchanged=[VOICE])
    both.clean_up()
    assert both.segments_of(1000) == [D30, VAS, VOICE]
    everyone = both.check_reports()
    assert everyone.count((1000, VOICE, "remove", "segment_deleted")) == 1
    assert everyone.count((1002, D50, "remove", "segment_deleted")) == 1

    # Expiry: never returned after it, and reported once at the expiry time, swept or not
    both.change(1006, add=[Add(VAS, ttl_seconds=1)], added=[VAS])
    both.change(1004, add=[Add(D30, ttl_seconds=1), VAS], added=[D30, VAS])
    time.sleep(1.5)
    both.check_users()
    assert both.segments_of(1006) == [] and both.segments_of(1004) == [VAS]
    both.change(1006, add=[VAS], added=[VAS])  # re-added over an expired membership not deleted yet
    both.change(1004, remove=[D30], unchanged=[D30])  # removing an expired one is a no-op
    both.twin.sweep_expired(both.clock.tick())
    everyone = both.check_reports()
    assert everyone.count((1006, VAS, "remove", "ttl_expired")) == 1
    assert everyone.count((1004, D30, "remove", "ttl_expired")) == 1

    # A deterministic random sequence over more users and segments. Creates, deletes and clean-ups
    # are followed by a check of every user; changes by a check of the changed user, and of every
    # user every RANDOM_FULL_CHECK_EVERY changes (a GET per user per step would take minutes in moto).
    rng = random.Random(20230829)
    both.users += RANDOM_USERS
    both.full_check_every = RANDOM_FULL_CHECK_EVERY
    before = len(everyone)
    live = set(RANDOM_SLUGS[:4])
    for slug in sorted(live):
        both.create(slug, expect=201)
    for _ in range(RANDOM_STEPS):
        roll = rng.random()
        if roll < 0.75:
            pool = sorted(live) if live and rng.random() < 0.85 else RANDOM_SLUGS
            named = rng.sample(pool, rng.randint(1, min(4, len(pool))))
            cut = rng.randint(0, len(named))
            add: list[AddItem] = [
                Add(slug, after_start=timedelta(days=rng.randint(1, 3))) if rng.random() < 0.25 else slug
                for slug in named[:cut]
            ]
            both.change(rng.choice(RANDOM_USERS), add=add, remove=named[cut:])
        elif roll < 0.85:
            dead = sorted(set(RANDOM_SLUGS) - live)
            slug = rng.choice(dead if dead and rng.random() < 0.8 else RANDOM_SLUGS)
            if both.create(slug) == 201:
                live.add(slug)
        elif roll < 0.93:
            slug = rng.choice(sorted(live) if live and rng.random() < 0.85 else RANDOM_SLUGS)
            if both.delete(slug, clean_up=rng.random() < 0.5) == 204:
                live.discard(slug)
        else:
            both.clean_up()
    both.clean_up()
    both.check_users()
    everyone = both.check_reports()
    assert len(everyone) - before >= 60  # the sequence did change memberships


PLAIN, SHARE = VOICE, VAS  # a segment without a percentage, and one with 50 %


def bucket_users(inside: bool, count: int) -> list[int]:
    """Users whose bucket of SHARE falls inside (or outside) its 50 %."""
    return [user for user in range(3001, 3200) if (bucket_of(SHARE, user) < 5000) == inside][:count]


@pytest.mark.slow
def test_service_and_sql_twin_agree_on_imports_and_member_counts(both: Differential) -> None:
    inside, outside = bucket_users(True, 4), bucket_users(False, 4)
    both.users = sorted([*inside, *outside])
    both.create(PLAIN, expect=201)
    both.create(SHARE, expect=201, auto_percent=50)
    # Given a member of PLAIN by hand, and an opt-out of SHARE
    both.change(inside[0], add=[PLAIN], added=[PLAIN])
    both.change(inside[1], remove=[SHARE], removed=[SHARE])
    assert both.check_members([PLAIN, SHARE]) == [(1, 0), (0, 1)]

    # An add with a TTL: a BOM and a header, good, bad, duplicate and blank lines. The member keeps
    # added_at and takes the import's expiry; bad lines are rejected with their line numbers
    file: list[str | int | bytes] = [
        "\ufeffuser_id", inside[0], "", outside[0], "abc", outside[0], "01", "  ", "9" * 20, inside[1],
        " 7", "0", "9223372036854775808", b"\xff\xfe", outside[1], "",
    ]  # fmt: skip
    job = both.import_(PLAIN, file, expiry=Add(PLAIN, ttl_seconds=7200), counts=(12, 3, 2, 7))
    assert [line for line, _, _ in job.errors] == [5, 7, 9, 11, 12, 13, 14]
    # An add with a fixed expiry into SHARE: whom the bucket holds is unchanged (yet stored), the
    # opted-out user and one outside the bucket are added; a duplicate is unchanged
    expiry = Add(SHARE, after_start=timedelta(days=2))
    both.import_(SHARE, [inside[2], inside[1], outside[2], outside[2]], expiry=expiry, counts=(4, 2, 2, 0))
    # A remove from SHARE: an opt-out for everyone named, whether they were in or not
    both.import_(SHARE, [inside[3], outside[3], outside[2], inside[2]], mode="remove", counts=(4, 3, 1, 0))
    # A remove from PLAIN: a member leaves, the others are unchanged
    both.import_(PLAIN, [outside[0], inside[3], outside[0]], mode="remove", counts=(3, 1, 2, 0))
    assert both.check_members([PLAIN, SHARE]) == [(3, 0), (1, 4)]
    both.import_("NOPE", [inside[0]], code=404)
    everyone = both.check_reports()
    assert sorted(row for row in everyone if row[3] == "import") == sorted(
        [(outside[0], PLAIN, "add", "import"), (inside[1], PLAIN, "add", "import"),
         (outside[1], PLAIN, "add", "import"), (inside[1], SHARE, "add", "import"),
         (outside[2], SHARE, "add", "import"), (inside[3], SHARE, "remove", "import"),
         (outside[2], SHARE, "remove", "import"), (inside[2], SHARE, "remove", "import"),
         (outside[0], PLAIN, "remove", "import")]
    )  # fmt: skip

    # Deleted, both are gone with their imports; created again, they start at 0 and without imports
    both.delete(PLAIN, expect=204)
    both.delete(SHARE, expect=204)
    assert both.check_members([PLAIN, SHARE]) == [None, None]
    both.create(PLAIN, expect=201)
    both.create(SHARE, expect=201, auto_percent=50)
    assert both.check_members([PLAIN, SHARE]) == [(0, 0), (0, 0)]
    # The new generations take imports of their own
    both.import_(SHARE, [inside[0], outside[0]], mode="remove", counts=(2, 1, 1, 0))
    both.import_(PLAIN, ["user_id", inside[0], outside[0]], counts=(2, 2, 0, 0))
    both.import_(PLAIN, [inside[0], "x"], counts=(2, 0, 1, 1))
    both.import_(PLAIN, [], counts=(0, 0, 0, 0))  # an empty file is done with nothing
    assert both.check_members([PLAIN, SHARE]) == [(2, 0), (0, 2)]
    everyone = both.check_reports()
    assert everyone.count((inside[0], PLAIN, "remove", "segment_deleted")) == 1


def expired_member(both: Differential) -> None:
    """PLAIN with a permanent member and one whose membership expired a moment ago."""
    both.users = [1000, 1002]
    both.create(PLAIN, expect=201)
    both.change(1000, add=[Add(PLAIN, ttl_seconds=1)], added=[PLAIN])
    both.change(1002, add=[PLAIN], added=[PLAIN])
    time.sleep(1.5)
    both.check_users()
    assert both.segments_of(1000) == []


@pytest.mark.slow
def test_an_expired_membership_leaves_the_member_counts_once_the_sweeper_ended_it(both: Differential) -> None:
    expired_member(both)

    both.clean_up()  # the background once its jobs are due: the sweeper has ended the expiry

    assert both.check_members([PLAIN]) == [(1, 0)]
