"""Request bodies as the SPEC fixes them, and the JSON the routes answer with."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from logic.buckets import percent_to_units, units_to_percent
from models.domain import Membership, Segment
from models.errors import InvalidRequest

SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
SLUG_RE = re.compile(SLUG_PATTERN, re.ASCII)
USER_ID_RE = re.compile(r"^[1-9][0-9]{0,18}$", re.ASCII)
MAX_USER_ID = 2**63 - 1
MAX_TTL_SECONDS = 315_360_000
MAX_SLUGS_PER_UPDATE = 50
MAX_DESCRIPTION = 1000

Slug = Annotated[StrictStr, Field(pattern=SLUG_PATTERN)]
Description = Annotated[StrictStr, Field(max_length=MAX_DESCRIPTION)]


def percent_units(value: Any) -> int:
    """0..100 with at most two decimals, as bucket units (hundredths of a percent)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError("must be a number from 0 to 100")
    return percent_to_units(value)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateSegmentRequest(StrictModel):
    slug: Slug
    description: Description = ""
    auto_percent: Any = None
    exclusion_group: Slug | None = None

    @field_validator("auto_percent")
    @classmethod
    def _percent(cls, value: Any) -> int | None:
        return None if value is None else percent_units(value)

    @model_validator(mode="after")
    def _group_needs_percent(self) -> "CreateSegmentRequest":
        if self.exclusion_group is not None and self.auto_percent is None:
            raise ValueError("exclusion_group needs auto_percent")
        return self


class PatchSegmentRequest(StrictModel):
    description: Description | None = None
    auto_percent: Any = None

    @field_validator("description", mode="before")
    @classmethod
    def _description_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("description cannot be null; use an empty string")
        return value

    @field_validator("auto_percent")
    @classmethod
    def _percent(cls, value: Any) -> int | None:
        return None if value is None else percent_units(value)

    @property
    def changes_percent(self) -> bool:
        return "auto_percent" in self.model_fields_set


class AddItem(StrictModel):
    slug: Slug
    ttl_seconds: Annotated[StrictInt, Field(gt=0, le=MAX_TTL_SECONDS)] | None = None
    expires_at: Annotated[StrictStr, Field(max_length=40)] | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> "AddItem":
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise ValueError("give at most one of ttl_seconds and expires_at")
        return self


class UserSegmentsRequest(StrictModel):
    add: list[AddItem] = Field(default_factory=list, max_length=MAX_SLUGS_PER_UPDATE)
    remove: list[Slug] = Field(default_factory=list, max_length=MAX_SLUGS_PER_UPDATE)

    @field_validator("add", mode="before")
    @classmethod
    def _slugs_as_items(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"slug": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _slug_rules(self) -> "UserSegmentsRequest":
        added = [item.slug for item in self.add]
        if not added and not self.remove:
            raise ValueError("add or remove at least one segment")
        if len(added) + len(self.remove) > MAX_SLUGS_PER_UPDATE:
            raise ValueError(f"at most {MAX_SLUGS_PER_UPDATE} slugs in one request")
        for name, slugs in (("add", added), ("remove", self.remove)):
            repeated = sorted({slug for slug in slugs if slugs.count(slug) > 1})
            if repeated:
                raise ValueError(f"{name} names a slug twice: {', '.join(repeated)}")
        both = sorted(set(added) & set(self.remove))
        if both:
            raise ValueError(f"slugs in both add and remove: {', '.join(both)}")
        return self


def segment_json(segment: Segment, to_public: Any) -> dict[str, Any]:
    bucket_range = None
    if segment.bucket_start is not None and segment.bucket_end is not None:
        bucket_range = [segment.bucket_start / 10_000, segment.bucket_end / 10_000]
    return {
        "slug": segment.slug,
        "description": segment.description,
        "auto_percent": None if segment.auto_percent is None else units_to_percent(segment.auto_percent),
        "exclusion_group": segment.exclusion_group,
        "bucket_range": bucket_range,
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


TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$", re.ASCII)


def parse_timestamp(text: str | None) -> datetime | None:
    """RFC 3339 UTC with a Z; fractions beyond microseconds are cut, not rounded."""
    if text is None:
        return None
    if not TIMESTAMP_RE.fullmatch(text):
        raise InvalidRequest(
            "timestamps are RFC 3339 UTC with a Z, like 2023-08-29T10:00:00Z",
            errors=[{"field": "expires_at", "message": "not an RFC 3339 UTC timestamp"}],
        )
    whole, _, fraction = text[:-1].partition(".")
    try:
        moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as error:
        raise InvalidRequest(
            "not a valid date and time", errors=[{"field": "expires_at", "message": "not a valid date"}]
        ) from error
    return moment.replace(microsecond=int((fraction + "000000")[:6]))
