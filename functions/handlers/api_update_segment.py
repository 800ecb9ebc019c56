"""PATCH /segments/{slug}"""

from aws_lambda_powertools.event_handler import Response

from dal.factory import get_store
from logic.segments import SegmentPatch, patch_segment
from models.api import PatchSegmentRequest
from models.responses import segment_json
from shared.clock import to_public, utc_now
from shared.http import build_resolver, json_response, lambda_entry, parse_body, path_slug

app = build_resolver()


@app.patch("/segments/<slug>")
def update(slug: str) -> Response:
    slug = path_slug(app.current_event)
    request = parse_body(app.current_event, PatchSegmentRequest)
    patch = SegmentPatch(request.description, request.changes_percent, request.auto_percent)
    segment = patch_segment(get_store(), slug, patch, utc_now)
    return json_response(200, segment_json(segment, to_public))


lambda_handler = lambda_entry(app)
