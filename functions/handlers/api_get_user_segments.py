"""GET /users/{user_id}/segments"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_catalog, get_store
from logic.memberships import user_segments
from models.responses import membership_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, path_user_id, query_flag, query_params
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/users/<user_id>/segments")
def read(user_id: str) -> Response:
    user = path_user_id(app.current_event)
    details = query_flag(query_params(app.current_event, {"details"}), "details")
    memberships = user_segments(get_store(), get_catalog(), user, utc_now())
    body: dict[str, object] = {"user_id": user, "segments": [m.slug for m in memberships]}
    if details:
        body["memberships"] = [membership_json(m, to_public) for m in memberships]
    return json_response(200, body)


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store, get_catalog)
