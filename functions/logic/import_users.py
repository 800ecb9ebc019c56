"""An import's users applied: each as a one-slug change by hand would be (manual wins, `added_at` kept,
the expiry updated, a remove of a percentage segment stores an opt-out), with reason `import`, and
exactly once however its chunk is retried (docs/imports.md).

Each user's change is written in one transaction with the user's mark of the import: the line that
decided the user. A chunk run again finds the marks of the users it decided before and counts them as
it did; a user on two lines is decided by whichever line commits first, and every other line of that
user is a duplicate (`unchanged`).
"""

import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from logic.memberships import after_every_change, after_every_rule, plan_changes
from logic.segments import FENCE_TIMEOUT
from models.domain import (
    Import,
    ImportCounts,
    ImportMark,
    ImportMode,
    MembershipRecord,
    MembershipWrite,
    Reason,
    Segment,
)
from models.errors import ConcurrentChange, ServiceBusy

BATCH = 100  # users read together and decided under one fresh, consistent read of the segment
# A batch's writes commit within this long of its read of the segment, or it reads it again: a clean-up
# walks the members index again two minutes after a deletion (logic.cleanup.SETTLE) to catch them.
READ_LIFETIME = timedelta(seconds=30)
USER_ATTEMPTS = 6  # a user changed concurrently (by a request or another line) is read again this often
FENCE_WAITS = 300  # 10 ms apart: a fenced rule change or deletion takes milliseconds (logic.segments)
Clock = Callable[[], datetime]
UserState = tuple[MembershipRecord | None, ImportMark | None]


class SegmentGone(Exception):
    """The import's segment generation was deleted: the import ends failed."""


class ExpiryPassed(Exception):
    """The import's `expires_at` is no longer in the future: its adds would end as they begin."""


class ImportUsersStore(Protocol):
    def live_segments(self, slugs: Iterable[str], consistent: bool) -> dict[str, Segment]: ...

    def import_states(self, slug: str, import_id: str, user_ids: list[int]) -> dict[int, UserState]:
        """Each user's membership of the slug and mark of the import, read consistently."""
        ...

    def commit_import_user(self, write: MembershipWrite | None, mark: ImportMark, member_shards: int) -> None:
        """The change (if any) and the mark, all or nothing; ConcurrentChange if either moved on."""
        ...


class _Batch(NamedTuple):
    segment: Segment
    started: datetime  # before the segment was read: every change of the batch takes effect after it


def apply_users(
    store: ImportUsersStore, job: Import, users: list[tuple[int, int]], clock: Clock, pool: ThreadPoolExecutor
) -> ImportCounts:
    """Apply each (line, user id) of a chunk; a user's later lines in the chunk are duplicates."""
    deciding: dict[int, int] = {}
    for line, user_id in users:
        deciding.setdefault(user_id, line)
    counts = ImportCounts(unchanged=len(users) - len(deciding))
    waiting = [(line, user_id) for user_id, line in deciding.items()]
    while waiting:
        batch, waiting = waiting[:BATCH], waiting[BATCH:]
        read = _read_segment(store, job, clock)
        states = store.import_states(job.slug, job.import_id, [user_id for _, user_id in batch])
        decided = list(
            pool.map(lambda pair, r=read, s=states: _apply(store, job, r, pair, s[pair[1]], clock), batch)
        )
        for pair, applied in zip(batch, decided, strict=True):
            if applied is None:
                waiting.append(pair)  # its batch's read grew old: decided again under a fresh one
            else:
                counts = counts.plus(ImportCounts(applied=1) if applied else ImportCounts(unchanged=1))
    return counts


def _read_segment(store: ImportUsersStore, job: Import, clock: Clock) -> _Batch:
    for _ in range(FENCE_WAITS):
        started = clock()
        segment = store.live_segments([job.slug], consistent=True).get(job.slug)
        if segment is None or segment.generation != job.generation:
            raise SegmentGone(job.slug)
        if not segment.fenced_at(started, FENCE_TIMEOUT):
            return _Batch(segment, started)
        time.sleep(0.01)  # a rule change or deletion is being decided
    raise ServiceBusy(f"segment {job.slug} is being changed; the import goes on later")


def _apply(
    store: ImportUsersStore, job: Import, read: _Batch, pair: tuple[int, int], state: UserState, clock: Clock
) -> bool | None:
    """Whether the line changed the user (None: decide it again under a fresh read of the segment)."""
    line, user_id = pair
    slug = job.slug
    for attempt in range(USER_ATTEMPTS):
        record, mark = state
        if mark is not None:
            return mark.applied if mark.line == line else False  # decided before, by this line or another
        if clock() - read.started > READ_LIFETIME:
            return None
        if attempt:
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
        records = {slug: record} if record is not None else {}
        now = after_every_change(after_every_rule(read.started, [read.segment]), records)
        expiries, removes = ({slug: _expiry(job, now)}, []) if job.mode is ImportMode.ADD else ({}, [slug])
        plan = plan_changes(user_id, {slug: read.segment}, records, expiries, removes, now, Reason.IMPORT)
        applied = bool(plan.added or plan.removed)
        try:
            store.commit_import_user(
                plan.writes[0] if plan.writes else None,
                ImportMark(user_id, job.import_id, line, applied),
                read.segment.member_shards,
            )
        except ConcurrentChange:
            state = store.import_states(slug, job.import_id, [user_id])[user_id]
            continue
        return applied
    raise ServiceBusy(f"user {user_id} is being changed concurrently; the import goes on later")


def _expiry(job: Import, now: datetime) -> datetime | None:
    if job.ttl_seconds is not None:
        return now + timedelta(seconds=job.ttl_seconds)
    if job.expires_at is not None and job.expires_at <= now:
        raise ExpiryPassed(job.import_id)
    return job.expires_at
