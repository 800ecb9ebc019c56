"""The three ways a history report gets written: a request, the monthly schedule, the background worker."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Protocol

from logic.auto_history import auto_history_rows, quiet_changes_of
from logic.history import expired_rows
from logic.reports import (
    BackgroundReports,
    HistorySource,
    Period,
    ReportLink,
    ReportPending,
    ReportStorage,
    history_report,
    parse_period,
    report_rows,
)
from models.domain import HistoryRow, MembershipRecord, RuleChange

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UserRecords(Protocol):
    def user_records(self, user_id: int, consistent: bool = False) -> list[MembershipRecord]: ...

    def rule_changes(self) -> list[RuleChange]: ...


def auto_rows(
    memberships: UserRecords, user_records: Callable[[int], list[MembershipRecord]], now: datetime
) -> Callable[[int, Period, list[HistoryRow]], list[HistoryRow]]:
    """A user's entries into and out of percentage segments, derived from the segments' rule changes
    (no row is stored per user); the replay needs the user's whole history up to the period's end."""

    def derive(user_id: int, period: Period, stored: list[HistoryRow]) -> list[HistoryRow]:
        records = user_records(user_id)
        expired = expired_rows(records, EPOCH, period.end, now)
        return auto_history_rows(
            user_id, memberships.rule_changes(), sorted({*stored, *expired}), period.start, period.end,
            quiet_changes=quiet_changes_of(records),
        )  # fmt: skip

    return derive


def write_report(
    source: HistorySource,
    memberships: UserRecords,
    storage: ReportStorage,
    background: BackgroundReports,
    period: Period,
    user_id: int | None,
    now: datetime,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReportLink | ReportPending:
    def rows() -> Iterator[HistoryRow]:
        user_records = cache(memberships.user_records)  # both the expiries and the replay need them
        derived = auto_rows(memberships, user_records, now)
        return report_rows(source, period, user_id, now, user_records, derived)

    return history_report(storage, background, rows, period, user_id, now, should_stop)


def previous_month(moment: datetime) -> str:
    """The month before the one `moment` falls in: what the schedule on the 1st reports."""
    return (moment.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def monthly_period(scheduled_at: datetime, now: datetime) -> Period:
    return parse_period(previous_month(scheduled_at), now)
