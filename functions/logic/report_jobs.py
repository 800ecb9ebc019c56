"""The three ways a history report gets written: a request, the monthly schedule, the background worker."""

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from logic.report_fanout import FanOut, ReportJob
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
    stored_or_written,
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


class ReportJobs(Protocol):
    def job(self, key: str) -> ReportJob | None: ...

    def claim(self, key: str, now: datetime) -> None: ...

    def finish(self, key: str) -> None: ...


class JobOutcome(NamedTuple):
    step: str  # written (by one writer), fanned out, waiting (for its slices), composed, done (before)
    rows: int | None = None


def run_report_job(
    key: str,
    jobs: ReportJobs,
    fan_out: FanOut,
    source: HistorySource,
    memberships: UserRecords,
    storage: ReportStorage,
    now: datetime,
    alone_seconds: float,
) -> JobOutcome:
    """A report request's job. A user's report is written by one writer, however long it takes. An
    all-users month is written alone for `alone_seconds` (unless a request missed its deadline
    already), else fanned out: its slices are sent, and the job, sent again once they are written,
    composes them (docs/background-jobs.md)."""
    job = jobs.job(key)
    if job is None:
        return JobOutcome("done")
    if job.run is not None:
        report = fan_out.coordinate(job, now)
        if report is None:
            return JobOutcome("waiting")
        jobs.finish(key)
        return JobOutcome("composed", report.rows)
    jobs.claim(key, now)
    period = parse_period(job.period, now)
    if job.user_id is not None or (not job.fan_out and alone_seconds > 0):
        deadline = time.monotonic() + alone_seconds
        if job.user_id is not None:
            deadline = float("inf")  # a user's report: one writer, however long it takes

        def rows() -> Iterator[HistoryRow]:
            return report_rows(source, memberships, period, job.user_id, now, memberships.user_records)

        key_written = report_key(period, job.user_id)
        written = stored_or_written(
            storage, key_written, rows, period, now, lambda: time.monotonic() > deadline
        )
        if written is not None:
            jobs.finish(key)
            return JobOutcome("written", written.rows)
    fan_out.start(job, now)
    return JobOutcome("fanned out")
