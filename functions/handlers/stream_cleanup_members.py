"""DynamoDB stream → removes the members of deleted segment generations, in the background.

One record per invocation (template.yaml: BatchSize 1). Each is a long job that saves its progress
and re-triggers itself through the stream, so a batch of them would only share one timeout. A
failure fails the invocation: Lambda retries it, then sends it to the dead-letter queue. With no
partial batch to report there is nothing for powertools' batch processor to do, and its import
(asyncio included) was a twentieth of this function's cold start.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_store
from dal.repository import cleanup_from_image
from logic.cleanup import Progress, clean_up_generation
from shared.observability import logger, metrics, tracer

SAFETY_MARGIN_MS = 30_000


@tracer.capture_method
def clean_up(record: DynamoDBRecord, lambda_context: LambdaContext) -> None:
    def time_left() -> bool:
        return lambda_context.get_remaining_time_in_millis() > SAFETY_MARGIN_MS

    image = record.raw_event["dynamodb"]["NewImage"]
    generation, shard, cursor, removed = cleanup_from_image(image)
    logger.info(
        "cleaning up", extra={"slug": generation.slug, "generation": generation.generation, "shard": shard}
    )
    progress = Progress(shard, cursor, removed)
    done = clean_up_generation(get_store(), generation, progress, generation.member_shards, time_left)
    metrics.add_metric(name="MembersRemoved", unit=MetricUnit.Count, value=done.removed - removed)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    for record in event["Records"]:
        clean_up(DynamoDBRecord(record), context)
