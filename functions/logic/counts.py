"""Member counts of a segment, kept by the stream's reader from membership changes (docs/data-model.md).

A segment generation's count is `explicit` (stored memberships, silent ones included) and `opted_out`
(stored opt-outs); users in only by their bucket are not counted. Every membership write changes the
counts of the generations its old and new item belong to, by what it ended and what it started.
"""

from collections import Counter

from models.domain import CountDeltas, MembershipRecord, MembershipState


def count_deltas(old: MembershipRecord | None, new: MembershipRecord | None) -> CountDeltas:
    """What one write of a membership item changes in the counts (zero entries dropped)."""
    deltas: CountDeltas = Counter()
    for record, sign in ((old, -1), (new, 1)):
        kind = _kind(record)
        if record is not None and kind is not None:
            deltas[(record.slug, record.generation, kind)] += sign
    return Counter({key: value for key, value in deltas.items() if value})


def _kind(record: MembershipRecord | None) -> str | None:
    if record is None:
        return None
    if record.state is MembershipState.MEMBER:
        return "explicit"
    if record.state is MembershipState.OPTED_OUT:
        return "opted_out"
    return None
