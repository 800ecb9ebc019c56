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

# Users read together (consistent BatchGetItems) and decided under one fresh, consistent read of the
# segment; their changes are committed USERS_PER_TRANSACTION to a transaction, several at once.
BATCH = 400
USERS_PER_TRANSACTION = 25  # two items each (the membership and the mark): 50 of a transaction's 100
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

    def commit_import_users(
        self, changes: list[tuple[MembershipWrite | None, ImportMark]], member_shards: int
    ) -> None:
        """Each user's change (if any) and mark, all of them or none; ConcurrentChange if any moved on."""
        ...


class _Batch(NamedTuple):
    segment: Segment
    started: datetime  # before the segment was read: every change of the batch takes effect after it


class _Decision(NamedTuple):
    pair: tuple[int, int]  # (line, user id)
    applied: bool
    commit: tuple[MembershipWrite | None, ImportMark] | None  # None: decided before, nothing to write


def apply_users(
    store: ImportUsersStore, job: Import, users: list[tuple[int, int]], clock: Clock, pool: ThreadPoolExecutor
) -> ImportCounts:
    """Apply each (line, user id) of a chunk; a user's later lines in the chunk are duplicates."""
    deciding: dict[int, int] = {}
    for line, user_id in users:
        deciding.setdefault(user_id, line)
    counts = ImportCounts(unchanged=len(users) - len(deciding))
    waiting = [(line, user_id) for user_id, line in deciding.items()]
    if not waiting:
        _read_segment(store, job, clock)  # a chunk of bad lines too stops an import of a deleted segment
    while waiting:
        batch, waiting = waiting[:BATCH], waiting[BATCH:]
        read = _read_segment(store, job, clock)
        states = store.import_states(job.slug, job.import_id, [user_id for _, user_id in batch])
        decisions = [_decide(job, read, pair, states[pair[1]]) for pair in batch]
        groups = [
            decisions[start : start + USERS_PER_TRANSACTION]
            for start in range(0, len(decisions), USERS_PER_TRANSACTION)
        ]
        for outcomes in pool.map(
            lambda group, r=read, s=states: _commit(store, job, r, group, s, clock), groups
        ):
            for pair, applied in outcomes:
                if applied is None:
                    waiting.append(pair)  # its batch's read grew old: decided again under a fresh one
                else:
                    counts = counts.plus(ImportCounts(applied=1) if applied else ImportCounts(unchanged=1))
    return counts


def _commit(
    store: ImportUsersStore, job: Import, read: _Batch, group: list[_Decision],
    states: dict[int, UserState], clock: Clock,
) -> list[tuple[tuple[int, int], bool | None]]:  # fmt: skip
    """A group's changes in one transaction; if any of its users moved on meanwhile (a request, another
    line of the file), each user of the group is decided again and committed on its own."""
    changes = [decision.commit for decision in group if decision.commit is not None]
    if not changes:
        return [(decision.pair, decision.applied) for decision in group]
    if clock() - read.started > READ_LIFETIME:
        return [(decision.pair, None if decision.commit else decision.applied) for decision in group]
    try:
        store.commit_import_users(changes, read.segment.member_shards)
    except ConcurrentChange:
        return [(decision.pair, _apply(store, job, read, decision.pair, states[decision.pair[1]], clock))
                for decision in group]  # fmt: skip
    return [(decision.pair, decision.applied) for decision in group]


def _decide(job: Import, read: _Batch, pair: tuple[int, int], state: UserState) -> _Decision:
    """What the line does to its user, as of the batch's read of the segment."""
    line, user_id = pair
    record, mark = state
    if mark is not None:  # decided before, by this line (a chunk run again) or another (a duplicate)
        return _Decision(pair, mark.applied if mark.line == line else False, None)
    slug = job.slug
    records = {slug: record} if record is not None else {}
    now = after_every_change(after_every_rule(read.started, [read.segment]), records)
    expiries, removes = ({slug: _expiry(job, now)}, []) if job.mode is ImportMode.ADD else ({}, [slug])
    plan = plan_changes(user_id, {slug: read.segment}, records, expiries, removes, now, Reason.IMPORT)
    applied = bool(plan.added or plan.removed)
    write = plan.writes[0] if plan.writes else None
    return _Decision(pair, applied, (write, ImportMark(user_id, job.import_id, line, applied)))


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
    """One user on its own: whether the line changed the user (None: decide it again under a fresh
    read of the segment)."""
    for attempt in range(USER_ATTEMPTS):
        decision = _decide(job, read, pair, state)
        if decision.commit is None:
            return decision.applied
        if clock() - read.started > READ_LIFETIME:
            return None
        if attempt:
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
        try:
            store.commit_import_users([decision.commit], read.segment.member_shards)
        except ConcurrentChange:
            state = store.import_states(job.slug, job.import_id, [pair[1]])[pair[1]]
            continue
        return decision.applied
    raise ServiceBusy(f"user {pair[1]} is being changed concurrently; the import goes on later")


def _expiry(job: Import, now: datetime) -> datetime | None:
    if job.ttl_seconds is not None:
        return now + timedelta(seconds=job.ttl_seconds)
    if job.expires_at is not None and job.expires_at <= now:
        raise ExpiryPassed(job.import_id)
    return job.expires_at
