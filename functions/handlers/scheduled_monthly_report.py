"""EventBridge schedule, 1st of each month → the previous month's report for everyone, as a job.

The report of a month may hold a hundred million rows, far more than one invocation writes: the
schedule only asks for it, and the report job writes it (docs/background-jobs.md). A month already
written for good is left as it is.
"""

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_background_reports, get_report_storage
from logic.report_jobs import monthly_period, request_report
from shared.clock import utc_now
from shared.observability import logger, metrics, tracer
from shared.snapstart import prepare_for_snapshot


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = utc_now()
    scheduled_at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) if "time" in event else now
    period = monthly_period(scheduled_at, now)
    status = request_report(get_report_storage(), get_background_reports(), period, None, now)
    logger.info("monthly report", extra={"period": period.month, "status": status})
    return {"period": period.month, "status": status}


prepare_for_snapshot(get_report_storage, get_background_reports)
