"""The segment catalog: create, read, change and delete segments, and the ranges percentage rules hold."""

import random
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple, TypeVar

from logic.buckets import BUCKETS, Range, largest_free_gap, lowest_fitting_gap, resize_range, units_to_percent
from logic.ports import SegmentStore
from models.domain import GroupAllocation, RuleChange, Segment
from models.errors import (
    ConcurrentChange,
    InvalidRequest,
    NoFreeBuckets,
    SegmentExists,
    SegmentNotFound,
    ServiceBusy,
)

WRITE_ATTEMPTS = 6  # writers of one group or segment retry this often before answering 503
# A rule change or deletion first fences its segment, then takes its time: a user change that read
# the segment before the fence took effect before the rule (docs/data-model.md). The pause covers
# the clocks of two machines disagreeing by that much.
FENCE_SETTLE_SECONDS = 0.005
# A fence older than this was left by a writer that died (its function's timeout is far shorter).
FENCE_TIMEOUT = timedelta(seconds=30)
RELEASE_ATTEMPTS = 3
Clock = Callable[[], datetime]
T = TypeVar("T")


class NewSegment(NamedTuple):
    slug: str
    description: str = ""
    auto_percent: int | None = None  # bucket units
    exclusion_group: str | None = None


class SegmentPatch(NamedTuple):
    description: str | None = None
    change_percent: bool = False
    auto_percent: int | None = None


def create_segment(
    store: SegmentStore, new: NewSegment, clock: Clock, attempts: int = WRITE_ATTEMPTS
) -> Segment:
    """A new slug starts at generation 1; a deleted slug comes back as a new, empty generation.

    In an exclusion group the segment takes the lowest free gap that fits, in the same transaction
    as the group item's next revision; a concurrent change of the group makes it try again.
    """
    for attempt in range(attempts):
        now = clock()
        found = store.find_segment(new.slug)
        if found is not None and found[1]:
            raise SegmentExists(new.slug)
        previous = found[0].generation if found is not None else None
        segment = Segment(
            slug=new.slug,
            generation=(previous or 0) + 1,
            description=new.description,
            created_at=now,
            updated_at=now,
            auto_percent=new.auto_percent,
            exclusion_group=new.exclusion_group,
            rule_since=now,
        )
        group = None
        if new.exclusion_group is not None and new.auto_percent is not None:
            allocation = store.find_group(new.exclusion_group)
            placed = lowest_fitting_gap(allocation.taken(), new.auto_percent)
            if placed is None:
                free = largest_free_gap(allocation.taken())
                raise NoFreeBuckets(new.exclusion_group, units_to_percent(free))
            segment = _with_range(segment, new.auto_percent, placed)
            group = allocation.with_range(new.slug, placed)
        else:
            segment = _with_range(segment, new.auto_percent)
        rule = _rule(segment, now) if segment.is_percentage else None
        try:
            store.create_segment(segment, replaces_generation=previous, rule=rule, group=group)
        except ConcurrentChange:
            _back_off(attempt)
            continue
        return segment
    raise ServiceBusy(f"exclusion group {new.exclusion_group} is being changed concurrently; try again")


def get_segment(store: SegmentStore, slug: str) -> Segment:
    found = store.find_segment(slug)
    if found is None or not found[1]:
        raise SegmentNotFound(slug)
    return found[0]


def list_segments(store: SegmentStore, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]:
    return store.list_segments(limit, after_slug)


def patch_segment(
    store: SegmentStore, slug: str, patch: SegmentPatch, clock: Clock, attempts: int = WRITE_ATTEMPTS
) -> Segment:
    """Ramps: raising keeps everyone who was in (the range grows at its top), lowering trims the top.

    A description is one conditional write. A new range is a fenced change (`_fenced`): user changes
    decided under the old range take effect before it, those after it see it.
    """
    for attempt in range(attempts):
        current = get_segment(store, slug)
        if current.fenced_at(clock(), FENCE_TIMEOUT):
            _back_off(attempt)
            continue
        changed = current
        if patch.description is not None:
            changed = changed._replace(description=patch.description)
        group = None
        if patch.change_percent:
            changed, group = _resized(store, changed, patch.auto_percent)
        if changed == current:
            return current
        try:
            if (changed.bucket_start, changed.bucket_end) == (current.bucket_start, current.bucket_end):
                changed = changed._replace(
                    updated_at=clock(), revision=current.revision + 1, fenced_since=None
                )
                store.save_segment(changed, expected_revision=current.revision)
                return changed
            return _fenced(store, current, clock, partial(_commit_rule, store, changed, group))
        except ConcurrentChange:
            _back_off(attempt)
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


