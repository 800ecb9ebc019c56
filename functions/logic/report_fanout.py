"""An all-users month too big for one writer, written by many (docs/background-jobs.md, the report job).

The month is cut into time slices. Rows are in report order, time first, so the slices written one
after another in time order are the report: each slice is a job of its own (a worker merges every
shard's rows between the slice's bounds and writes them as a temporary object), and once every
slice is written a coordinator composes the objects, in order, into the report's one object and
tags it as a single writer would. Where everything stands lives in the table (the report's request
and one item per slice); a message only names a job, so a message received twice, late or after a
redrive finds its job as it is: a written slice is never written again, a lost or stalled one is
sent again by the sweeper (its item is in the jobs index until it is written).
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, NamedTuple, Protocol
from uuid import uuid4

from logic.jobs import report_job
from logic.reports import (
    HistorySource,
    Period,
    ReportStorage,
    RuleLog,
    StoredReport,
    csv_lines,
    month_rows,
    parse_period,
    report_key,
    unique,
)
from models.domain import HistoryRow

SLICES_PER_WORKER = 4  # more slices than workers: a slice slower than the others holds up less
FAN_OUT_LIFETIME = timedelta(days=15)  # a run and its slices outlive a job waiting in its dead-letter queue


class ReportJob(NamedTuple):
    """A report request as its job sees it (status pending or failed: a done one is no job)."""

    key: str
    period: str
    user_id: int | None
    failed: bool = False
    fan_out: bool = False  # one writer missed its deadline already
    run: str | None = None  # planned: the slices' run
    slices: int = 0
    planned_at: datetime | None = None
    closed: bool = False  # the month had settled when planned: the report is final


class Slice(NamedTuple):
    """Rows at or after `since` and before `until` (None: the month's first or last slice)."""

    number: int
    since: datetime | None
    until: datetime | None


class SliceState(NamedTuple):
    number: int
    done: bool
    part: str | None = None  # its temporary object; None once done: the slice holds no row
    rows: int = 0
    size: int = 0  # bytes


class Part(NamedTuple):
    """A temporary object to compose, in order, and its size in bytes."""

    key: str
    size: int


class FanOutState(Protocol):
    """The request's plan and its slices, in the table."""

    def plan(self, key: str, run: str, slices: int, planned_at: datetime, closed: bool) -> bool:
        """Record the run, unless the request has one already (then False)."""
        ...

    def job(self, key: str) -> ReportJob | None: ...

    def add_slices(self, job: ReportJob, slices: Sequence[Slice], now: datetime) -> list[int]:
        """Create the slices the run lacks, each a job; the indexes of those created now."""
        ...

    def slices(self, key: str, run: str) -> list[SliceState]: ...

    def slice(self, key: str, run: str, index: int) -> tuple[Slice, SliceState] | None: ...

    def claim_slice(self, key: str, run: str, index: int, now: datetime) -> bool:
        """Only one worker writes a slice at a time: False if it is written, or claimed and not stale."""
        ...

    def release_slice(self, key: str, run: str, index: int) -> None: ...

    def finish_slice(self, key: str, run: str, state: SliceState) -> None: ...

    def fail_slice(self, key: str, run: str, index: int) -> None: ...

    def drop_slice(self, key: str, run: str, index: int) -> None:
        """A slice of a run no longer wanted: out of the jobs index."""
        ...

    def claim_compose(self, key: str, now: datetime) -> bool:
        """Only one coordinator composes at a time: False if another one does and is not stale."""
        ...

    def release_compose(self, key: str) -> None: ...

    def wait(self, key: str, now: datetime) -> None:
        """The slices are being written: the sweeper looks at the request again after a while."""
        ...


class PartStorage(ReportStorage, Protocol):
    def write_part(self, key: str, lines: Iterable[str]) -> tuple[int, int]:
        """Stream the lines into a temporary object; (lines, bytes). No object when there is no line."""
        ...

    def compose(self, key: str, parts: Sequence[Part], report: StoredReport) -> None:
        """The parts, in order, as the report's one object, stored with `report` as a single writer
        stores it."""
        ...


def plan_slices(period: Period, count: int) -> list[Slice]:
    """`count` slices of the month, equally long and cut on whole seconds. A cut is an instant: every
    row of one instant is in one slice (so is a row and the undeleted expiry it duplicates), and a row
    at the cut itself is in the later slice. The first and last are open-ended, as reading the whole
    month is."""
    step = (period.end - period.start) / count
    cuts = sorted({(period.start + step * number).replace(microsecond=0) for number in range(1, count)})
    cuts = [cut for cut in cuts if cut > period.start]  # more slices than seconds: one a second
    bounds: list[datetime | None] = [None, *cuts, None]
    return [Slice(number, since, until) for number, (since, until) in enumerate(pairwise(bounds))]


def part_key(period: str, run: str, index: int) -> str:
    """A slice's temporary object: under reports/, which the bucket's lifecycle rule expires."""
    return f"reports/parts/{period}/{run}/{index:05d}.csv"


class FanOut:
    """The report job's fan-out: plan, write a slice, compose."""

    def __init__(
        self,
        source: HistorySource,
        rules: RuleLog,
        storage: PartStorage,
        state: FanOutState,
        send: Callable[[list[dict[str, Any]]], object],
        workers: int,
    ) -> None:
        self._source = source
        self._rules = rules
        self._storage = storage
        self._state = state
        self._send = send
        self._workers = workers

    def start(self, job: ReportJob, now: datetime) -> None:
        """Plan the month's slices (once: a second planner finds the plan made) and send them."""
        period = parse_period(job.period, now)
        run, count = uuid4().hex[:16], self._workers * SLICES_PER_WORKER
        count = len(plan_slices(period, count))
        if self._state.plan(job.key, run, count, now, period.closed_at(now)):
            job = job._replace(run=run, slices=count, planned_at=now, closed=period.closed_at(now))
        else:
            found = self._state.job(job.key)
            if found is None or found.run is None:
                return
            job = found
        self.coordinate(job, now)

    def coordinate(self, job: ReportJob, now: datetime) -> StoredReport | None:
        """The report composed once every slice is written (None until then). Slices a planner died
        before making are made and sent here."""
        assert job.run is not None and job.planned_at is not None
        slices = self._state.slices(job.key, job.run)
        missing = sorted(set(range(job.slices)) - {piece.number for piece in slices})
        if missing:
            planned = plan_slices(parse_period(job.period, job.planned_at), job.slices)
            made = self._state.add_slices(job, [planned[number] for number in missing], now)
            self._send([report_job(job.key, job.run, number) for number in made])
            return None
        if not all(piece.done for piece in slices):
            if not job.failed:
                self._state.wait(job.key, now)
            return None
        if not self._state.claim_compose(job.key, now):
            return None  # another coordinator is composing it
        try:
            return self._compose(job, slices)
        except Exception:  # a worker that dies holds its claim until it is stale
            self._state.release_compose(job.key)
            raise

    def write_slice(self, key: str, run: str, index: int, now: datetime) -> int | None:
        """Write one slice, unless it is written or being written; its rows, None if not written here.
        Whoever finds the set complete sends the coordinator's job (it composes once, however many)."""
        found, job = self._state.slice(key, run, index), self._state.job(key)
        if found is None:
            return None
        if job is None or job.run != run or job.planned_at is None:
            self._state.drop_slice(key, run, index)  # a later request of the same report planned again
            return None
        piece, state = found
        if state.done:
            self._send_if_complete(key, run)  # the message of the one that completed it may be lost
            return None
        if not self._state.claim_slice(key, run, index, now):
            return None
        try:
            period = parse_period(job.period, job.planned_at)
            rows = slice_rows(self._source, self._rules, period, piece, job.planned_at)
            part = part_key(period.month, run, index)
            lines, size = self._storage.write_part(part, csv_lines(rows, header=index == 0))
        except Exception:  # a worker that dies holds its claim until it is stale
            self._state.release_slice(key, run, index)
            raise
        written = lines - (1 if index == 0 else 0)
        self._state.finish_slice(key, run, SliceState(index, True, part if size else None, written, size))
        self._send_if_complete(key, run)
        return written

    def _send_if_complete(self, key: str, run: str) -> None:
        if all(state.done for state in self._state.slices(key, run)):
            self._send([report_job(key)])

    def fail_slice(self, key: str, run: str, index: int) -> None:
        self._state.fail_slice(key, run, index)

    def _compose(self, job: ReportJob, slices: list[SliceState]) -> StoredReport:
        assert job.planned_at is not None
        period = parse_period(job.period, job.planned_at)
        key = report_key(period, job.user_id)
        stored = self._storage.describe(key)
        if stored is not None and stored.complete:
            return stored  # written for good already (by a request that fit its deadline, or before)
        parts = [Part(piece.part, piece.size) for piece in sorted(slices) if piece.part is not None]
        report = StoredReport(sum(piece.rows for piece in slices), job.closed)
        self._storage.compose(key, parts, report)
        return report


def slice_rows(
    source: HistorySource, rules: RuleLog, period: Period, piece: Slice, now: datetime
) -> Iterator[HistoryRow]:
    """A slice's lines, as the whole month's report has them between the slice's bounds: equal rows
    (a stored expiry and its undeleted item) share their instant, so never two slices."""
    entries = source.all_users_month(period.month, piece.since, piece.until)
    return unique(month_rows(entries, period, now, rules))
