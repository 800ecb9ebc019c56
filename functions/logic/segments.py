"""The segment catalog: create, read, change and delete segments, and the ranges percentage rules hold."""

import random
import time
from datetime import datetime
from typing import NamedTuple

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
    store: SegmentStore, new: NewSegment, now: datetime, attempts: int = WRITE_ATTEMPTS
) -> Segment:
    """A new slug starts at generation 1; a deleted slug comes back as a new, empty generation.

    In an exclusion group the segment takes the lowest free gap that fits, in the same transaction
    as the group item's next revision; a concurrent change of the group makes it try again.
    """
    for attempt in range(attempts):
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
    store: SegmentStore, slug: str, patch: SegmentPatch, now: datetime, attempts: int = WRITE_ATTEMPTS
) -> Segment:
    """Ramps: raising keeps everyone who was in (the range grows at its top), lowering trims the top."""
    for attempt in range(attempts):
        current = get_segment(store, slug)
        changed = current
        if patch.description is not None:
            changed = changed._replace(description=patch.description)
        group = None
        if patch.change_percent:
            changed, group = _resized(store, changed, patch.auto_percent)
        if changed == current:
            return current
        changed = changed._replace(updated_at=now, revision=current.revision + 1)
        rule = None
        if (changed.bucket_start, changed.bucket_end) != (current.bucket_start, current.bucket_end):
            rule = _rule(changed, now)
        try:
            store.save_segment(changed, expected_revision=current.revision, rule=rule, group=group)
        except ConcurrentChange:
            _back_off(attempt)
            continue
        return changed
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


def delete_segment(store: SegmentStore, slug: str, now: datetime, attempts: int = WRITE_ATTEMPTS) -> None:
    """O(1) in members: marks the generation deleted; members are removed in the background.

    The same transaction frees the segment's range in its group and ends its rule in the rule log
    (every deletion is logged, so per-user history knows where each generation ends).
    """
    for attempt in range(attempts):
        current = get_segment(store, slug)
        group = None
        if current.exclusion_group is not None:
            group = store.find_group(current.exclusion_group).with_range(slug, None)
        ended = RuleChange(slug, current.generation, current.seed, None, None, now, deleted=True)
        try:
            store.delete_segment(current, deleted_at=now, rule=ended, group=group)
        except ConcurrentChange:
            _back_off(attempt)
            continue
        return
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


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
