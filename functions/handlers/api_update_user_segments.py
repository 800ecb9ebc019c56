"""POST /users/{user_id}/segments"""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit

from dal.factory import get_catalog, get_store
from logic.memberships import add_and_remove_segments
from models.api import UserSegmentsRequest, compile_schemas
from shared.clock import utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_body, path_user_id
from shared.observability import metrics
from shared.settings import get_settings
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.post("/users/<user_id>/segments")
def change(user_id: str) -> Response:
    user = path_user_id(app.current_event)
    request = parse_body(app.current_event, UserSegmentsRequest)
    result = add_and_remove_segments(
        get_store(),
        get_catalog(),
        user,
        request.add,
        request.remove,
        utc_now,
        get_settings().write_attempts,
    )
    metrics.add_metric(name="MembershipsAdded", unit=MetricUnit.Count, value=len(result.added))
    metrics.add_metric(name="MembershipsRemoved", unit=MetricUnit.Count, value=len(result.removed))
    return json_response(200, result._asdict())


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store, get_catalog, compile_schemas)
