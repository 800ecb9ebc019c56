"""History reports: which rows a month holds, the CSV they make, and when a report is written once."""

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple, Protocol

from logic.auto_history import is_report_line, user_report_rows
from logic.history import expired_rows
from models.domain import HistoryRow, MembershipRecord, RuleChange, Segment
from models.errors import InvalidRequest
from shared.clock import to_public, to_stored

PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$", re.ASCII)
HEADER = "user_id;segment;operation;timestamp;reason\n"
RETRY_AFTER_SECONDS = 10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SETTLE = timedelta(minutes=15)  # after a month ends, until its report is written once for good


class Period(NamedTuple):
    month: str  # YYYY-MM
    start: datetime
    end: datetime

    def closed_at(self, now: datetime) -> bool:
        """Closed and settled: history rows reach the table through the stream and the month index a
        little after the change, so a month's report is final only a while after the month ends."""
        return now >= self.end + SETTLE


class ReportLink(NamedTuple):
    url: str
    expires_at: datetime
    period: str
    user_id: int | None
    rows: int


class ReportPending(NamedTuple):
    period: str
    user_id: int | None
    retry_after: int = RETRY_AFTER_SECONDS


class StoredReport(NamedTuple):
    rows: int
    complete: bool  # written after its month closed: it will never change


class HistorySource(Protocol):
    def user_until(self, user_id: int, end: str) -> Iterator[HistoryRow]:
        """Every row of one user before `end` (a stored timestamp), in time order."""
        ...

    def all_users_month(
        self, month: str, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[HistoryRow | MembershipRecord]:
        """Every user's rows of the month, and the memberships expiring in it that are still stored,
        in report order (time, user, slug); only those at or after `since` and before `until` when
        given (a slice: every entry of one instant falls in the same one)."""
        ...


class RuleLog(Protocol):
    def segment_rule_changes(self, slug: str) -> list[RuleChange]:
        """One slug's rule changes (all its generations), in time order."""
        ...

    def rule_changes_of(self, slugs: Iterable[str]) -> list[RuleChange]:
        """The named slugs' rule changes, in time order."""
        ...

    def slugs_with_rule_changes(self, months: Iterable[str]) -> set[str]:
        """The slugs whose rule changed in any of the months (YYYY-MM)."""
        ...

    def percentage_segments(self, consistent: bool = False) -> list[Segment]:
        """Every live percentage segment."""
        ...


class ReportWriter(Protocol):
    def write(self, text: str) -> None: ...


class ReportStorage(Protocol):
    def describe(self, key: str) -> StoredReport | None: ...

    def save(
        self,
        key: str,
        lines: Iterable[str],
        should_stop: Callable[[], bool],
        describe: Callable[[int], StoredReport],
    ) -> StoredReport | None:
        """Stream the lines into the object and store `describe(number of lines)` with it, which
        `describe(key)` answers from then on; None (nothing stored) if should_stop() said so."""
        ...

    def link(self, key: str) -> tuple[str, datetime]: ...


class BackgroundReports(Protocol):
    def request(
        self, key: str, period: str, user_id: int | None, now: datetime, fan_out: bool = False
    ) -> bool:
        """Ask for the report to be finished in the background; False if it already was asked for.
        `fan_out`: one writer missed its deadline already, so the background need not try alone."""
        ...


def parse_period(text: str | None, now: datetime) -> Period:
    match = PERIOD_RE.fullmatch(text or "")
    if match is None:
        raise InvalidRequest(
            "period must be a month as YYYY-MM", errors=[{"field": "period", "message": "expected YYYY-MM"}]
        )
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    if start > now or year < 1970:
        raise InvalidRequest(
            "period must not be in the future", errors=[{"field": "period", "message": "a future month"}]
        )
    return Period(match.group(0), start, end)


def report_key(period: Period, user_id: int | None) -> str:
    """Deterministic: the same request always names the same object."""
    if user_id is None:
        return f"reports/monthly/{period.month}.csv"
    return f"reports/users/{user_id}/{period.month}.csv"


def report_rows(
    source: HistorySource,
    rules: RuleLog,
    period: Period,
    user_id: int | None,
    now: datetime,
    user_records: Callable[[int], list[MembershipRecord]],
) -> Iterator[HistoryRow]:
    """The month's lines in report order, each once: stored history, undeleted expiries, derived rows.

    A user's rows are read up to the month's end in one Query: the month is their tail, and deriving
    the user's percentage-segment rows replays all of them."""
    if user_id is None:
        return unique(month_rows(source.all_users_month(period.month), period, now, rules))
    history = list(source.user_until(user_id, to_stored(period.end)))
    records = user_records(user_id)
    expiring = expired_rows(records, EPOCH, period.end, now)
    changes = rules_for_user({row.slug for row in [*history, *expiring]}, rules, period, now)
    unended = [record for record in records if not ended_by_deletion(record, changes)]
    expiring = expired_rows(unended, EPOCH, period.end, now)
    explicit = sorted({*history, *expiring})  # a stored expiry and its undeleted item are one change
    return unique(user_report_rows(user_id, changes, explicit, period.start, period.end))


def ended_by_deletion(record: MembershipRecord, rules: Iterable[RuleChange]) -> bool:
    """Whether the member's generation was deleted before its expiry: the member left then, with the
    deletion's `segment_deleted` row (logic.auto_history, the clean-up), not at an expiry after it."""
    return record.expires_at is not None and any(
        rule.deleted and rule.slug == record.slug and rule.generation == record.generation
        and rule.at < record.expires_at
        for rule in rules
    )  # fmt: skip


def rules_for_user(slugs: set[str], rules: RuleLog, period: Period, now: datetime) -> list[RuleChange]:
    """The rule changes a user's report replays, up to the period's end, of the segments it needs:
    those the user has rows of, and every segment whose rule may have held the user's bucket in the
    period: the live percentage segments and those whose rule changed (or ended) in or after it."""
    needed = set(slugs) | {segment.slug for segment in rules.percentage_segments(consistent=True)}
    needed |= rules.slugs_with_rule_changes(months_from(period.month, now))
    return [change for change in rules.rule_changes_of(sorted(needed)) if change.at < period.end]


def months_from(month: str, now: datetime) -> Iterator[str]:
    """YYYY-MM months from `month` up to the one `now` falls in."""
    year, number = int(month[:4]), int(month[5:])
    while (year, number) <= (now.year, now.month):
        yield f"{year:04d}-{number:02d}"
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)


