"""GET /reports/history?period=YYYY-MM[&user_id=N]"""

import time

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_background_reports, get_history_store, get_report_storage, get_store
from logic.report_jobs import write_report
from logic.reports import ReportPending, parse_period
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_user_id, query_params
from shared.settings import get_settings
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/reports/history")
def report() -> Response:
    params = query_params(app.current_event, {"period", "user_id"})
    now = utc_now()
    period = parse_period(params.get("period"), now)
    user_id = parse_user_id(params["user_id"]) if "user_id" in params else None
    deadline = time.monotonic() + get_settings().report_deadline_seconds
    result = write_report(
        get_history_store(), get_store(), get_report_storage(), get_background_reports(),
        period, user_id, now, should_stop=lambda: time.monotonic() > deadline,
    )  # fmt: skip
    if isinstance(result, ReportPending):
        body = {
            "status": "pending",
            "period": result.period,
            "user_id": result.user_id,
            "retry_after": result.retry_after,
        }
        return json_response(202, body, {"Retry-After": str(result.retry_after)})
    return json_response(
        200,
        {
            "url": result.url,
            "expires_at": to_public(result.expires_at),
            "period": result.period,
            "user_id": result.user_id,
            "rows": result.rows,
        },
    )


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_report_storage, get_history_store, get_background_reports)
