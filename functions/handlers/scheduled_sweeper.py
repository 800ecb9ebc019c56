"""EventBridge schedule, every minute → jobs that are due go (again) to their queues, and memberships
that expired are ended (logic/expiries.py).

A job is due when it waits for a later step (a clean-up's second walk) or was claimed and not saved
since (its worker died, its message was lost): so no job is lost however long a consumer is down.
Jobs marked failed wait in their dead-letter queue instead (docs/background-jobs.md).
"""

import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_import_store, get_job_index, get_job_queue, get_store
from dal.imports import import_of
from logic.expiries import end_expired, sweep_window
from logic.imports import sweep_import
from logic.jobs import CLEANUP, IMPORT, REPORT, due_job
from shared.clock import utc_now
from shared.observability import logger, metrics, tracer
from shared.settings import get_settings
from shared.snapstart import prepare_for_snapshot

# The schedule runs the sweeper every minute; it ends expiries every EXPIRY_SWEEP_SECONDS meanwhile,
# and returns about when the next run starts (two that overlap end each expiry once: the writes are
# conditional).
EXPIRY_SWEEPS_FOR_SECONDS = 57


def sweep_expiries(now: datetime) -> int:
    store = get_store()
    start, end = sweep_window(store.swept_until(), now)
    ended = end_expired(store, store.expiring_members(start, end), now)
    store.save_swept_until(end)
    return ended


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    now, done = utc_now(), {}
    for kind in (CLEANUP, REPORT):
        jobs = [due_job(kind, item) for item in get_job_index().due(kind, now)]
        done[kind] = get_job_queue(kind).send(jobs) if jobs else 0
        metrics.add_metric(name=f"JobsResent.{kind}", unit=MetricUnit.Count, value=done[kind])
    done[IMPORT] = 0
    for item in get_job_index().due(IMPORT, now):
        outcome = sweep_import(get_import_store(), get_job_queue(IMPORT), import_of(item), now)
        logger.info("import swept", extra={"import_id": item["import_id"]["S"], "outcome": outcome})
        done[IMPORT] += 1
    metrics.add_metric(name="ImportsSwept", unit=MetricUnit.Count, value=done[IMPORT])
    done["expired"] = sweep_expiries(utc_now())
    interval = get_settings().expiry_sweep_seconds
    while interval and (utc_now() - now).total_seconds() + interval < EXPIRY_SWEEPS_FOR_SECONDS:
        time.sleep(interval)  # expiries are ended every `interval` until the next run is scheduled
        done["expired"] += sweep_expiries(utc_now())
    metrics.add_metric(name="MembershipsExpired", unit=MetricUnit.Count, value=done["expired"])
    if any(done.values()):
        logger.info("swept", extra=done)
    return done


prepare_for_snapshot(get_job_index)
