"""The JSON the routes answer with, from domain objects."""

from datetime import datetime
from typing import Any

from logic.buckets import units_to_percent
from models.domain import Import, MemberCounts, Membership, Segment


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


def import_json(
    job: Import, to_public: Any, upload: dict[str, Any] | None = None, errors_url: str | None = None
) -> dict[str, Any]:
    """An import as the SPEC shows it; `upload` (its link) only in the answer that creates it."""

    def moment(value: datetime | None) -> str | None:
        return None if value is None else to_public(value)

    return {
        "import_id": job.import_id,
        "segment": job.slug,
        "mode": job.mode.value,
        "status": job.status.value,
        "expires_at": moment(job.expires_at),
        "upload": upload,
        "lines": job.lines,
        "applied": job.counts.applied,
        "unchanged": job.counts.unchanged,
        "rejected": job.counts.rejected,
        "errors_url": errors_url,
        "created_at": to_public(job.created_at),
        "started_at": moment(job.started_at),
        "finished_at": moment(job.finished_at),
        "failure": job.failure,
    }