def month_rows(
    entries: Iterator[HistoryRow | MembershipRecord], period: Period, now: datetime, rules: RuleLog
) -> Iterator[HistoryRow]:
    """Stored rows as they are; a membership TTL has not deleted yet becomes its expiry row, in place.
    An expiry the bucket still covered is no change (logic.auto_history), here as in a user's report."""
    rules_of = cache(rules.segment_rule_changes)
    for entry in entries:
        if isinstance(entry, HistoryRow):
            rows = [entry]
        else:
            rows = expired_rows([entry], period.start, period.end, now)
            if rows and ended_by_deletion(entry, rules_of(entry.slug)):
                continue  # its row is the deletion's, which the clean-up stores
        yield from (row for row in rows if is_report_line(row, rules_of))


def unique(rows: Iterable[HistoryRow]) -> Iterator[HistoryRow]:
    """Drop a row equal to the one before it: a stored expiry and its undeleted item are one change."""
    previous = None
    for row in rows:
        key = (row.at, row.user_id, row.slug, row.operation)
        if key != previous:
            yield row
        previous = key


def csv_lines(rows: Iterable[HistoryRow], header: bool = True) -> Iterator[str]:
    """The SPEC's CSV (without its header: a slice of it). Slugs are [A-Za-z0-9_.-] starting with a
    letter or digit: no cell needs quoting and none can start a spreadsheet formula."""
    if header:
        yield HEADER
    for row in rows:
        yield f"{row.user_id};{row.slug};{row.operation.value};{to_public(row.at)};{row.reason.value}\n"


def history_report(
    storage: ReportStorage,
    background: BackgroundReports,
    rows: Callable[[], Iterator[HistoryRow]],
    period: Period,
    user_id: int | None,
    now: datetime,
    should_stop: Callable[[], bool],
) -> ReportLink | ReportPending:
    """A closed month is written once and linked again; a report too big for the deadline goes to the
    background and the caller is told to come back."""
    key = report_key(period, user_id)
    stored = stored_or_written(storage, key, rows, period, now, should_stop)
    if stored is None:
        background.request(key, period.month, user_id, now, fan_out=user_id is None)
        return ReportPending(period.month, user_id)
    url, expires_at = storage.link(key)
    return ReportLink(url, expires_at, period.month, user_id, stored.rows)


def stored_or_written(
    storage: ReportStorage,
    key: str,
    rows: Callable[[], Iterator[HistoryRow]],
    period: Period,
    now: datetime,
    should_stop: Callable[[], bool],
) -> StoredReport | None:
    """The report as stored if it is final, else written now by one writer; None if should_stop()
    said to give up first (nothing is stored then)."""
    stored = storage.describe(key)
    if stored is not None and stored.complete:
        return stored
    complete = period.closed_at(now)
    return storage.save(
        key, csv_lines(rows()), should_stop, lambda lines: StoredReport(rows=lines - 1, complete=complete)
    )
