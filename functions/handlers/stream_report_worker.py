"""DynamoDB stream → finishes history reports that did not fit in an API request's deadline.

One report per invocation (template.yaml: BatchSize 1): a report may take minutes. A failure fails
the invocation: Lambda retries it, then sends it to the dead-letter queue. With no partial batch to
report there is nothing for powertools' batch processor to do, and its import (asyncio included)
was a twentieth of this function's cold start.
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_background_reports, get_history_store, get_report_storage, get_store
from logic.report_jobs import write_report
from logic.reports import parse_period
from shared.clock import utc_now
from shared.observability import logger, metrics, tracer


@tracer.capture_method
def finish_report(record: DynamoDBRecord) -> None:
    image = record.raw_event["dynamodb"]["NewImage"]
    user_id = int(image["user_id"]["N"]) if "user_id" in image else None
    now = utc_now()
    period = parse_period(image["period"]["S"], now)
    background = get_background_reports()
    write_report(get_history_store(), get_store(), get_report_storage(), background, period, user_id, now)
    background.finish(image["key"]["S"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    for record in event["Records"]:
        finish_report(DynamoDBRecord(record))
