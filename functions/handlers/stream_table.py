"""The table's stream → history rows, written here, and jobs, sent to their queues: the stream's only
reader (docs/background-jobs.md). Everything it does is idempotent under re-delivery: rows have their
content as key, and a job's message only names a job whose state lives in the table.
"""

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_history_store, get_job_queue, get_store
from dal.history_store import image_record
from logic.history import ItemChange, history_rows
from logic.jobs import Jobs, job_of
from models.domain import HistoryRow
from shared.observability import logger, metrics, tracer

TTL_PRINCIPAL = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@lru_cache(maxsize=1024)
def deletion_time(slug: str, generation: int) -> datetime | None:
    deleted = get_store().deleted_generation(slug, generation)
    return None if deleted is None else deleted.deleted_at


def rows_of(raw: dict[str, Any]) -> list[HistoryRow]:
    stream = raw["dynamodb"]
    identity = raw.get("userIdentity") or {}
    change = ItemChange(
        old=image_record(stream.get("OldImage")),
        new=image_record(stream.get("NewImage")),
        at=datetime.fromtimestamp(float(stream.get("ApproximateCreationDateTime", 0)), UTC),
        removed_by_ttl=all(identity.get(key) == value for key, value in TTL_PRINCIPAL.items()),
    )
    return history_rows(change, deletion_time)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Rows of every good record are written together (BatchWriteItem, 25 a call) and jobs sent ten to
    a request; a record that cannot be read fails alone and is retried by Lambda, then its pointer goes
    to the on-failure destination. A failed write or send fails the batch: all of it is retried."""
    rows: list[HistoryRow] = []
    jobs = Jobs()

    def read(record: DynamoDBRecord) -> None:
        raw = record.raw_event
        entity = _entity(raw)
        if entity == "MEMBERSHIP":
            rows.extend(rows_of(raw))
        else:
            jobs.add(job_of(entity, raw.get("eventName", ""), raw["dynamodb"]))

    with processor(event["Records"], read, context):
        processor.process()
    written = get_history_store().put_rows(rows)
    for kind, found in jobs.by_kind().items():
        get_job_queue(kind).send(found)
    metrics.add_metric(name="HistoryRowsWritten", unit=MetricUnit.Count, value=written)
    metrics.add_metric(name="JobsEnqueued", unit=MetricUnit.Count, value=jobs.count())
    return processor.response()


def _entity(raw: dict[str, Any]) -> str:
    change = raw["dynamodb"]
    image = change.get("NewImage") or change.get("OldImage") or {}
    return str(image.get("entity", {}).get("S", ""))
