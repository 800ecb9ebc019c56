"""Which stored rows one write of a membership item makes (logic.history.history_rows)."""

from datetime import UTC, datetime, timedelta

from logic.history import ItemChange, history_rows
from models.domain import Change, HistoryRow, MembershipRecord, MembershipState, Operation, Reason

T = datetime(2025, 3, 1, tzinfo=UTC)
EXPIRY = T + timedelta(hours=1)
MEMBER, OPTED_OUT, REMOVED = MembershipState.MEMBER, MembershipState.OPTED_OUT, MembershipState.REMOVED
ADD, REMOVE = Operation.ADD, Operation.REMOVE


def record(
    state: MembershipState, change: Change | None, expires_at: datetime | None = None, generation: int = 1
) -> MembershipRecord:
    return MembershipRecord(7, "A", generation, state, 1, T, expires_at, change)


def rows(
    old: MembershipRecord | None,
    new: MembershipRecord | None,
    seen_at: datetime = T + timedelta(hours=5),
    ttl: bool = False,
    deleted_at: datetime | None = None,
) -> list[tuple[Operation, Reason, datetime, bool]]:
    found = history_rows(ItemChange(old, new, seen_at, ttl), lambda slug, generation: deleted_at)
    return [(row.operation, row.reason, row.at, row.silent) for row in found]


ADDED = Change(ADD, Reason.MANUAL, T)
LATER = T + timedelta(hours=3)


def test_a_silent_add_is_stored_as_a_silent_row() -> None:
    silent = Change(ADD, Reason.MANUAL, T, silent=True)
    assert rows(None, record(MEMBER, silent)) == [(ADD, Reason.MANUAL, T, True)]
    assert history_rows(ItemChange(None, record(MEMBER, silent), T, False), lambda s, g: None) == [
        HistoryRow(T, 7, "A", ADD, Reason.MANUAL, silent=True)
    ]


def test_a_re_add_over_an_expired_membership_ends_it_at_its_expiry_then_adds() -> None:
    old = record(MEMBER, ADDED, EXPIRY)
    readd = Change(ADD, Reason.MANUAL, LATER, silent=True)
    assert rows(old, record(MEMBER, readd)) == [
        (REMOVE, Reason.TTL_EXPIRED, EXPIRY, False),
        (ADD, Reason.MANUAL, LATER, True),
    ]


def test_an_opt_out_over_an_expired_membership_keeps_both_the_expiry_and_the_opt_out() -> None:
    old = record(MEMBER, ADDED, EXPIRY)
    opt_out = Change(REMOVE, Reason.MANUAL, LATER)
    assert rows(old, record(OPTED_OUT, opt_out)) == [
        (REMOVE, Reason.TTL_EXPIRED, EXPIRY, False),
        (REMOVE, Reason.MANUAL, LATER, False),
    ]


def test_an_opt_out_of_a_membership_in_force_is_one_remove() -> None:
    old = record(MEMBER, ADDED, EXPIRY)
    opt_out = Change(REMOVE, Reason.MANUAL, T + timedelta(minutes=5))
    assert rows(old, record(OPTED_OUT, opt_out)) == [(REMOVE, Reason.MANUAL, opt_out.at, False)]


def test_a_clean_up_tombstone_over_an_expired_membership_is_only_the_expiry() -> None:
    old = record(MEMBER, ADDED, EXPIRY)
    tombstone = Change(REMOVE, Reason.SEGMENT_DELETED, LATER)
    assert rows(old, record(REMOVED, tombstone)) == [(REMOVE, Reason.TTL_EXPIRED, EXPIRY, False)]


def test_an_opt_out_of_a_re_created_segment_keeps_the_old_generation_s_deletion() -> None:
    # A member of generation 1 (deleted, not cleaned yet) opts out of generation 2
    old = record(MEMBER, ADDED)
    opt_out = Change(REMOVE, Reason.MANUAL, LATER)
    assert rows(old, record(OPTED_OUT, opt_out, generation=2), deleted_at=T + timedelta(hours=2)) == [
        (REMOVE, Reason.SEGMENT_DELETED, T + timedelta(hours=2), False),
        (REMOVE, Reason.MANUAL, LATER, False),
    ]


def test_ttl_deletion_is_the_expiry() -> None:
    assert rows(record(MEMBER, ADDED, EXPIRY), None, ttl=True) == [
        (REMOVE, Reason.TTL_EXPIRED, EXPIRY, False)
    ]


def test_ttl_reaching_a_member_of_a_generation_deleted_before_its_expiry_is_the_deletion() -> None:
    deleted_at = T + timedelta(minutes=30)
    old = record(MEMBER, ADDED, EXPIRY)
    assert rows(old, None, ttl=True, deleted_at=deleted_at) == [
        (REMOVE, Reason.SEGMENT_DELETED, deleted_at, False)
    ]
    # A generation deleted after the expiry had lost the member already: the expiry stands
    assert rows(old, None, ttl=True, deleted_at=EXPIRY + timedelta(minutes=1)) == [
        (REMOVE, Reason.TTL_EXPIRED, EXPIRY, False)
    ]


def test_the_sweeper_ending_a_member_of_a_generation_deleted_before_its_expiry_is_the_deletion() -> None:
    deleted_at = T + timedelta(minutes=30)
    old = record(MEMBER, ADDED, EXPIRY)
    swept = record(REMOVED, Change(REMOVE, Reason.TTL_EXPIRED, EXPIRY))
    assert rows(old, swept, deleted_at=deleted_at) == [(REMOVE, Reason.SEGMENT_DELETED, deleted_at, False)]
    assert rows(old, swept, deleted_at=EXPIRY + timedelta(minutes=1)) == [
        (REMOVE, Reason.TTL_EXPIRED, EXPIRY, False)
    ]
    assert rows(old, swept) == [(REMOVE, Reason.TTL_EXPIRED, EXPIRY, False)]


def test_an_expiry_update_of_a_membership_in_force_writes_nothing() -> None:
    old = record(MEMBER, ADDED, EXPIRY)
    assert rows(old, old._replace(revision=2, expires_at=None), seen_at=T + timedelta(minutes=5)) == []


def test_a_generation_not_deleted_yet_is_asked_again_and_a_deletion_is_kept() -> None:
    from logic.history import DeletionTimes

    asked: list[tuple[str, int]] = []
    deleted: dict[tuple[str, int], datetime] = {}

    def read(slug: str, generation: int) -> datetime | None:
        asked.append((slug, generation))
        return deleted.get((slug, generation))

    times = DeletionTimes(read, kept=2)
    assert times("S", 1) is None
    deleted[("S", 1)] = T
    assert times("S", 1) == T  # deleted since it was asked: not answered from a kept "not deleted"
    assert times("S", 1) == T and asked == [("S", 1), ("S", 1)]  # a deletion is read once
