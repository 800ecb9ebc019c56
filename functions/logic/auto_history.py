"""A user's report lines: their explicit changes a client saw, and their `auto` rows, derived from the
segments' rule log instead of stored per user.

Percentage segments hold every user whose bucket is in their range, seen or not, so entering and
leaving them writes nothing per user. A per-user report replays, segment by segment and in time
order, what decides the user's membership:

- the rule log (RuleChange): the range each generation held from each moment on;
- the user's stored rows: explicit memberships and opt-outs, which win over the bucket, and their
  ends (ttl_expired, segment_deleted). Silent rows (models.domain.Change) are explicit changes
  that changed nothing a client saw: an add the bucket already gave, a remove it already denied.

The user is in when explicitly a member, or when neither a member nor opted out and the rule holds
their bucket. Every change of that caused by a rule is an `add`/`remove` row with reason `auto`;
a deletion removes every member with reason `segment_deleted` at its instant, whether or not the
clean-up has written the stored member's row yet.
An explicit membership that expires while the rule holds the user's bucket changes nothing: its
`ttl_expired` row is not a report line, here or in the all-users report (`bucket_still_holds`).
See docs/percentage-segments.md.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from logic.buckets import bucket_of
from models.domain import HistoryRow, MembershipState, Operation, Reason, RuleChange

Event = RuleChange | HistoryRow
EXPLICIT = (Reason.MANUAL, Reason.IMPORT)  # a remove for one of these stores an opt-out
_KIND_ORDER = {RuleChange: 0, HistoryRow: 1}  # at one instant: the rule first, then the row


class _Replay:
    """One user's membership of one slug, as the replay goes."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.rule: RuleChange | None = None
        self.explicit: MembershipState | None = None  # MEMBER or OPTED_OUT; None: the bucket decides
        self.left_at: datetime | None = None  # a deletion's instant, once its row is given

    def is_in(self) -> bool:
        if self.explicit is not None:
            return self.explicit is MembershipState.MEMBER
        return _holds(self.rule, self.user_id)


def user_report_rows(
    user_id: int,
    rule_changes: Sequence[RuleChange],
    explicit_rows: Sequence[HistoryRow],
    period_start: datetime,
    period_end: datetime,
) -> list[HistoryRow]:
    """The user's report lines with period_start <= at < period_end, sorted in report order.

    `explicit_rows` must hold every stored row of the user (silent ones included) from the beginning
    up to period_end, plus expiries DynamoDB has not deleted yet: the state at the period's start
    depends on them. Rows of other users and stored `auto` rows are ignored.
    """
    by_slug: dict[str, list[Event]] = {}
    events: list[Event] = [*rule_changes, *explicit_rows]
    for event in events:
        if isinstance(event, HistoryRow) and (event.user_id != user_id or event.reason is Reason.AUTO):
            continue
        by_slug.setdefault(event.slug, []).append(event)
    rows: list[HistoryRow] = []
    for events in by_slug.values():
        if any(isinstance(event, RuleChange) for event in events):
            rows.extend(_replay(user_id, events))
        else:
            rows.extend(event for event in events if isinstance(event, HistoryRow) and not event.silent)
    return sorted(row for row in rows if period_start <= row.at < period_end)


def bucket_still_holds(row: HistoryRow, rules: Iterable[RuleChange]) -> bool:
    """Whether the rule in force when `row` took effect holds its user's bucket: an expiry then is no
    change (the user stays in). `rules` are one slug's rule changes, in time order."""
    in_force = None
    for rule in rules:
        if rule.at > row.at:
            break
        in_force = rule
    return _holds(in_force, row.user_id)


def is_report_line(row: HistoryRow, rules_of: Callable[[str], Sequence[RuleChange]]) -> bool:
    """A stored or expired row as the all-users report sees it, the same way the replay does."""
    if row.silent:
        return False
    return row.reason is not Reason.TTL_EXPIRED or not bucket_still_holds(row, rules_of(row.slug))


def _holds(rule: RuleChange | None, user_id: int) -> bool:
    return rule is not None and not rule.deleted and rule.holds_bucket(bucket_of(rule.seed, user_id))


def _replay(user_id: int, events: list[Event]) -> list[HistoryRow]:
    state = _Replay(user_id)
    rows: list[HistoryRow] = []
    for event in sorted(events, key=lambda event: (event.at, _KIND_ORDER[type(event)])):
        was_in = state.is_in()
        if isinstance(event, RuleChange):
            rows.extend(_apply_rule(state, event, was_in))
            continue
        if event.reason is Reason.SEGMENT_DELETED and event.at == state.left_at:
            continue  # the clean-up's row of the deletion, given already
        _apply_row(state, event)
        if event.silent or (event.reason is Reason.TTL_EXPIRED and state.is_in()):
            continue  # nothing a client sees changed: the user stays where they were
        rows.append(event)
    return rows


def _apply_rule(state: _Replay, rule: RuleChange, was_in: bool) -> list[HistoryRow]:
    if rule.deleted:
        # Every member leaves at the deletion. A bucket-only member's row is only ever this one; a stored
        # member's is also the clean-up's, the same row (reports keep one), which may come minutes later:
        # the clean-up's first walk cannot see a member the index does not show yet.
        state.rule, state.explicit = None, None
        if not was_in:
            return []
        state.left_at = rule.at
        return [HistoryRow(rule.at, state.user_id, rule.slug, Operation.REMOVE, Reason.SEGMENT_DELETED)]
    state.rule = rule
    if state.is_in() == was_in:
        return []
    operation = Operation.ADD if not was_in else Operation.REMOVE
    return [HistoryRow(rule.at, state.user_id, rule.slug, operation, Reason.AUTO)]


def _apply_row(state: _Replay, row: HistoryRow) -> None:
    if row.operation is Operation.ADD:
        state.explicit = MembershipState.MEMBER
    elif row.reason in EXPLICIT and state.rule is not None and state.rule.bucket_start is not None:
        state.explicit = MembershipState.OPTED_OUT  # a remove of a percentage segment is an opt-out
    else:
        state.explicit = None  # expired, deleted, or removed from a segment without a rule
