"""Background clean-up of a deleted segment generation: its members lose it, with their history.

A clean-up is a job (docs/background-jobs.md). It walks every shard of the generation's members
index, page by page, and tombstones each member (its `segment_deleted` row follows from the stream).
An index lags the table, and a user change that read the segment before its deletion may commit
just after it: a member can appear in the index after the walk passed its shard. So the job walks
twice: once at once, and once more when every such writer has finished and the index has caught
up (`SETTLE` after the deletion). Only then is it done.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol

from models.domain import (
    Change,
    CleanupJob,
    CleanupPhase,
    DeletedGeneration,
    MembershipRecord,
    MembershipState,
    Operation,
    Reason,
)

PAGE_SIZE = 1000  # DynamoDB pages stop at 1 MB anyway; fewer, larger pages mean fewer index reads
PARALLEL_WRITES = 8
# A user change of the generation commits within its function's timeout (10 s) of reading it, an
# import re-reads the segment at least every 30 s, and the index catches up within a second or two
# (docs/background-jobs.md): the second walk starts this long after the deletion.
SETTLE = timedelta(minutes=2)


def verify_from(job: CleanupJob) -> datetime:
    return job.generation.deleted_at + SETTLE


class CleanupStore(Protocol):
    def members_page(
        self, slug: str, generation: int, shard: int, cursor: str | None, limit: int
    ) -> tuple[list[MembershipRecord], str | None]: ...

    def end_membership(self, record: MembershipRecord, ended: MembershipRecord) -> bool: ...

    def drop_opt_out(self, record: MembershipRecord) -> None: ...


def ended_by_deletion(record: MembershipRecord, generation: DeletedGeneration) -> MembershipRecord:
    """The tombstone of a member whose segment was deleted; history reads its change.

    An add that committed after the delete began carries a later time than the deletion; the removal
    then takes effect just after it, so a membership never ends before it began.
    """
    at = generation.deleted_at
    if record.change is not None and record.change.at >= at:
        at = record.change.at + timedelta(microseconds=1)
    change = Change(Operation.REMOVE, Reason.SEGMENT_DELETED, at)
    return record._replace(state=MembershipState.REMOVED, revision=record.revision + 1, change=change)


def clean_up(
    store: CleanupStore, job: CleanupJob, now: datetime, time_left: Callable[[], bool]
) -> CleanupJob:
    """Walk on from where the job stands until it is done, must wait for its second walk, or time runs
    short; the caller saves what it returns (and, unless done or waiting, goes on with it).

    Every write is conditional on the record read, so a re-delivered or overlapping run is harmless.
    """
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        while job.phase is not CleanupPhase.DONE and not is_waiting(job, now):
            job = _next_page(store, job, pool)  # at least one page a run: every run makes progress
            if not time_left():
                return job
    return job


def is_waiting(job: CleanupJob, now: datetime) -> bool:
    return (
        job.phase is CleanupPhase.VERIFY and job.shard == 0 and job.cursor is None and now < verify_from(job)
    )


def _next_page(store: CleanupStore, job: CleanupJob, pool: ThreadPoolExecutor) -> CleanupJob:
    generation = job.generation
    records, cursor = store.members_page(
        generation.slug, generation.generation, job.shard, job.cursor, PAGE_SIZE
    )
    removed = job.removed + sum(pool.map(lambda record: _end(store, record, generation), records))
    if cursor is not None:
        return job._replace(cursor=cursor, removed=removed)
    if job.shard + 1 < generation.member_shards:
        return job._replace(shard=job.shard + 1, cursor=None, removed=removed)
    following = CleanupPhase.VERIFY if job.phase is CleanupPhase.WALK else CleanupPhase.DONE
    return CleanupJob(generation, following, 0, None, removed)


def _end(store: CleanupStore, record: MembershipRecord, generation: DeletedGeneration) -> int:
    if record.state is MembershipState.OPTED_OUT:
        store.drop_opt_out(record)  # its history is stored already; nothing shows for it
        return 0
    if record.state is MembershipState.MEMBER:
        return int(store.end_membership(record, ended_by_deletion(record, generation)))
    return 0
