"""A user's segments: what they are now, and changing them all or nothing."""

import random
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from logic.buckets import bucket_of
from logic.catalog import SegmentCatalog
from logic.ports import SegmentStore
from logic.segments import FENCE_TIMEOUT
from models.domain import (
    Change,
    Membership,
    MembershipGuard,
    MembershipRecord,
    MembershipState,
    MembershipWrite,
    Operation,
    Reason,
    Segment,
    Source,
    UserUpdate,
)
from models.errors import ConcurrentChange, InvalidRequest, SegmentsMissing, ServiceBusy

MAX_EXPIRY = timedelta(days=3650)


class SegmentAdd(NamedTuple):
    slug: str
    ttl_seconds: int | None = None
    expires_at: datetime | None = None


class UpdateResult(NamedTuple):
    user_id: int
    added: list[str]
    removed: list[str]
    unchanged: list[str]
    segments: list[str]


class Plan:
    def __init__(self) -> None:
        self.writes: list[MembershipWrite] = []
        self.guards: list[MembershipGuard] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        self.unchanged: list[str] = []


def active_memberships(
    user_id: int, segments: dict[str, Segment], records: Iterable[MembershipRecord], now: datetime
) -> list[Membership]:
    """The user's active segments, sorted by slug: stored memberships of live generations plus buckets."""
    by_slug = {record.slug: record for record in records}
    buckets: dict[str, int] = {}
    active = []
    for slug in sorted(segments):
        source = _source(segments[slug], by_slug.get(slug), user_id, now, buckets)
        if source is None:
            continue
        record = by_slug.get(slug)
        if source is Source.MANUAL and record is not None:
            active.append(Membership(slug, source, record.added_at, record.expires_at))
        else:
            active.append(Membership(slug, source, None, None))
    return active


def user_segments(
    store: SegmentStore, catalog: SegmentCatalog, user_id: int, now: datetime
) -> list[Membership]:
    """A warm read is one eventually consistent Query; the segments come from the container cache."""
    records = store.user_records(user_id)
    segments = catalog.segments_for(record.slug for record in records)
    return active_memberships(user_id, segments, records, now)


def add_and_remove_segments(
    store: SegmentStore,
    catalog: SegmentCatalog,
    user_id: int,
    adds: list[SegmentAdd],
    removes: list[str],
    clock: Callable[[], datetime],
    attempts: int,
) -> UpdateResult:
    """Apply every change or none, to the user's own items only: no segment item is written or checked.

    The named segments are read consistently from the table (404 if any is missing), and the change
    takes effect after every rule they were decided under (docs/data-model.md). A segment whose rule
    is being changed or which is being deleted (fenced) is waited for; conflicting writers of the same
    user are retried; both a bounded number of times, then 503.
    """
    started = clock()
    for add in adds:
        _expiry(add, started)  # a past or too distant expires_at is a bad request, whatever else holds
    named = [add.slug for add in adds] + list(removes)
    for attempt in range(attempts):
        if attempt:
            time.sleep(random.uniform(0, 0.01 * 2**attempt))
        started = clock()
        segments = store.live_segments(named, consistent=True)
        catalog.remember(named, segments)
        missing = sorted(slug for slug in named if slug not in segments)
        if missing:
            raise SegmentsMissing(missing)
        if any(segment.fenced_at(started, FENCE_TIMEOUT) for segment in segments.values()):
            continue  # a rule change or deletion is being decided: it takes a few milliseconds
        records = {record.slug: record for record in store.user_records(user_id, consistent=True)}
        now = after_every_change(after_every_rule(started, segments.values()), records)
        expiries = {add.slug: _expiry(add, now) for add in adds}
        plan = plan_changes(user_id, segments, records, expiries, removes, now)
        update = UserUpdate([segments[slug] for slug in named], plan.writes, plan.guards)
        # Everything the answer needs is read before the commit: a failure after it would answer 503
        # for a change that was made.
        known = {**catalog.segments_for(slug for slug in records if slug not in segments), **segments}
        try:
            store.apply_user_update(update, token=str(uuid.uuid4()))
        except ConcurrentChange:
            continue  # another request wrote this user first: read again
        active = active_memberships(user_id, known, _records_after(records, plan.writes).values(), now)
        return UpdateResult(
            user_id=user_id,
            added=sorted(plan.added),
            removed=sorted(plan.removed),
            unchanged=sorted(plan.unchanged),
            segments=[membership.slug for membership in active],
        )
    raise ServiceBusy(f"user {user_id} is being changed concurrently; try again", retry_after=1)


def after_every_rule(now: datetime, segments: Iterable[Segment]) -> datetime:
    """A change decided under a segment's rule takes effect after that rule did: the per-user replay
    then sees the rule the request saw (a rule set on another machine may carry a later clock)."""
    latest = max((segment.decided_since for segment in segments), default=now)
    return now if latest < now else latest + timedelta(microseconds=1)


