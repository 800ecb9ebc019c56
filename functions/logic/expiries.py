"""Expired memberships end within seconds (ExpirySweepSeconds), not when DynamoDB's TTL gets to them
(within days): the sweeper tombstones each with its `ttl_expired` change, so history shows the expiry
and the member counts drop at once (docs/background-jobs.md). TTL still deletes the tombstones later."""

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Protocol

from models.domain import Change, MembershipRecord, MembershipState, Operation, Reason

# Each sweep looks this far behind its last one: a membership written a moment before its expiry
# reaches the month index a little later (the index lags), and a sweep may have failed.
OVERLAP = timedelta(minutes=2)
FIRST_SWEEP = timedelta(days=1)


class ExpiryStore(Protocol):
    def expiring_members(self, start: datetime, end: datetime) -> Iterator[MembershipRecord]: ...

    def end_membership(self, record: MembershipRecord, ended: MembershipRecord) -> bool: ...


def sweep_window(swept_until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    start = now - FIRST_SWEEP if swept_until is None else swept_until - OVERLAP
    return start, now


def expired_tombstone(record: MembershipRecord) -> MembershipRecord:
    assert record.expires_at is not None
    change = Change(Operation.REMOVE, Reason.TTL_EXPIRED, record.expires_at)
    return record._replace(state=MembershipState.REMOVED, revision=record.revision + 1, change=change)


def end_expired(store: ExpiryStore, records: Iterable[MembershipRecord], now: datetime) -> int:
    """Tombstone every member past its expiry (conditional on the record read: one a request changed
    meanwhile is left to that request); how many ended."""
    ended = 0
    for record in records:
        if (
            record.state is MembershipState.MEMBER
            and record.expires_at is not None
            and record.expires_at <= now
        ):
            ended += int(store.end_membership(record, expired_tombstone(record)))
    return ended
