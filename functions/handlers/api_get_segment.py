"""GET /segments/{slug}"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_store
from logic.segments import get_segment
from models.responses import segment_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, path_slug, query_params
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/segments/<slug>")
def get_one(slug: str) -> Response:
    query_params(app.current_event, set())
    segment = get_segment(get_store(), path_slug(app.current_event))
    (counts,) = get_store().member_counts([segment])
    return json_response(200, segment_json(segment, to_public, counts, utc_now()))


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store)
