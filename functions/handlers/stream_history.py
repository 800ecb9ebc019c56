"""DynamoDB stream → one history row per membership change (idempotent under re-delivery)."""

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_history_store, get_store
from dal.history_store import image_record
from logic.history import ItemChange, history_rows
from models.domain import HistoryRow
from shared.observability import logger, metrics, tracer

TTL_PRINCIPAL = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@lru_cache(maxsize=1024)
def deletion_time(slug: str, generation: int) -> datetime | None:
    deleted = get_store().deleted_generation(slug, generation)
    return None if deleted is None else deleted.deleted_at


def rows_of(record: DynamoDBRecord) -> list[HistoryRow]:
    raw = record.raw_event
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
    """Rows of every good record are written together (BatchWriteItem, 25 a call); a record that cannot
    be read fails alone and is retried by Lambda, then sent to the on-failure destination."""
    rows: list[HistoryRow] = []
    with processor(event["Records"], lambda record: rows.extend(rows_of(record)), context):
        processor.process()
    written = get_history_store().put_rows(rows)
    metrics.add_metric(name="HistoryRowsWritten", unit=MetricUnit.Count, value=written)
    return processor.response()
