"""How a worker gives a failed job back to its queue (docs/background-jobs.md)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from dal.factory import get_job_queue
from logic.jobs import retry_delay
from shared.observability import logger, metrics
from shared.settings import get_settings


@contextmanager
def retried(record: SQSRecord, kind: str, on_last_try: Callable[[], None]) -> Iterator[None]:
    """A job that fails comes back after JobRetrySeconds, doubled each time, not after the queue's long
    visibility timeout. On its last try `on_last_try` marks it failed (the sweeper leaves it alone),
    and at its next receive SQS moves it, whole, to the dead-letter queue; `JobsFailed` counts it
    (its alarm, docs/operations.md)."""
    try:
        yield
    except Exception:
        receives = int(record.attributes.approximate_receive_count)
        settings = get_settings()
        if receives >= settings.job_max_receives:
            on_last_try()
            logger.exception("job failed its last try", extra={"kind": kind, "body": record.body})
            metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        get_job_queue(kind).retry_later(
            record.receipt_handle, retry_delay(settings.job_retry_seconds, receives)
        )
        raise
