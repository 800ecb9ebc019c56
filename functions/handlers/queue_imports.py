"""Import jobs (SQS) → an upload starts its import, chunks of the file are applied in parallel, the
last one finishes it (docs/imports.md). The queue takes the S3 events of uploads and the jobs the
import sends itself (start, chunk, finish). A job that fails is retried by SQS; on its last receive
the sweeper is told to leave it (a chunk is marked failed), so it waits, whole, in the dead-letter
queue until it is redriven.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_import_files, get_import_store, get_job_queue
from dal.import_files import import_of_upload
from logic.imports import finish_import, run_chunk, start_import, upload_arrived
from logic.jobs import IMPORT
from shared.clock import utc_now
from shared.job_retries import retried
from shared.observability import logger, metrics, tracer
from shared.snapstart import prepare_for_snapshot

processor = BatchProcessor(event_type=EventType.SQS)
USER_THREADS = 16  # a chunk's transactions in flight at once
pool = ThreadPoolExecutor(max_workers=USER_THREADS, thread_name_prefix="import-users")


def run_job(record: SQSRecord) -> None:
    message = json.loads(record.body)
    if "Records" in message or message.get("Event") == "s3:TestEvent":
        for upload in message.get("Records", []):
            _uploaded(record, upload)
        return
    store, files, queue = get_import_store(), get_import_files(), get_job_queue(IMPORT)
    slug, import_id, step = message["slug"], message["import_id"], message["step"]
    if step == "chunk":
        number = int(message["chunk"])
        with retried(record, IMPORT, lambda: store.fail_chunk(import_id, number)):
            counts = run_chunk(store, files, queue, slug, import_id, number, utc_now, pool)
        if counts is not None:
            metrics.add_metric(name="ImportRowsApplied", unit=MetricUnit.Count, value=counts.applied)
            metrics.add_metric(name="ImportRowsUnchanged", unit=MetricUnit.Count, value=counts.unchanged)
            metrics.add_metric(name="ImportRowsRejected", unit=MetricUnit.Count, value=counts.rejected)
        return
    with retried(record, IMPORT, lambda: _park(slug, import_id)):
        job = store.find_import(slug, import_id)
        if job is None:
            return
        if step == "start":
            outcome = start_import(store, files, queue, job, utc_now)
        else:
            outcome = finish_import(store, files, slug, import_id, utc_now)
    logger.info("import step", extra={"slug": slug, "import_id": import_id, "step": step, "outcome": outcome})


def _uploaded(record: SQSRecord, upload: dict[str, Any]) -> None:
    key = unquote_plus(upload["s3"]["object"]["key"])
    named = import_of_upload(key)
    if named is None or not upload.get("eventName", "").startswith("ObjectCreated:"):
        return
    slug, import_id = named
    etag = '"' + str(upload["s3"]["object"]["eTag"]).strip('"') + '"'
    store = get_import_store()
    with retried(record, IMPORT, lambda: _park(slug, import_id)):
        outcome = upload_arrived(
            store, get_import_files(), get_job_queue(IMPORT), slug, import_id, etag, utc_now
        )
    logger.info("upload", extra={"slug": slug, "import_id": import_id, "outcome": outcome})


def _park(slug: str, import_id: str) -> None:
    """The job waits in the dead-letter queue: the sweeper does not send it again meanwhile."""
    store = get_import_store()
    job = store.find_import(slug, import_id)
    if job is not None:
        store.schedule_import(job, None)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    with processor(event["Records"], run_job, context):
        processor.process()
    return processor.response()


prepare_for_snapshot(get_import_store, get_import_files)