def after_every_change(now: datetime, records: dict[str, MembershipRecord]) -> datetime:
    """A change takes effect after every change already stored for the user: history keeps their order
    even when this request started before a concurrent one that committed first."""
    stamps = [record.change.at for record in records.values() if record.change]
    # An expiry that has passed is a change too: it shows in history at its own time.
    stamps += [r.expires_at for r in records.values() if r.expires_at is not None and r.expires_at <= now]
    latest = max(stamps, default=None)
    if latest is None or latest < now:
        return now
    return latest + timedelta(microseconds=1)


def plan_changes(
    user_id: int,
    segments: dict[str, Segment],
    records: dict[str, MembershipRecord],
    expiries: dict[str, datetime | None],
    removes: list[str],
    now: datetime,
    reason: Reason = Reason.MANUAL,
) -> "Plan":
    """What adding (with each expiry) and removing the named segments writes and answers, as of `now`:
    the one rule for a request and for each line of an import (reason `import`)."""
    plan = Plan()
    buckets: dict[str, int] = {}
    for slug, expires_at in expiries.items():
        segment, record = segments[slug], records.get(slug)
        source = _source(segment, record, user_id, now, buckets)
        revision = record.revision if record else None
        next_revision = (revision or 0) + 1
        if source is Source.MANUAL and record is not None and record.expires_at == expires_at:
            plan.guards.append(MembershipGuard(user_id, slug, revision))
            plan.unchanged.append(slug)
            continue
        if source is Source.MANUAL and record is not None:
            kept = MembershipRecord(
                user_id, slug, segment.generation, MembershipState.MEMBER, next_revision,
                record.added_at, expires_at, record.change,
            )  # fmt: skip
            plan.writes.append(MembershipWrite(kept, revision))
            plan.unchanged.append(slug)
            continue
        # Bucketed users become explicit members silently: they were in already, no report shows it.
        change = Change(Operation.ADD, reason, now, silent=source is Source.AUTO)
        member = MembershipRecord(
            user_id, slug, segment.generation, MembershipState.MEMBER, next_revision, now, expires_at, change
        )
        plan.writes.append(MembershipWrite(member, revision))
        (plan.unchanged if source is Source.AUTO else plan.added).append(slug)
    for slug in removes:
        segment, record = segments[slug], records.get(slug)
        source = _source(segment, record, user_id, now, buckets)
        revision = record.revision if record else None
        # An opt-out of a user the bucket left out anyway changes nothing visible: a silent change.
        change = Change(Operation.REMOVE, reason, now, silent=source is None)
        if segment.is_percentage and not (record is not None and record.is_opt_out_of(segment.generation)):
            # Manual changes win over buckets: the opt-out is stored so later ramps keep the user out.
            state = MembershipState.OPTED_OUT
        elif source is Source.MANUAL:
            state = MembershipState.REMOVED
        else:
            plan.guards.append(MembershipGuard(user_id, slug, revision))
            plan.unchanged.append(slug)
            continue
        ended = MembershipRecord(
            user_id, slug, segment.generation, state, (revision or 0) + 1,
            record.added_at if record else None, None, change,
        )  # fmt: skip
        plan.writes.append(MembershipWrite(ended, revision))
        (plan.unchanged if source is None else plan.removed).append(slug)
    return plan


def _source(
    segment: Segment, record: MembershipRecord | None, user_id: int, now: datetime, buckets: dict[str, int]
) -> Source | None:
    """Why the user is in the segment right now, if they are: a stored membership wins over the bucket."""
    if record is not None and record.is_opt_out_of(segment.generation):
        return None
    if record is not None and record.is_member_at(now, segment.generation):
        return Source.MANUAL
    if segment.is_percentage:
        if segment.seed not in buckets:
            buckets[segment.seed] = bucket_of(segment.seed, user_id)
        if segment.holds_bucket(buckets[segment.seed]):
            return Source.AUTO
    return None


def _expiry(add: SegmentAdd, now: datetime) -> datetime | None:
    if add.ttl_seconds is not None:
        return now + timedelta(seconds=add.ttl_seconds)
    if add.expires_at is None:
        return None
    if add.expires_at <= now:
        raise InvalidRequest(
            "expires_at must be in the future",
            errors=[{"field": f"add.{add.slug}.expires_at", "message": "must be in the future"}],
        )
    if add.expires_at > now + MAX_EXPIRY:
        raise InvalidRequest(
            "expires_at must be at most ten years ahead",
            errors=[{"field": f"add.{add.slug}.expires_at", "message": "must be at most ten years ahead"}],
        )
    return add.expires_at


def _records_after(
    records: dict[str, MembershipRecord], writes: list[MembershipWrite]
) -> dict[str, MembershipRecord]:
    after = dict(records)
    for write in writes:
        after[write.record.slug] = write.record
    return after
