"""EventBridge schedule, 1st of each month → reports/monthly/YYYY-MM.csv for the previous month."""

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dal.factory import get_background_reports, get_history_store, get_report_storage, get_store
from logic.report_jobs import monthly_period, write_report
from logic.reports import ReportLink
from shared.clock import utc_now
from shared.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = utc_now()
    scheduled_at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) if "time" in event else now
    period = monthly_period(scheduled_at, now)
    result = write_report(
        get_history_store(), get_store(), get_report_storage(), get_background_reports(), period, None, now
    )
    assert isinstance(result, ReportLink)  # without a deadline the report is always written here
    logger.info("monthly report written", extra={"period": period.month, "rows": result.rows})
    return {"period": period.month, "rows": result.rows}
