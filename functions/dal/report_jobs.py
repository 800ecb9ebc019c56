"""Report jobs in the table: the request of a report finished in the background, and the slices of a
fanned-out one, in the request's own partition (docs/background-jobs.md). Every change is one
conditional UpdateItem or PutItem, so a message received twice finds the job as it stands."""

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from dal.entities import (
    REPORT_JOBS,
    ReportRequestItem,
    ReportSliceItem,
    job_gsi1sk,
    jobs_gsi1pk,
    report_request_pk,
    report_slice_job,
    report_slice_sk,
    report_slices_prefix,
)
from dal.repository import JOB_STALE_AFTER
from dal.transient import busy_when_transient
from logic.report_fanout import FAN_OUT_LIFETIME, ReportJob, Slice, SliceState
from shared.clock import from_stored, to_stored

REQUEST_LIFETIME = timedelta(hours=1)
DONE, FAILED, PENDING = "done", "failed", "pending"


@busy_when_transient
class DynamoBackgroundReports:
    """Report jobs: a request item whose stream record enqueues the job; it stays in the jobs index
    (JOBS#report) while pending, so the sweeper sends it again if it is lost. A fanned-out report's
    slices are jobs of their own, in the jobs index until written."""

    def __init__(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="slices")

    def request(
        self, key: str, period: str, user_id: int | None, now: datetime, fan_out: bool = False
    ) -> bool:
        item = ReportRequestItem(
            report_request_pk(key),
            ReportRequestItem.SK,
            key=key,
            period=period,
            user_id=user_id,
            status=PENDING,
            requested_at=to_stored(now),
            ttl=math.ceil((now + REQUEST_LIFETIME).timestamp()),
            fan_out=fan_out or None,
        )
        item.gsi1pk, item.gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        still_pending = (ReportRequestItem.status == PENDING) & (ReportRequestItem.ttl > int(now.timestamp()))
        try:
            item.save(condition=~still_pending)
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def job(self, key: str) -> ReportJob | None:
        """A report still to write, read consistently; None if done or unknown."""
        try:
            item = ReportRequestItem.get(report_request_pk(key), ReportRequestItem.SK, consistent_read=True)
        except ReportRequestItem.DoesNotExist:
            return None
        if item.status == DONE:
            return None
        return ReportJob(
            key=item.key,
            period=item.period,
            user_id=None if item.user_id is None else int(item.user_id),
            failed=item.status == FAILED,
            fan_out=bool(item.fan_out),
            run=item.run,
            slices=int(item.slices or 0),
            planned_at=None if item.planned_at is None else from_stored(item.planned_at),
            closed=bool(item.closed),
        )

    def claim(self, key: str, now: datetime) -> None:
        """Being written: the sweeper leaves it alone until it is stale."""
        gsi1pk, gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        self._update(key, [ReportRequestItem.gsi1pk.set(gsi1pk), ReportRequestItem.gsi1sk.set(gsi1sk)])

    def finish(self, key: str) -> None:
        self._update(
            key,
            [ReportRequestItem.status.set(DONE), ReportRequestItem.claimed_until.remove(), *_out_of_jobs()],
        )

    def fail(self, key: str) -> None:
        """Its message goes to the dead-letter queue: out of the sweeper's sight until redriven."""
        self._update(key, [ReportRequestItem.status.set(FAILED), *_out_of_jobs()])

    # --- a fanned-out report --------------------------------------------------------------------

    def plan(self, key: str, run: str, slices: int, planned_at: datetime, closed: bool) -> bool:
        """The run, once per request: a second planner finds the first one's (False). The request and
        its slices now live until a job waiting in its dead-letter queue could be redriven."""
        actions = [
            ReportRequestItem.run.set(run),
            ReportRequestItem.slices.set(slices),
            ReportRequestItem.planned_at.set(to_stored(planned_at)),
            ReportRequestItem.closed.set(closed),
            ReportRequestItem.ttl.set(_lifetime(planned_at)),
        ]
        return self._update_if(key, actions, ReportRequestItem.run.does_not_exist())

    def add_slices(self, job: ReportJob, slices: Sequence[Slice], now: datetime) -> list[int]:
        assert job.run is not None
        run = job.run

        def add(piece: Slice) -> int | None:
            item = ReportSliceItem(
                report_request_pk(job.key),
                report_slice_sk(run, piece.number),
                key=job.key,
                run=run,
                index=piece.number,
                lower=None if piece.since is None else to_stored(piece.since),
                upper=None if piece.until is None else to_stored(piece.until),
                status=PENDING,
                ttl=_lifetime(now),
            )
            item.gsi1pk, item.gsi1sk = _slice_job_key(job.key, run, piece.number, now + JOB_STALE_AFTER)
            try:
                item.save(condition=ReportSliceItem.pk.does_not_exist())
            except PutError as error:
                if _condition_failed(error):
                    return None
                raise
            return piece.number

        return [index for index in self._writer.map(add, slices) if index is not None]

    def slices(self, key: str, run: str) -> list[SliceState]:
        items = ReportSliceItem.query(
            report_request_pk(key),
            ReportSliceItem.sk.startswith(report_slices_prefix(run)),
            consistent_read=True,
        )
        return [_slice_state(item) for item in items]

    def slice(self, key: str, run: str, index: int) -> tuple[Slice, SliceState] | None:
        try:
            item = ReportSliceItem.get(
                report_request_pk(key), report_slice_sk(run, index), consistent_read=True
            )
        except ReportSliceItem.DoesNotExist:
            return None
        since = None if item.lower is None else from_stored(item.lower)
        until = None if item.upper is None else from_stored(item.upper)
        return Slice(index, since, until), _slice_state(item)

    def claim_slice(self, key: str, run: str, index: int, now: datetime) -> bool:
        gsi1pk, gsi1sk = _slice_job_key(key, run, index, now + JOB_STALE_AFTER)
        actions = [
            ReportSliceItem.claimed_until.set(to_stored(now + JOB_STALE_AFTER)),
            ReportSliceItem.gsi1pk.set(gsi1pk),
            ReportSliceItem.gsi1sk.set(gsi1sk),
        ]
        free = ReportSliceItem.claimed_until.does_not_exist() | (
            ReportSliceItem.claimed_until < to_stored(now)
        )
        return _update_slice_if(key, run, index, actions, (ReportSliceItem.status != DONE) & free)

    def release_slice(self, key: str, run: str, index: int) -> None:
        _update_slice_if(key, run, index, [ReportSliceItem.claimed_until.remove()], None)

    def finish_slice(self, key: str, run: str, state: SliceState) -> None:
        part = ReportSliceItem.part.remove() if state.part is None else ReportSliceItem.part.set(state.part)
        actions = [
            ReportSliceItem.status.set(DONE),
            part,
            ReportSliceItem.rows.set(state.rows),
            ReportSliceItem.size.set(state.size),
            ReportSliceItem.claimed_until.remove(),
            ReportSliceItem.gsi1pk.remove(),
            ReportSliceItem.gsi1sk.remove(),
        ]
        _update_slice_if(key, run, state.number, actions, None)

    def fail_slice(self, key: str, run: str, index: int) -> None:
        """Its message goes to the dead-letter queue: out of the sweeper's sight until redriven."""
        actions = [
            ReportSliceItem.status.set(FAILED),
            ReportSliceItem.claimed_until.remove(),
            ReportSliceItem.gsi1pk.remove(),
            ReportSliceItem.gsi1sk.remove(),
        ]
        _update_slice_if(key, run, index, actions, ReportSliceItem.status != DONE)

    def drop_slice(self, key: str, run: str, index: int) -> None:
        actions = [ReportSliceItem.gsi1pk.remove(), ReportSliceItem.gsi1sk.remove()]
        _update_slice_if(key, run, index, actions, None)

    def claim_compose(self, key: str, now: datetime) -> bool:
        gsi1pk, gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        actions = [
            ReportRequestItem.claimed_until.set(to_stored(now + JOB_STALE_AFTER)),
            ReportRequestItem.gsi1pk.set(gsi1pk),
            ReportRequestItem.gsi1sk.set(gsi1sk),
        ]
        free = ReportRequestItem.claimed_until.does_not_exist() | (
            ReportRequestItem.claimed_until < to_stored(now)
        )
        return self._update_if(key, actions, (ReportRequestItem.status != DONE) & free)

    def release_compose(self, key: str) -> None:
        self._update(key, [ReportRequestItem.claimed_until.remove()])

    def wait(self, key: str, now: datetime) -> None:
        gsi1pk, gsi1sk = _job_key(key, now + JOB_STALE_AFTER)
        actions = [ReportRequestItem.gsi1pk.set(gsi1pk), ReportRequestItem.gsi1sk.set(gsi1sk)]
        self._update_if(key, actions, ReportRequestItem.status == PENDING)

    def _update(self, key: str, actions: list[Any]) -> None:
        ReportRequestItem(report_request_pk(key), ReportRequestItem.SK).update(
            actions=actions, condition=ReportRequestItem.pk.exists()
        )

    def _update_if(self, key: str, actions: list[Any], condition: Any) -> bool:
        try:
            ReportRequestItem(report_request_pk(key), ReportRequestItem.SK).update(
                actions=actions, condition=ReportRequestItem.pk.exists() & condition
            )
        except UpdateError as error:
            if _condition_failed(error):
                return False
            raise
        return True


