"""The table's stream → history rows and member counts, written here, and jobs, sent to their queues:
the stream's only reader (docs/background-jobs.md). Everything it does is idempotent under
re-delivery: a record's rows and counts are one transaction that marks the record applied, and a
job's message only names a job whose state lives in the table.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_history_store, get_job_queue, get_store
from dal.history_store import AppliedChange, image_record
from logic.counts import count_deltas
from logic.history import DeletionTimes, ItemChange, history_rows
from logic.jobs import Jobs, job_of
from shared.observability import logger, metrics, tracer
from shared.snapstart import prepare_for_snapshot

TTL_PRINCIPAL = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def _deleted_at(slug: str, generation: int) -> datetime | None:
    deleted = get_store().deleted_generation(slug, generation)
    return None if deleted is None else deleted.deleted_at


deletion_time = DeletionTimes(_deleted_at)


def change_of(raw: dict[str, Any]) -> AppliedChange | None:
    """What a record of a membership item changes: its rows and counts (None: nothing)."""
    stream = raw["dynamodb"]
    identity = raw.get("userIdentity") or {}
    change = ItemChange(
        old=image_record(stream.get("OldImage")),
        new=image_record(stream.get("NewImage")),
        at=datetime.fromtimestamp(float(stream.get("ApproximateCreationDateTime", 0)), UTC),
        removed_by_ttl=all(identity.get(key) == value for key, value in TTL_PRINCIPAL.items()),
    )
    rows = history_rows(change, deletion_time)
    if not rows:
        return None  # no change anyone sees or counts (an expiry moved; a deleted generation's opt-out)
    record = change.new or change.old
    assert record is not None
    return AppliedChange(raw["eventID"], record.user_id, rows, count_deltas(change.old, change.new))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Each good record's rows and count changes are one transaction (several at once), marked applied
    in it so a re-delivery changes nothing; jobs are sent one message each. A record that cannot be
    read fails alone and is retried by Lambda, then its pointer goes to the on-failure destination.
    A failed write or send fails the batch: all of it is retried."""
    changes: list[AppliedChange] = []
    jobs = Jobs()

    def read(record: DynamoDBRecord) -> None:
        raw = record.raw_event
        entity = _entity(raw)
        if entity == "MEMBERSHIP":
            change = change_of(raw)
            if change is not None:
                changes.append(change)
        else:
            jobs.add(job_of(entity, raw.get("eventName", ""), raw["dynamodb"]))

    with processor(event["Records"], read, context):
        processor.process()
    written = get_history_store().apply(changes)
    for kind, found in jobs.by_kind().items():
        get_job_queue(kind).send(found)
    metrics.add_metric(name="HistoryRowsWritten", unit=MetricUnit.Count, value=written)
    metrics.add_metric(name="JobsEnqueued", unit=MetricUnit.Count, value=jobs.count())
    return processor.response()


def _entity(raw: dict[str, Any]) -> str:
    change = raw["dynamodb"]
    image = change.get("NewImage") or change.get("OldImage") or {}
    return str(image.get("entity", {}).get("S", ""))


prepare_for_snapshot(get_history_store)
