"""A user's `auto` history rows, derived from the segments' rule log instead of stored per user.

Percentage segments hold every user whose bucket is in their range, seen or not, so entering and
leaving them writes nothing per user. A per-user report replays, segment by segment and in time
order, what decides the user's membership:

- the rule log (RuleChange): the range each generation held from each moment on;
- the user's stored rows (add/remove manual, ttl_expired, segment_deleted): explicit memberships
  and opt-outs, which win over the bucket;
- the user's quiet changes (QuietChange): explicit changes that wrote no row because the user's
  visible membership did not change (an add the bucket already gave, a remove it already denied).

The user is in when explicitly a member, or when neither a member nor opted out and the rule holds
their bucket. Every change of that caused by a rule is an `add`/`remove` row with reason `auto`;
a deletion removes a bucket-only member with reason `segment_deleted`, as it does stored members.
See docs/percentage-segments.md.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from logic.buckets import bucket_of
from models.domain import (
    HistoryRow,
    MembershipRecord,
    MembershipState,
    Operation,
    QuietChange,
    Reason,
    RuleChange,
)

# A bucket taking over from an expired explicit membership takes effect just after the expiry, so
# the `add auto` sorts after the `remove ttl_expired` it follows (report order is time, user, slug).
AFTER = timedelta(microseconds=1)

Event = RuleChange | HistoryRow | QuietChange
_KIND_ORDER = {RuleChange: 0, HistoryRow: 1, QuietChange: 2}  # at one instant: rule, row, quiet


class _Replay:
    """One user's membership of one slug, as the replay goes."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.rule: RuleChange | None = None
        self.explicit: MembershipState | None = None  # MEMBER or OPTED_OUT; None: the bucket decides
        self.buckets: dict[str, int] = {}

    def is_in(self) -> bool:
        if self.explicit is not None:
            return self.explicit is MembershipState.MEMBER
        if self.rule is None:
            return False
        if self.rule.seed not in self.buckets:
            self.buckets[self.rule.seed] = bucket_of(self.rule.seed, self.user_id)
        return self.rule.holds_bucket(self.buckets[self.rule.seed])


def auto_history_rows(
    user_id: int,
    rule_changes: Sequence[RuleChange],
    manual_rows: Sequence[HistoryRow],
    period_start: datetime,
    period_end: datetime,
    *,
    quiet_changes: Sequence[QuietChange],
) -> list[HistoryRow]:
    """The user's derived rows with period_start <= at < period_end, sorted in report order.

    `manual_rows` must hold every non-derived row of the user from the beginning up to period_end
    (stored rows plus expiries DynamoDB has not deleted yet), not only the period's: the state at
    the period's start depends on them. `quiet_changes` come from the user's membership records
    (`quiet_changes_of`). Rows with reason `auto` in `manual_rows` are ignored.
    """
    by_slug: dict[str, list[Event]] = {}
    events: list[Event] = [*rule_changes, *manual_rows, *quiet_changes]
    for event in events:
        if isinstance(event, HistoryRow) and (event.user_id != user_id or event.reason is Reason.AUTO):
            continue
        by_slug.setdefault(event.slug, []).append(event)
    rows: list[HistoryRow] = []
    for slug, events in by_slug.items():
        if any(isinstance(event, RuleChange) for event in events):
            rows.extend(_replay(user_id, slug, events))
    return sorted(row for row in rows if period_start <= row.at < period_end)


def quiet_changes_of(records: Iterable[MembershipRecord]) -> list[QuietChange]:
    return [quiet for record in records for quiet in record.quiet]


def _replay(user_id: int, slug: str, events: list[Event]) -> list[HistoryRow]:
    state = _Replay(user_id)
    rows: list[HistoryRow] = []
    for event in sorted(events, key=lambda event: (event.at, _KIND_ORDER[type(event)])):
        was_in = state.is_in()
        if isinstance(event, RuleChange):
            rows.extend(_apply_rule(state, event, was_in))
        elif isinstance(event, HistoryRow):
            _apply_row(state, event)
            if state.is_in() and event.operation is Operation.REMOVE:
                # Only an expiry can end an explicit membership the bucket still holds: it stays in.
                rows.append(HistoryRow(event.at + AFTER, user_id, slug, Operation.ADD, Reason.AUTO))
        elif state.rule is not None and event.generation == state.rule.generation:
            state.explicit = event.state  # quiet: changes nothing visible, only who decides
    return rows


def _apply_rule(state: _Replay, rule: RuleChange, was_in: bool) -> list[HistoryRow]:
    if rule.deleted:
        # Stored members get their segment_deleted row from the clean-up; bucket-only ones get it here.
        bucket_only = was_in and state.explicit is None
        state.rule, state.explicit = None, None
        if bucket_only:
            return [HistoryRow(rule.at, state.user_id, rule.slug, Operation.REMOVE, Reason.SEGMENT_DELETED)]
        return []
    state.rule = rule
    if state.is_in() == was_in:
        return []
    operation = Operation.ADD if not was_in else Operation.REMOVE
    return [HistoryRow(rule.at, state.user_id, rule.slug, operation, Reason.AUTO)]


def _apply_row(state: _Replay, row: HistoryRow) -> None:
    if row.operation is Operation.ADD:
        state.explicit = MembershipState.MEMBER
    elif row.reason is Reason.MANUAL and state.rule is not None and state.rule.bucket_start is not None:
        state.explicit = MembershipState.OPTED_OUT  # a remove of a percentage segment is an opt-out
    else:
        state.explicit = None  # expired, deleted, or removed from a segment without a rule
