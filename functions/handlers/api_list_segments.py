"""GET /segments"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_store
from logic.segments import list_segments
from models.responses import segment_json
from shared.clock import to_public, utc_now
from shared.http import (
    build_resolver,
    encode_cursor,
    json_response,
    lambda_entry,
    page_request,
    query_params,
)
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.get("/segments")
def list_all() -> Response:
    limit, after = page_request(query_params(app.current_event, {"limit", "cursor"}))
    segments, more = list_segments(get_store(), limit, after)
    counts, as_of = get_store().member_counts(segments), utc_now()
    next_cursor = encode_cursor(segments[-1].slug) if more and segments else None
    body = {
        "segments": [
            segment_json(segment, to_public, count, as_of)
            for segment, count in zip(segments, counts, strict=True)
        ],
        "next_cursor": next_cursor,
    }
    return json_response(200, body)


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store)
