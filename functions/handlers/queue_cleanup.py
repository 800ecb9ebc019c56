"""Clean-up jobs (SQS) → the members of a deleted generation lose it, with their history.

A job runs until it is done, must wait for its second walk (the sweeper sends it again when that is
due), or its time runs short (it saves where it is and sends itself again). A job that fails is
retried by SQS; on its last receive it is marked failed, so the sweeper leaves it to wait, whole, in
the dead-letter queue until it is redriven (docs/background-jobs.md).
"""

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_job_queue, get_store
from dal.repository import JOB_STALE_AFTER
from logic.cleanup import clean_up, is_waiting, verify_from
from logic.jobs import CLEANUP, cleanup_job
from models.domain import CleanupJob, CleanupPhase
from shared.clock import utc_now
from shared.job_retries import retried
from shared.observability import logger, metrics, tracer
from shared.snapstart import prepare_for_snapshot

SAFETY_MARGIN_MS = 30_000
processor = BatchProcessor(event_type=EventType.SQS)


def run_job(record: SQSRecord, context: LambdaContext) -> None:
    message = json.loads(record.body)
    slug, generation = message["slug"], int(message["generation"])
    store = get_store()
    with retried(record, CLEANUP, lambda: store.fail_cleanup(slug, generation)):
        job = store.cleanup_job(slug, generation)
        if job is None or job.phase is CleanupPhase.DONE:
            return
        now = utc_now()
        store.save_cleanup(job, due_at=now + JOB_STALE_AFTER)  # claimed: the sweeper leaves it until stale
        logger.info("cleaning up", extra={"slug": slug, "phase": job.phase, "shard": job.shard})
        removed_before = job.removed
        job = clean_up(store, job, now, lambda: context.get_remaining_time_in_millis() > SAFETY_MARGIN_MS)
        metrics.add_metric(name="MembersRemoved", unit=MetricUnit.Count, value=job.removed - removed_before)
        _save(job, now)


def _save(job: CleanupJob, now: datetime) -> None:
    store = get_store()
    if job.phase is CleanupPhase.DONE:
        store.save_cleanup(job, due_at=None)
        metrics.add_metric(name="CleanupsDone", unit=MetricUnit.Count, value=1)
    elif is_waiting(job, now):
        store.save_cleanup(job, due_at=verify_from(job))  # the sweeper sends it when the walk is due
    else:
        store.save_cleanup(job, due_at=now + JOB_STALE_AFTER)
        get_job_queue(CLEANUP).send([cleanup_job(job.generation.slug, job.generation.generation)])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    with processor(event["Records"], lambda record: run_job(record, context), context):
        processor.process()
    return processor.response()


prepare_for_snapshot(get_store)
