"""Membership history from the table's stream: which change an item write made, as report rows.

Every membership write carries the change it made (operation, reason, time), decided by the API or
the clean-up; this module reads the old and new images of one write and names the rows, exactly
once per change. Rows have deterministic keys, so a re-delivered record writes the same rows again.
"""

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from models.domain import HistoryRow, MembershipRecord, MembershipState, Operation, Reason

DeletionTime = Callable[[str, int], datetime | None]


class DeletionTimes:
    """When segment generations were deleted, each read once: a deletion never changes, so it is kept
    (the latest `kept` of them); "not deleted" is asked again each time, as it may stop being true."""

    def __init__(self, read: DeletionTime, kept: int = 1024) -> None:
        self._read = read
        self._kept = kept
        self._known: dict[tuple[str, int], datetime] = {}

    def __call__(self, slug: str, generation: int) -> datetime | None:
        found = self._known.get((slug, generation))
        if found is None:
            found = self._read(slug, generation)
            if found is None:
                return None
            self._known[(slug, generation)] = found
            while len(self._known) > self._kept:
                self._known.pop(next(iter(self._known)))
        return found

    def forget(self) -> None:
        self._known.clear()


class ItemChange(NamedTuple):
    """One stream record of a membership item."""

    old: MembershipRecord | None
    new: MembershipRecord | None
    at: datetime  # the record's approximate creation time, used only when the item says nothing better
    removed_by_ttl: bool


def history_rows(change: ItemChange, deletion_time: DeletionTime) -> list[HistoryRow]:
    """The stored rows one write makes: the end of the old membership, then the write's own change.

    A membership that had expired before the write ends at its expiry (`ttl_expired`), whoever
    noticed it later: a re-add, an opt-out, the clean-up or DynamoDB's TTL. The write's own change
    follows unless it was that end: a removal of the same membership while it was in force, or a
    tombstone (written over a membership that had ended already).
    """
    old, new = change.old, change.new
    rows: list[HistoryRow] = []
    new_change_written = new is not None and new.change is not None and _changed(old, new)
    if old is not None and old.state is MembershipState.MEMBER and _ended(old, new):
        reason, at = _end_of(change, deletion_time)
        expired = old.expires_at is not None and old.expires_at <= at
        if old.expires_at is not None and expired:
            reason, at = Reason.TTL_EXPIRED, old.expires_at
        rows.append(_row(old, Operation.REMOVE, reason, at))
        if new is not None and (
            new.state is MembershipState.REMOVED
            or (_is_removal(new) and new.generation == old.generation and not expired)
        ):
            new_change_written = False
    if new_change_written:
        assert new is not None and new.change is not None
        rows.append(_row(new, new.change.operation, new.change.reason, new.change.at, new.change.silent))
    return rows


def _ended(old: MembershipRecord, new: MembershipRecord | None) -> bool:
    """Did the write end the old membership (rather than only change its expiry)?"""
    if new is None or new.state is not MembershipState.MEMBER or new.generation != old.generation:
        return True
    return _changed(old, new)


def _changed(old: MembershipRecord | None, new: MembershipRecord) -> bool:
    return new.change is not None and (old is None or old.change != new.change)


def _is_removal(record: MembershipRecord) -> bool:
    return record.change is not None and record.change.operation is Operation.REMOVE


def _end_of(change: ItemChange, deletion_time: DeletionTime) -> tuple[Reason, datetime]:
    old, new = change.old, change.new
    assert old is not None
    if new is None and change.removed_by_ttl:
        return _expiry_of(old, old.expires_at, change.at, deletion_time)
    if new is None:
        return Reason.MANUAL, change.at
    if new.generation != old.generation:
        # Re-added after the segment was deleted and created again, before clean-up reached it.
        deleted_at = deletion_time(old.slug, old.generation)
        return Reason.SEGMENT_DELETED, deleted_at or change.at
    if new.change is not None and _changed(old, new):
        if new.change.operation is Operation.REMOVE and new.change.reason is Reason.TTL_EXPIRED:
            return _expiry_of(old, new.change.at, new.change.at, deletion_time)  # the sweeper's
        if new.change.operation is Operation.REMOVE:
            return new.change.reason, new.change.at
        return Reason.TTL_EXPIRED, new.change.at  # re-added over an expired, undeleted membership
    return Reason.MANUAL, change.at


def _expiry_of(
    old: MembershipRecord, expires_at: datetime | None, at: datetime, deletion_time: DeletionTime
) -> tuple[Reason, datetime]:
    """An expiry ending `old` at `at`. TTL and the sweeper can each reach a member of a generation
    deleted before its expiry ahead of the clean-up: the member left at the deletion, not then."""
    deleted_at = deletion_time(old.slug, old.generation)
    if deleted_at is not None and expires_at is not None and deleted_at < expires_at:
        return Reason.SEGMENT_DELETED, deleted_at
    return Reason.TTL_EXPIRED, at


def _row(
    record: MembershipRecord, operation: Operation, reason: Reason, at: datetime, silent: bool = False
) -> HistoryRow:
    return HistoryRow(at, record.user_id, record.slug, operation, reason, silent)


def expired_rows(
    records: list[MembershipRecord], start: datetime, end: datetime, now: datetime
) -> list[HistoryRow]:
    """Expiries DynamoDB has not deleted yet still belong in the history, at their expiry time."""
    return sorted(
        _row(record, Operation.REMOVE, Reason.TTL_EXPIRED, record.expires_at)
        for record in records
        if record.state is MembershipState.MEMBER
        and record.expires_at is not None
        and start <= record.expires_at < end
        and record.expires_at <= now
    )
