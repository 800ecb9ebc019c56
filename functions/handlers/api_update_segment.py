"""PATCH /segments/{slug}"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_store
from logic.segments import SegmentPatch, get_segment, patch_segment
from models.api import PatchSegmentRequest, compile_schemas
from models.responses import segment_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_body, path_slug
from shared.snapstart import prepare_for_snapshot

app = build_resolver()


@app.patch("/segments/<slug>")
def update(slug: str) -> Response:
    slug = path_slug(app.current_event)
    request = parse_body(app.current_event, PatchSegmentRequest)
    patch = SegmentPatch(request.description, request.changes_percent, request.auto_percent)
    # Its counts are read first: a PATCH leaves them as they are, and nothing may fail after the write
    (counts,) = get_store().member_counts([get_segment(get_store(), slug)])
    as_of = utc_now()
    segment = patch_segment(get_store(), slug, patch, utc_now)
    return json_response(200, segment_json(segment, to_public, counts, as_of))


lambda_handler = lambda_entry(app)

prepare_for_snapshot(get_store, compile_schemas)