def _update_slice_if(key: str, run: str, index: int, actions: list[Any], condition: Any) -> bool:
    exists = ReportSliceItem.pk.exists()
    try:
        ReportSliceItem(report_request_pk(key), report_slice_sk(run, index)).update(
            actions=actions, condition=exists if condition is None else exists & condition
        )
    except UpdateError as error:
        if _condition_failed(error):
            return False
        raise
    return True


def _slice_state(item: ReportSliceItem) -> SliceState:
    return SliceState(
        int(item.index), item.status == DONE, item.part, int(item.rows or 0), int(item.size or 0)
    )


def _condition_failed(error: PutError | UpdateError) -> bool:
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _lifetime(now: datetime) -> int:
    return math.ceil((now + FAN_OUT_LIFETIME).timestamp())


def _job_key(key: str, due_at: datetime) -> tuple[str, str]:
    return jobs_gsi1pk(REPORT_JOBS), job_gsi1sk(to_stored(due_at), key)


def _slice_job_key(key: str, run: str, index: int, due_at: datetime) -> tuple[str, str]:
    return jobs_gsi1pk(REPORT_JOBS), job_gsi1sk(to_stored(due_at), report_slice_job(key, run, index))


def _out_of_jobs() -> list[Any]:
    return [ReportRequestItem.gsi1pk.remove(), ReportRequestItem.gsi1sk.remove()]
