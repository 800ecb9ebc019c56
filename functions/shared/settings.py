"""Every setting a function reads, from environment variables, validated once per container."""

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    table_name: str = Field(min_length=3)
    # The SPEC caps catalog staleness at 30 s when deployed; 0 turns the cache off.
    catalog_cache_seconds: float = Field(default=30, ge=0, le=30)
    # Removed memberships stay as tombstones this long so history can be derived from the stream.
    tombstone_seconds: int = Field(default=86_400, ge=60)
    reports_bucket: str | None = None
    presigned_url_seconds: int = Field(default=900, ge=1, le=900)
    write_attempts: int = Field(default=6, ge=1, le=20)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """A missing or invalid variable fails at cold start, not in the middle of a request."""
    names = Settings.model_fields
    values = {name: os.environ[name.upper()] for name in names if name.upper() in os.environ}
    return Settings.model_validate(values)
