"""A user's `auto` history rows, derived from the rule log, stored rows and quiet changes."""

from datetime import UTC, datetime, timedelta

from logic.auto_history import AFTER, auto_history_rows
from logic.buckets import bucket_of
from models.domain import HistoryRow, MembershipState, Operation, QuietChange, Reason, RuleChange

SLUG = "VOICE"
T0 = datetime(2023, 8, 1, tzinfo=UTC)
START, END = T0, T0 + timedelta(days=31)


def user_with_bucket(low: int, high: int, seed: str = SLUG) -> int:
    """The first user id whose bucket for `seed` is in [low, high)."""
    return next(user for user in range(1, 1_000_000) if low <= bucket_of(seed, user) < high)


USER = user_with_bucket(1500, 2500)  # in at 25 %, out at 10 %


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def rule(hours: float, percent: int | None, generation: int = 1, deleted: bool = False) -> RuleChange:
    end = None if percent is None else percent * 100
    return RuleChange(SLUG, generation, SLUG, None if end is None else 0, end, at(hours), deleted)


def row(hours: float, operation: Operation, reason: Reason = Reason.MANUAL) -> HistoryRow:
    return HistoryRow(at(hours), USER, SLUG, operation, reason)


def quiet(hours: float, state: MembershipState, generation: int = 1) -> QuietChange:
    return QuietChange(SLUG, generation, state, at(hours))


def derived(
    rules: list[RuleChange],
    rows: list[HistoryRow] | None = None,
    quiet_changes: list[QuietChange] | None = None,
    start: datetime = START,
    end: datetime = END,
) -> list[tuple[float, Operation, Reason]]:
    found = auto_history_rows(USER, rules, rows or [], start, end, quiet_changes=quiet_changes or [])
    return [((r.at - T0) / timedelta(hours=1), r.operation, r.reason) for r in found]


ADD, REMOVE = Operation.ADD, Operation.REMOVE
AUTO, MANUAL = Reason.AUTO, Reason.MANUAL


def test_creation_that_covers_the_bucket_is_an_auto_add() -> None:
    assert derived([rule(1, 25)]) == [(1, ADD, AUTO)]


def test_creation_that_does_not_cover_the_bucket_writes_nothing() -> None:
    assert derived([rule(1, 10)]) == []


def test_a_raise_over_the_bucket_adds_and_a_lowering_below_it_removes() -> None:
    assert derived([rule(1, 10), rule(2, 25), rule(3, 30), rule(4, 10)]) == [
        (2, ADD, AUTO),
        (4, REMOVE, AUTO),
    ]


def test_ending_the_rule_removes_a_bucketed_user() -> None:
    assert derived([rule(1, 25), rule(2, None)]) == [(1, ADD, AUTO), (2, REMOVE, AUTO)]


def test_deleting_the_segment_removes_a_bucketed_user_as_segment_deleted() -> None:
    rules = [rule(1, 25), rule(2, None, deleted=True)]
    assert derived(rules) == [(1, ADD, AUTO), (2, REMOVE, Reason.SEGMENT_DELETED)]


def test_deleting_the_segment_adds_nothing_for_an_explicit_member_the_clean_up_reports() -> None:
    rules = [rule(1, 10), rule(3, None, deleted=True)]
    rows = [row(2, ADD), row(3, REMOVE, Reason.SEGMENT_DELETED)]
    assert derived(rules, rows) == []


def test_an_opt_out_keeps_later_ramps_from_adding_the_user() -> None:
    rules = [rule(1, 25), rule(3, 10), rule(4, 50)]
    assert derived(rules, [row(2, REMOVE)]) == [(1, ADD, AUTO)]


def test_an_explicit_member_stays_in_through_a_lowering() -> None:
    assert derived([rule(1, 10), rule(3, 25), rule(4, 0)], [row(2, ADD)]) == []


def test_a_quiet_add_over_the_bucket_keeps_the_user_in_through_a_lowering() -> None:
    # The add wrote no row (the bucket already held the user); only its quiet change tells.
    rules = [rule(1, 25), rule(3, 10)]
    assert derived(rules, [], [quiet(2, MembershipState.MEMBER)]) == [(1, ADD, AUTO)]


def test_a_quiet_opt_out_keeps_a_later_raise_from_adding_the_user() -> None:
    rules = [rule(1, 10), rule(3, 25)]
    assert derived(rules, [], [quiet(2, MembershipState.OPTED_OUT)]) == []


def test_an_add_after_an_opt_out_is_explicit_and_survives_lowering() -> None:
    rules = [rule(1, 25), rule(4, 0)]
    assert derived(rules, [row(2, REMOVE), row(3, ADD)]) == [(1, ADD, AUTO)]


def test_an_expiry_while_the_bucket_holds_the_user_is_followed_by_an_auto_add() -> None:
    rules = [rule(1, 10), rule(3, 25)]
    rows = [row(2, ADD), row(4, REMOVE, Reason.TTL_EXPIRED)]
    found = auto_history_rows(USER, rules, rows, START, END, quiet_changes=[])
    assert [(r.at, r.operation, r.reason) for r in found] == [(at(4) + AFTER, ADD, AUTO)]


def test_a_re_created_generation_does_not_inherit_the_old_opt_out() -> None:
    rules = [rule(1, 25), rule(3, None, deleted=True), rule(4, 25, generation=2)]
    assert derived(rules, [row(2, REMOVE)]) == [(1, ADD, AUTO), (4, ADD, AUTO)]


def test_only_rows_inside_the_period_are_returned_but_earlier_state_counts() -> None:
    # Opted out before the period: a raise inside it adds nothing; a lowering of a member removes.
    rules = [rule(1, 10), rule(30 * 24, 25)]
    assert derived(rules, [row(2, REMOVE)], start=at(24)) == []
    assert derived([rule(1, 25), rule(30 * 24, 10)], start=at(24)) == [(30 * 24, REMOVE, AUTO)]


def test_exclusion_group_ranges_use_the_group_seed() -> None:
    group_user = user_with_bucket(3000, 4000, seed="discounts")
    changes = [RuleChange(SLUG, 1, "discounts", 3000, 6000, at(1))]
    found = auto_history_rows(group_user, changes, [], START, END, quiet_changes=[])
    assert [(r.user_id, r.operation, r.reason) for r in found] == [(group_user, ADD, AUTO)]


def test_other_users_rows_and_stored_auto_rows_are_ignored() -> None:
    stranger = HistoryRow(at(2), USER + 1, SLUG, REMOVE, MANUAL)
    assert derived([rule(1, 25), rule(3, 10)], [stranger]) == [(1, ADD, AUTO), (3, REMOVE, AUTO)]
