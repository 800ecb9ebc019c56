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


class ItemChange(NamedTuple):
    """One stream record of a membership item."""

    old: MembershipRecord | None
    new: MembershipRecord | None
    at: datetime  # the record's approximate creation time, used only when the item says nothing better
    removed_by_ttl: bool


def history_rows(change: ItemChange, deletion_time: DeletionTime) -> list[HistoryRow]:
    old, new = change.old, change.new
    rows: list[HistoryRow] = []
    consumed_new_change = False
    if old is not None and old.state is MembershipState.MEMBER and _ended(old, new):
        reason, at = _end_of(change, deletion_time)
        if old.expires_at is not None and old.expires_at <= at:
            # It had already expired: the removal is the expiry, whoever noticed it later.
            reason, at = Reason.TTL_EXPIRED, old.expires_at
        rows.append(_row(old, Operation.REMOVE, reason, at))
        consumed_new_change = new is not None and _changed(old, new) and _is_removal(new)
    if new is not None and new.change is not None and _changed(old, new) and not consumed_new_change:
        rows.append(_row(new, new.change.operation, new.change.reason, new.change.at))
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
    if new is None:
        return (Reason.TTL_EXPIRED if change.removed_by_ttl else Reason.MANUAL), change.at
    if new.generation != old.generation:
        # Re-added after the segment was deleted and created again, before clean-up reached it.
        deleted_at = deletion_time(old.slug, old.generation)
        return Reason.SEGMENT_DELETED, deleted_at or change.at
    if new.change is not None and _changed(old, new):
        if new.change.operation is Operation.REMOVE:
            return new.change.reason, new.change.at
        return Reason.TTL_EXPIRED, new.change.at  # re-added over an expired, undeleted membership
    return Reason.MANUAL, change.at


def _row(record: MembershipRecord, operation: Operation, reason: Reason, at: datetime) -> HistoryRow:
    return HistoryRow(at=at, user_id=record.user_id, slug=record.slug, operation=operation, reason=reason)


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
