"""The JSON the routes answer with, from domain objects."""

from datetime import datetime
from typing import Any

from logic.buckets import units_to_percent
from models.domain import MemberCounts, Membership, Segment


def segment_json(segment: Segment, to_public: Any, counts: MemberCounts, as_of: datetime) -> dict[str, Any]:
    bucket_range = None
    if segment.bucket_start is not None and segment.bucket_end is not None:
        bucket_range = [segment.bucket_start / 10_000, segment.bucket_end / 10_000]
    return {
        "slug": segment.slug,
        "description": segment.description,
        "auto_percent": None if segment.auto_percent is None else units_to_percent(segment.auto_percent),
        "exclusion_group": segment.exclusion_group,
        "bucket_range": bucket_range,
        "members": {"explicit": counts.explicit, "opted_out": counts.opted_out, "as_of": to_public(as_of)},
        "created_at": to_public(segment.created_at),
        "updated_at": to_public(segment.updated_at),
    }


def membership_json(membership: Membership, to_public: Any) -> dict[str, Any]:
    return {
        "slug": membership.slug,
        "source": membership.source.value,
        "added_at": None if membership.added_at is None else to_public(membership.added_at),
        "expires_at": None if membership.expires_at is None else to_public(membership.expires_at),
    }
