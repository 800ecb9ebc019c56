"""Report jobs (SQS) → history reports that did not fit in an API request's deadline, and the monthly
report, written to S3 (docs/background-jobs.md). A job that fails is retried by SQS; on its last
receive it is marked failed, so the sweeper leaves it to wait, whole, in the dead-letter queue.
"""

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import (
    get_background_reports,
    get_history_store,
    get_report_storage,
    get_store,
)
from logic.jobs import REPORT
from logic.report_jobs import write_report
from logic.reports import ReportLink, parse_period
from shared.clock import utc_now
from shared.job_retries import retried
from shared.observability import logger, metrics, tracer
from shared.snapstart import prepare_for_snapshot

processor = BatchProcessor(event_type=EventType.SQS)


def run_job(record: SQSRecord) -> None:
    key = json.loads(record.body)["key"]
    background = get_background_reports()
    with retried(record, REPORT, lambda: background.fail(key)):
        pending = background.pending(key)
        if pending is None:
            return
        month, user_id = pending
        now = utc_now()
        background.claim(key, now)
        result = write_report(
            get_history_store(), get_store(), get_report_storage(), background,
            parse_period(month, now), user_id, now,
        )  # fmt: skip
    assert isinstance(result, ReportLink)  # without a deadline the report is always written here
    background.finish(key)
    logger.info("report written", extra={"key": key, "rows": result.rows})
    metrics.add_metric(name="ReportsWritten", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ReportRows", unit=MetricUnit.Count, value=result.rows)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    with processor(event["Records"], run_job, context):
        processor.process()
    return processor.response()


prepare_for_snapshot(get_report_storage, get_history_store, get_background_reports)
