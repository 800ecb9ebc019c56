"""A user's report lines: stored explicit rows (silent ones hidden) and `auto` rows, replayed with the
rule log; and the all-users report's view of the same rows."""

from datetime import UTC, datetime, timedelta

from logic.auto_history import bucket_still_holds, is_report_line, user_report_rows
from logic.buckets import bucket_of
from models.domain import HistoryRow, Operation, Reason, RuleChange

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


def row(
    hours: float, operation: Operation, reason: Reason = Reason.MANUAL, silent: bool = False
) -> HistoryRow:
    return HistoryRow(at(hours), USER, SLUG, operation, reason, silent)


def lines(
    rules: list[RuleChange],
    rows: list[HistoryRow] | None = None,
    start: datetime = START,
    end: datetime = END,
) -> list[tuple[float, Operation, Reason]]:
    found = user_report_rows(USER, rules, rows or [], start, end)
    return [((r.at - T0) / timedelta(hours=1), r.operation, r.reason) for r in found]


ADD, REMOVE = Operation.ADD, Operation.REMOVE
AUTO, MANUAL = Reason.AUTO, Reason.MANUAL


def test_creation_that_covers_the_bucket_is_an_auto_add() -> None:
    assert lines([rule(1, 25)]) == [(1, ADD, AUTO)]


def test_creation_that_does_not_cover_the_bucket_writes_nothing() -> None:
    assert lines([rule(1, 10)]) == []


def test_a_raise_over_the_bucket_adds_and_a_lowering_below_it_removes() -> None:
    assert lines([rule(1, 10), rule(2, 25), rule(3, 30), rule(4, 10)]) == [
        (2, ADD, AUTO),
        (4, REMOVE, AUTO),
    ]


def test_ending_the_rule_removes_a_bucketed_user() -> None:
    assert lines([rule(1, 25), rule(2, None)]) == [(1, ADD, AUTO), (2, REMOVE, AUTO)]


def test_deleting_the_segment_removes_a_bucketed_user_as_segment_deleted() -> None:
    rules = [rule(1, 25), rule(2, None, deleted=True)]
    assert lines(rules) == [(1, ADD, AUTO), (2, REMOVE, Reason.SEGMENT_DELETED)]


def test_deleting_the_segment_adds_nothing_for_an_explicit_member_the_clean_up_reports() -> None:
    rules = [rule(1, 10), rule(3, None, deleted=True)]
    rows = [row(2, ADD), row(3, REMOVE, Reason.SEGMENT_DELETED)]
    assert lines(rules, rows) == [(2, ADD, MANUAL), (3, REMOVE, Reason.SEGMENT_DELETED)]


def test_deleting_the_segment_removes_an_explicit_member_the_clean_up_has_not_reached_yet() -> None:
    """The clean-up's first walk may not see a member written a moment before the deletion (the index
    lags); the user left at the deletion all the same."""
    rules = [rule(1, None), rule(3, None, deleted=True)]
    assert lines(rules, [row(2, ADD)]) == [(2, ADD, MANUAL), (3, REMOVE, Reason.SEGMENT_DELETED)]


def test_an_opt_out_keeps_later_ramps_from_adding_the_user() -> None:
    rules = [rule(1, 25), rule(3, 10), rule(4, 50)]
    assert lines(rules, [row(2, REMOVE)]) == [(1, ADD, AUTO), (2, REMOVE, MANUAL)]


def test_an_explicit_member_stays_in_through_a_lowering() -> None:
    assert lines([rule(1, 10), rule(3, 25), rule(4, 0)], [row(2, ADD)]) == [(2, ADD, MANUAL)]


def test_a_silent_add_over_the_bucket_is_no_line_but_keeps_the_user_in_through_a_lowering() -> None:
    rules = [rule(1, 25), rule(3, 10)]
    assert lines(rules, [row(2, ADD, silent=True)]) == [(1, ADD, AUTO)]


def test_a_silent_opt_out_is_no_line_but_keeps_a_later_raise_from_adding_the_user() -> None:
    rules = [rule(1, 10), rule(3, 25)]
    assert lines(rules, [row(2, REMOVE, silent=True)]) == []


def test_an_add_after_an_opt_out_is_explicit_and_survives_lowering() -> None:
    rules = [rule(1, 25), rule(4, 0)]
    assert lines(rules, [row(2, REMOVE), row(3, ADD)]) == [
        (1, ADD, AUTO),
        (2, REMOVE, MANUAL),
        (3, ADD, MANUAL),
    ]


def test_an_expiry_while_the_bucket_holds_the_user_is_no_change_at_all() -> None:
    # Explicitly in from 2, the bucket covers them from 3, the explicit part expires at 4: they stay in.
    rules = [rule(1, 10), rule(3, 25)]
    assert lines(rules, [row(2, ADD), row(4, REMOVE, Reason.TTL_EXPIRED)]) == [(2, ADD, MANUAL)]


