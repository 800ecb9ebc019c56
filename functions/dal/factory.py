"""Built once per container: the store and the cached catalog every handler shares."""

import os
from functools import lru_cache

from dal.entities import bind_table
from dal.repository import DynamoSegmentStore
from logic.catalog import SegmentCatalog
from shared.settings import get_settings


@lru_cache(maxsize=1)
def get_store() -> DynamoSegmentStore:
    settings = get_settings()
    bind_table(settings.table_name)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return DynamoSegmentStore(region=region, tombstone_seconds=settings.tombstone_seconds)


@lru_cache(maxsize=1)
def get_catalog() -> SegmentCatalog:
    return SegmentCatalog(get_store().active_segments, get_settings().catalog_cache_seconds)
