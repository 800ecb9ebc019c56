"""Report jobs (SQS) → history reports that did not fit in an API request's deadline, and the monthly
report, written to S3 (docs/background-jobs.md). An all-users month too big for one writer is fanned
out: its slices are jobs on the same queue, and its own job, sent again once they are written,
composes them. A job that fails is retried by SQS; on its last receive it is marked failed, so the
sweeper leaves it to wait, whole, in the dead-letter queue.
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
    get_fan_out,
    get_history_store,
    get_report_storage,
    get_store,
)
from logic.jobs import REPORT
from logic.report_jobs import run_report_job
from shared.clock import utc_now
from shared.job_retries import retried
from shared.observability import logger, metrics, tracer
from shared.settings import get_settings
from shared.snapstart import prepare_for_snapshot

processor = BatchProcessor(event_type=EventType.SQS)


def run_job(record: SQSRecord) -> None:
    message = json.loads(record.body)
    if "slice" in message:
        write_slice(record, message["key"], message["run"], int(message["slice"]))
        return
    key, background = message["key"], get_background_reports()
    with retried(record, REPORT, lambda: background.fail(key)):
        outcome = run_report_job(
            key, background, get_fan_out(), get_history_store(), get_store(), get_report_storage(),
            utc_now(), get_settings().report_single_writer_seconds,
        )  # fmt: skip
    logger.info("report job", extra={"key": key, "step": outcome.step, "rows": outcome.rows})
    if outcome.rows is not None:
        metrics.add_metric(name="ReportsWritten", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ReportRows", unit=MetricUnit.Count, value=outcome.rows)


def write_slice(record: SQSRecord, key: str, run: str, number: int) -> None:
    """One slice of a fanned-out report. On its last try the slice and its report are marked failed."""
    fan_out, background = get_fan_out(), get_background_reports()

    def failed() -> None:
        fan_out.fail_slice(key, run, number)
        background.fail(key)

    with retried(record, REPORT, failed):
        rows = fan_out.write_slice(key, run, number, utc_now())
    logger.info("report slice", extra={"key": key, "run": run, "slice": number, "rows": rows})
    if rows is not None:
        metrics.add_metric(name="ReportSlicesWritten", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    with processor(event["Records"], run_job, context):
        processor.process()
    return processor.response()


prepare_for_snapshot(get_report_storage, get_history_store, get_background_reports)