def test_an_expired_silent_add_under_the_bucket_then_a_lowering_removes_the_user_by_the_rule() -> None:
    # The shape the stateful model found: bucketed at 1, a silent explicit add at 2 that expires at 3
    # while the bucket holds; the lowering at 5 is what takes the user out.
    rules = [rule(1, 25), rule(5, 10)]
    rows = [row(2, ADD, silent=True), row(3, REMOVE, Reason.TTL_EXPIRED)]
    assert lines(rules, rows) == [(1, ADD, AUTO), (5, REMOVE, AUTO)]


def test_an_expiry_after_the_bucket_stopped_covering_the_user_is_one_ttl_expired_line() -> None:
    rules = [rule(1, 25), rule(3, 10)]
    rows = [row(2, ADD, silent=True), row(4, REMOVE, Reason.TTL_EXPIRED)]
    assert lines(rules, rows) == [(1, ADD, AUTO), (4, REMOVE, Reason.TTL_EXPIRED)]


def test_a_re_created_generation_does_not_inherit_the_old_opt_out() -> None:
    rules = [rule(1, 25), rule(3, None, deleted=True), rule(4, 25, generation=2)]
    assert lines(rules, [row(2, REMOVE)]) == [(1, ADD, AUTO), (2, REMOVE, MANUAL), (4, ADD, AUTO)]


def test_only_rows_inside_the_period_are_returned_but_earlier_state_counts() -> None:
    # Opted out before the period: a raise inside it adds nothing; a lowering of a member removes.
    rules = [rule(1, 10), rule(30 * 24, 25)]
    assert lines(rules, [row(2, REMOVE)], start=at(24)) == []
    assert lines([rule(1, 25), rule(30 * 24, 10)], start=at(24)) == [(30 * 24, REMOVE, AUTO)]


def test_exclusion_group_ranges_use_the_group_seed() -> None:
    group_user = user_with_bucket(3000, 4000, seed="discounts")
    changes = [RuleChange(SLUG, 1, "discounts", 3000, 6000, at(1))]
    found = user_report_rows(group_user, changes, [], START, END)
    assert [(r.user_id, r.operation, r.reason) for r in found] == [(group_user, ADD, AUTO)]


def test_other_users_rows_and_stored_auto_rows_are_ignored() -> None:
    stranger = HistoryRow(at(2), USER + 1, SLUG, REMOVE, MANUAL)
    stored_auto = row(2.5, ADD, AUTO)
    assert lines([rule(1, 25), rule(3, 10)], [stranger, stored_auto]) == [(1, ADD, AUTO), (3, REMOVE, AUTO)]


def test_rows_of_a_segment_that_never_had_a_rule_are_lines_unless_silent() -> None:
    rows = [row(1, ADD), row(2, REMOVE, Reason.TTL_EXPIRED), row(3, REMOVE, silent=True)]
    assert lines([], rows) == [(1, ADD, MANUAL), (2, REMOVE, Reason.TTL_EXPIRED)]


# --- the all-users report: the same decision, one row at a time ------------------------------


def test_the_rule_in_force_at_the_expiry_decides_whether_the_bucket_still_holds() -> None:
    rules = [rule(1, 25), rule(3, 10), rule(5, 25)]
    expiry = row(4, REMOVE, Reason.TTL_EXPIRED)
    assert not bucket_still_holds(expiry, rules)
    assert bucket_still_holds(row(2, REMOVE, Reason.TTL_EXPIRED), rules)
    assert bucket_still_holds(row(5, REMOVE, Reason.TTL_EXPIRED), rules)  # a rule at that instant counts
    assert not bucket_still_holds(row(0.5, REMOVE, Reason.TTL_EXPIRED), rules)


def test_a_deleted_segment_holds_nobody() -> None:
    assert not bucket_still_holds(
        row(3, REMOVE, Reason.TTL_EXPIRED), [rule(1, 25), rule(2, None, deleted=True)]
    )


def test_the_all_users_report_hides_exactly_what_the_replay_hides() -> None:
    rules = [rule(1, 25), rule(3, 10), rule(5, 25)]
    rows = [
        row(0.5, ADD),
        row(2, REMOVE, Reason.TTL_EXPIRED),
        row(2.5, ADD, silent=True),
        row(4, REMOVE, Reason.TTL_EXPIRED),
        row(4.5, ADD),
        row(6, REMOVE, Reason.TTL_EXPIRED),
    ]
    replayed = [line for line in user_report_rows(USER, rules, rows, START, END) if line.reason is not AUTO]
    assert [r for r in rows if is_report_line(r, lambda slug: rules)] == replayed
