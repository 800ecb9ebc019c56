"""The three ways a history report gets written: a request, the monthly schedule, the background worker."""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Protocol

from logic.reports import (
    BackgroundReports,
    HistorySource,
    Period,
    ReportLink,
    ReportPending,
    ReportStorage,
    RuleLog,
    history_report,
    parse_period,
    report_key,
    report_rows,
)
from models.domain import HistoryRow, MembershipRecord


class UserRecords(RuleLog, Protocol):
    def user_records(self, user_id: int, consistent: bool = False) -> list[MembershipRecord]: ...


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
        return report_rows(source, memberships, period, user_id, now, memberships.user_records)

    return history_report(storage, background, rows, period, user_id, now, should_stop)


def request_report(
    storage: ReportStorage, background: BackgroundReports, period: Period, user_id: int | None, now: datetime
) -> str:
    """Ask for a report to be written in the background: "written" if it is final already, else
    "requested" (or "pending" if it was asked for and is not written yet)."""
    key = report_key(period, user_id)
    stored = storage.describe(key)
    if stored is not None and stored.complete:
        return "written"
    return "requested" if background.request(key, period.month, user_id, now) else "pending"


def previous_month(moment: datetime) -> str:
    """The month before the one `moment` falls in: what the schedule on the 1st reports."""
    return (moment.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def monthly_period(scheduled_at: datetime, now: datetime) -> Period:
    return parse_period(previous_month(scheduled_at), now)