def delete_segment(store: SegmentStore, slug: str, clock: Clock, attempts: int = WRITE_ATTEMPTS) -> None:
    """O(1) in members: marks the generation deleted; members are removed in the background.

    A fenced change (`_fenced`): the same transaction frees the segment's range in its group and ends
    its rule in the rule log (every deletion is logged, so per-user history knows where each
    generation ends).
    """
    for attempt in range(attempts):
        current = get_segment(store, slug)
        if current.fenced_at(clock(), FENCE_TIMEOUT):
            _back_off(attempt)
            continue
        group = None
        if current.exclusion_group is not None:
            group = store.find_group(current.exclusion_group).with_range(slug, None)

        try:
            _fenced(store, current, clock, partial(_commit_deletion, store, group))
            return
        except ConcurrentChange:
            _back_off(attempt)
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


def _fenced(
    store: SegmentStore, current: Segment, clock: Clock, commit: Callable[[Segment, str, datetime], T]
) -> T:
    """Fence the segment, then take the change's time and commit it under the fence.

    A user change that read the segment before the fence committed started before it, so before the
    change's time; one that reads it after waits for the commit and then sees the change. The fence
    is released if the commit fails (its group changed meanwhile, or DynamoDB stayed busy).
    """
    token = str(uuid.uuid4())
    fenced = store.fence_segment(current, token, clock())
    time.sleep(FENCE_SETTLE_SECONDS)
    try:
        return commit(fenced, token, clock())
    except Exception:
        _release(store, fenced, token)
        raise


def _release(store: SegmentStore, fenced: Segment, token: str) -> None:
    """Best effort, a few times: a fence left behind only makes updates of the segment wait until it
    is FENCE_TIMEOUT old."""
    for attempt in range(RELEASE_ATTEMPTS):
        try:
            store.release_fence(fenced, token)
            return
        except ServiceBusy:
            if attempt + 1 == RELEASE_ATTEMPTS:
                return


def _commit_rule(
    store: SegmentStore,
    changed: Segment,
    group: GroupAllocation | None,
    fenced: Segment,
    token: str,
    now: datetime,
) -> Segment:
    committed = changed._replace(
        updated_at=now, revision=fenced.revision + 1, rule_since=now, fenced_since=None
    )
    rule = _rule(committed, now)
    store.save_segment(committed, expected_revision=fenced.revision, rule=rule, group=group, fence=token)
    return committed


def _commit_deletion(
    store: SegmentStore, group: GroupAllocation | None, fenced: Segment, token: str, now: datetime
) -> None:
    ended = RuleChange(fenced.slug, fenced.generation, fenced.seed, None, None, now, deleted=True)
    store.delete_segment(fenced, deleted_at=now, rule=ended, group=group, fence=token)


def _resized(
    store: SegmentStore, segment: Segment, auto_percent: int | None
) -> tuple[Segment, GroupAllocation | None]:
    """The segment with its new percentage, and the group's next allocation if its range moved."""
    if segment.exclusion_group is None:
        return _with_range(segment, auto_percent), None
    if auto_percent is None:
        raise InvalidRequest(
            "a segment in an exclusion group needs auto_percent; it cannot be set to null",
            errors=[{"field": "auto_percent", "message": "cannot be null in an exclusion group"}],
        )
    assert segment.bucket_start is not None and segment.bucket_end is not None
    current: Range = (segment.bucket_start, segment.bucket_end)
    allocation = store.find_group(segment.exclusion_group)
    others = allocation.taken(except_slug=segment.slug)
    resized = resize_range(current, auto_percent, others)
    if resized is None:
        room = units_to_percent(_room(current, others))
        raise NoFreeBuckets(segment.exclusion_group, room, resizing=segment.slug)
    changed = _with_range(segment, auto_percent, resized)
    return changed, (allocation.with_range(segment.slug, resized) if resized != current else None)


def _room(current: Range, others: list[Range]) -> int:
    """The largest percentage (units) the segment could be set to: it grows only into the gap above
    it, and an empty range moves to the largest gap like a new segment."""
    start, end = current
    if start == end:
        return largest_free_gap(others)
    above = [o_start for o_start, o_end in others if o_start < o_end and o_start >= end]
    return min(above, default=BUCKETS) - start


def _with_range(segment: Segment, auto_percent: int | None, bucket_range: Range | None = None) -> Segment:
    """Without a group a percentage segment holds buckets [0, p) of its own seed."""
    if auto_percent is None:
        return segment._replace(auto_percent=None, bucket_start=None, bucket_end=None)
    start, end = bucket_range or (0, auto_percent)
    return segment._replace(auto_percent=auto_percent, bucket_start=start, bucket_end=end)


def _rule(segment: Segment, now: datetime) -> RuleChange:
    return RuleChange(
        segment.slug, segment.generation, segment.seed, segment.bucket_start, segment.bucket_end, now
    )


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.01 * 2**attempt))
