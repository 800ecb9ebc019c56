"""History keeps the order changes took effect, even when their requests' clocks disagree."""

from datetime import UTC, datetime, timedelta

from logic.cleanup import ended_by_deletion
from logic.memberships import after_every_change
from models.domain import Change, DeletedGeneration, MembershipRecord, MembershipState, Operation, Reason

T = datetime(2023, 8, 29, 10, 0, tzinfo=UTC)


def member(change_at: datetime) -> MembershipRecord:
    change = Change(Operation.ADD, Reason.MANUAL, change_at)
    return MembershipRecord(1000, "A", 1, MembershipState.MEMBER, 1, change_at, None, change)


def test_an_add_committed_after_a_delete_began_is_removed_after_it_was_added() -> None:
    # Given a delete stamped T and an add stamped later that committed before the clean-up reached it
    record = member(T + timedelta(seconds=1))
    # When the clean-up ends it
    ended = ended_by_deletion(record, DeletedGeneration("A", 1, T))
    # Then the removal follows the add
    assert ended.change is not None and ended.change.at == T + timedelta(seconds=1, microseconds=1)
    assert ended.change.reason is Reason.SEGMENT_DELETED


def test_a_removal_before_the_add_keeps_the_deletion_time() -> None:
    ended = ended_by_deletion(member(T - timedelta(days=1)), DeletedGeneration("A", 1, T))
    assert ended.change is not None and ended.change.at == T


def test_a_request_takes_effectafter_every_change_it_read() -> None:
    later = {"A": member(T + timedelta(milliseconds=5))}
    assert after_every_change(T, later) == T + timedelta(milliseconds=5, microseconds=1)
    assert after_every_change(T, {"A": member(T - timedelta(seconds=1))}) == T
    assert after_every_change(T, {}) == T


def test_a_readd_at_the_instant_of_expiry_takes_effect_after_the_expiry() -> None:
    expired = MembershipRecord(1000, "A", 1, MembershipState.MEMBER, 1, T - timedelta(hours=1), T, None)
    assert after_every_change(T, {"A": expired}) == T + timedelta(microseconds=1)
