"""Built once per container: the store and the cached catalog every handler shares."""

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from dal.entities import bind_table
from dal.repository import DynamoSegmentStore
from logic.catalog import SegmentCatalog
from shared.settings import get_settings

if TYPE_CHECKING:  # imported lazily: only the report functions need S3, only some need SQS
    from dal.history_store import DynamoHistoryStore
    from dal.import_files import S3ImportFiles
    from dal.imports import DynamoImportStore
    from dal.jobs import DynamoJobIndex, SqsJobQueue
    from dal.report_jobs import DynamoBackgroundReports
    from dal.report_storage import S3ReportStorage
    from logic.report_fanout import FanOut


@lru_cache(maxsize=1)
def get_store() -> DynamoSegmentStore:
    settings = get_settings()
    bind_table(settings.table_name)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return DynamoSegmentStore(region, settings.tombstone_seconds, settings.history_shards)


@lru_cache(maxsize=1)
def get_catalog() -> SegmentCatalog:
    store = get_store()
    return SegmentCatalog(
        store.percentage_segments,
        lambda slugs: store.live_segments(slugs, consistent=False),
        get_settings().catalog_cache_seconds,
    )


@lru_cache(maxsize=1)
def get_history_store() -> "DynamoHistoryStore":
    from dal.history_store import DynamoHistoryStore

    get_store()  # binds the models to the configured table
    settings = get_settings()
    return DynamoHistoryStore(settings.history_shards, settings.history_read_shards)


@lru_cache(maxsize=1)
def get_report_storage() -> "S3ReportStorage":
    from dal.report_storage import S3ReportStorage

    settings = get_settings()
    if not settings.reports_bucket:
        raise RuntimeError("REPORTS_BUCKET is not set")
    get_store()  # binds the connection whose botocore session the S3 client shares
    return S3ReportStorage(settings.reports_bucket, settings.presigned_url_seconds)


@lru_cache(maxsize=1)
def get_background_reports() -> "DynamoBackgroundReports":
    from dal.report_jobs import DynamoBackgroundReports

    get_store()
    return DynamoBackgroundReports()


@lru_cache(maxsize=1)
def get_fan_out() -> "FanOut":
    """The report worker's fan-out of an all-users month: its slices on the report queue."""
    from logic.report_fanout import FanOut

    queue = get_job_queue("report")
    return FanOut(
        get_history_store(), get_store(), get_report_storage(), get_background_reports(), queue.send,
        get_settings().report_workers,
    )  # fmt: skip


@lru_cache(maxsize=4)
def get_job_queue(kind: str) -> "SqsJobQueue":
    """The queue of a kind of job (cleanup, report, import): a setting of the functions that send."""
    from dal.jobs import SqsJobQueue

    settings = get_settings()
    url = {
        "cleanup": settings.cleanup_queue_url,
        "report": settings.report_queue_url,
        "import": settings.import_queue_url,
    }[kind]
    if not url:
        raise RuntimeError(f"{kind.upper()}_QUEUE_URL is not set")
    get_store()  # binds the connection whose botocore session the SQS client shares
    return SqsJobQueue(url, _sqs())


@lru_cache(maxsize=1)
def _sqs() -> object:
    from dal.jobs import sqs_client

    return sqs_client()


@lru_cache(maxsize=1)
def get_job_index() -> "DynamoJobIndex":
    from dal.jobs import DynamoJobIndex

    get_store()
    return DynamoJobIndex()


@lru_cache(maxsize=1)
def get_import_store() -> "DynamoImportStore":
    from dal.imports import DynamoImportStore

    return DynamoImportStore(get_store())


@lru_cache(maxsize=1)
def get_import_files() -> "S3ImportFiles":
    from dal.import_files import S3ImportFiles

    settings = get_settings()
    if not settings.imports_bucket:
        raise RuntimeError("IMPORTS_BUCKET is not set")
    get_store()  # binds the connection whose botocore session the S3 client shares
    return S3ImportFiles(settings.imports_bucket, settings.presigned_url_seconds)
