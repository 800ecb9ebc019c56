"""The segment catalog: create, read, change and delete segments."""

from dataclasses import dataclass, replace
from datetime import datetime

from logic.ports import SegmentStore
from models.domain import Segment
from models.errors import ConcurrentChange, SegmentExists, SegmentNotFound, ServiceBusy

_UNSET = object()


@dataclass(frozen=True)
class NewSegment:
    slug: str
    description: str = ""
    auto_percent: int | None = None  # bucket units
    exclusion_group: str | None = None


@dataclass(frozen=True)
class SegmentPatch:
    description: str | None = None
    change_percent: bool = False
    auto_percent: int | None = None


def create_segment(store: SegmentStore, new: NewSegment, now: datetime) -> Segment:
    """A new slug starts at generation 1; a deleted slug comes back as a new, empty generation."""
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
    segment = _with_range(segment, new.auto_percent)
    store.create_segment(segment, replaces_generation=previous)
    return segment


def get_segment(store: SegmentStore, slug: str) -> Segment:
    found = store.find_segment(slug)
    if found is None or not found[1]:
        raise SegmentNotFound(slug)
    return found[0]


def list_segments(store: SegmentStore, limit: int, after_slug: str | None) -> tuple[list[Segment], bool]:
    return store.list_segments(limit, after_slug)


def patch_segment(
    store: SegmentStore, slug: str, patch: SegmentPatch, now: datetime, attempts: int = 3
) -> Segment:
    for _ in range(attempts):
        current = get_segment(store, slug)
        changed = current
        if patch.description is not None:
            changed = replace(changed, description=patch.description)
        if patch.change_percent:
            changed = _with_range(replace(changed, auto_percent=patch.auto_percent), patch.auto_percent)
        if changed == current:
            return current
        changed = replace(changed, updated_at=now, revision=current.revision + 1)
        try:
            store.save_segment(changed, expected_revision=current.revision)
        except ConcurrentChange:
            continue
        return changed
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


def delete_segment(store: SegmentStore, slug: str, now: datetime, attempts: int = 3) -> None:
    """O(1) in members: marks the generation deleted; members are removed in the background."""
    for _ in range(attempts):
        current = get_segment(store, slug)
        try:
            store.delete_segment(current, deleted_at=now)
        except ConcurrentChange:
            continue
        return
    raise ServiceBusy(f"segment {slug} is being changed concurrently; try again")


def _with_range(segment: Segment, auto_percent: int | None) -> Segment:
    """A percentage segment holds buckets [0, p) of its own seed."""
    if auto_percent is None:
        return replace(segment, auto_percent=None, bucket_start=None, bucket_end=None)
    return replace(segment, auto_percent=auto_percent, bucket_start=0, bucket_end=auto_percent)
