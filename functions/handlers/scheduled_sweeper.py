"""EventBridge schedule, every minute → jobs that are due go (again) to their queues.

A job is due when it waits for a later step (a clean-up's second walk) or was claimed and not saved
since (its worker died, its message was lost): so no job is lost however long a consumer is down.
Jobs marked failed wait in their dead-letter queue instead (docs/background-jobs.md).
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_job_index, get_job_queue
from logic.jobs import CLEANUP, REPORT, due_job
from shared.clock import utc_now
from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    now, sent = utc_now(), {}
    for kind in (CLEANUP, REPORT):
        jobs = [due_job(kind, item) for item in get_job_index().due(kind, now)]
        sent[kind] = get_job_queue(kind).send(jobs) if jobs else 0
        metrics.add_metric(name=f"JobsResent.{kind}", unit=MetricUnit.Count, value=sent[kind])
    if any(sent.values()):
        logger.info("due jobs sent again", extra=sent)
    return sent
