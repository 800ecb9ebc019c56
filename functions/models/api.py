"""Request bodies as the SPEC fixes them (pydantic, imported only by routes that take a body)."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from logic.buckets import percent_to_units
from models.formats import SLUG_PATTERN

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
